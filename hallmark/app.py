"""The FastAPI app factory: mounts each package's router. `hallmark serve` runs it."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from audit import AuditStore
from audit.api import ReviewContext
from audit.api import build_router as build_review_router
from audit.jobs import JobStore
from generator import metrics
from generator.api import GenerationContext
from generator.api import build_router as build_generation_router
from generator.jobs import recover, run_job
from generator.pipeline import GuardedPipeline, __version__
from hallmark.compose import (
    build_job_queue,
    build_pipeline,
    build_watermark,
    job_settings,
    open_store,
    trust_anchors_pem,
)
from hallmark.pages import build_pages
from hallmark.settings import Settings
from policy import Policy
from provenance import thumbnail_strip
from provenance.api import Verifier
from provenance.api import build_router as build_verify_router

log = logging.getLogger("hallmark.app")


def create_app(
    settings: Settings | None = None, warm: bool = False, pipeline: GuardedPipeline | None = None
) -> FastAPI:
    """The app. The generation pipeline loads on the first generation request, or at start-up
    with `warm` (what `hallmark serve` does), which also requeues jobs a crash left behind and
    keeps doing so while the app runs. `pipeline`: one already built from the same settings."""
    settings = settings or Settings()
    stop = threading.Event()
    generation: dict[str, GenerationContext] = {}
    generation_lock = threading.Lock()
    generation_error: list[str] = []

    @lru_cache(maxsize=1)
    def get_store() -> AuditStore:
        return open_store(settings)

    @lru_cache(maxsize=1)
    def get_verifier() -> Verifier:
        return Verifier(
            trust_anchors_pem(settings),
            build_watermark(settings),
            get_store(),
            settings.max_upload_mb * 1024 * 1024,
        )

    @lru_cache(maxsize=1)
    def get_review() -> ReviewContext:
        return ReviewContext(get_store(), thumbnail_strip)

    def get_generation() -> GenerationContext:
        with generation_lock:
            if "context" not in generation:
                built = pipeline or build_pipeline(settings)
                jobs = JobStore(built.audit)
                options = job_settings(settings)
                queue = build_job_queue(settings, lambda job_id: run_job(built, jobs, job_id, options))
                generation["context"] = GenerationContext(built, jobs, queue, options)
                threading.Thread(target=sweep, daemon=True, name="hallmark-sweep").start()
            return generation["context"]

    def sweep() -> None:
        """Requeue jobs whose worker was lost, now and every half lease, until the app stops."""
        while True:
            context = generation["context"]
            try:
                recover(context.pipeline, context.jobs, context.queue, context.settings)
            except Exception:  # a database hiccup: try again at the next sweep
                log.exception("job sweep failed")
            if stop.wait(settings.job_lease_s / 2):
                return

    def warm_up() -> None:
        try:
            get_generation()
        except Exception as exc:  # readiness reports it; the process stays up for the other routes
            generation_error.append(f"{type(exc).__name__}: {exc}")
            log.exception("loading the generation pipeline failed")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm:
            threading.Thread(target=warm_up, daemon=True, name="hallmark-warm-up").start()
        yield
        stop.set()
        context = generation.get("context")
        if context is not None and hasattr(context.queue, "shutdown"):
            context.queue.shutdown()

    app = FastAPI(
        title="Hallmark",
        version=__version__,
        lifespan=lifespan,
        description="Guarded, watermarked and C2PA-signed AI video generation: generations for "
        "platform teams, verification and soft-binding resolution (public), and the "
        "review API for trust-and-safety teams.",
    )

    @app.middleware("http")
    async def count_requests(request: Request, call_next) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.REQUESTS.labels(
            getattr(route, "path", "unmatched"), request.method, str(response.status_code)
        ).inc()
        return response

    @app.get("/healthz", tags=["health"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Ready to serve: database, queue and models")
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            with get_store().engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # any database failure means not ready
            checks["database"] = f"unavailable: {type(exc).__name__}"
        context = generation.get("context")
        checks["generation"] = "ready" if context else ("loading" if warm else "loads on first use")
        if generation_error:
            checks["generation"] = f"failed: {generation_error[-1]}"
        if context is not None and hasattr(context.queue, "ping"):
            checks["broker"] = "ok" if context.queue.ping() else "unavailable"
        ready = (
            checks["database"] == "ok"
            and checks.get("broker", "ok") == "ok"
            and checks["generation"] in ("ready", "loads on first use")
        )
        return JSONResponse({"ready": ready, **checks}, 200 if ready else 503)

    registry = metrics.registry(lambda: JobStore(get_store()).counts())

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    upload_limit = settings.max_upload_mb * 1024 * 1024
    app.include_router(build_verify_router(get_verifier, upload_limit))
    # A generation request is JSON with at most one base64 image: the policy's image limit, plus room.
    image_limit = Policy.load(settings.policy).image.max_megabytes * 1024 * 1024
    app.include_router(build_generation_router(get_generation, int(image_limit * 4 / 3) + 1024 * 1024))
    app.include_router(build_review_router(get_review))
    app.include_router(build_pages())
    return app
