"""The FastAPI app factory: builds the deployment's services and mounts each package's router.
`hallmark serve` runs it.

Routers are module-level; they reach the services through dependencies that read the zero-
argument factories this factory puts on `app.state` (audit/deps.py names the contract)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cached_property

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from audit import AuditStore
from audit.api import ReviewContext
from audit.api import router as review_router
from generator.pipeline import GuardedPipeline, __version__
from hallmark import pages
from hallmark.compose import (
    build_job_queue,
    build_pipeline,
    build_watermark,
    job_settings,
    open_store,
    signing_identities,
    trust_anchors_pem,
)
from hallmark.settings import Settings
from jobs import metrics
from jobs.api import GenerationConfig, GenerationContext
from jobs.api import router as generation_router
from jobs.runner import recover, run_job
from jobs.store import JobStore
from policy import Policy
from provenance import thumbnail_strip
from provenance.api import Verifier
from provenance.api import router as verify_router
from provenance.limits import RateLimiter, Slots

log = logging.getLogger("hallmark.app")


class Services:
    """The deployment's services, each built on first use (the generation pipeline takes seconds
    to load; verification and review never wait for it)."""

    def __init__(self, settings: Settings, pipeline: GuardedPipeline | None = None) -> None:
        self.settings = settings
        self._pipeline = pipeline
        self._generation: GenerationContext | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.generation_error: str | None = None

    @cached_property
    def _store(self) -> AuditStore:
        return open_store(self.settings)

    def store(self) -> AuditStore:
        return self._store

    @cached_property
    def _verifier(self) -> Verifier:
        watermark = build_watermark(self.settings)
        limit = self.settings.max_upload_mb * 1024 * 1024
        return Verifier(
            trust_anchors_pem(self.settings),
            watermark,
            self.store(),
            limit,
            signers=signing_identities(self.settings),
            max_pixels=self.settings.max_video_pixels,
            rate=RateLimiter(self.settings.verify_rate_per_minute),
            slots=Slots(self.settings.verify_concurrency),
        )

    def verifier(self) -> Verifier:
        return self._verifier

    def review(self) -> ReviewContext:
        return ReviewContext(self.store(), thumbnail_strip)

    @property
    def loaded(self) -> GenerationContext | None:
        """The generation service if it has loaded (never loads it)."""
        return self._generation

    def generation(self) -> GenerationContext:
        """The pipeline, job store and queue, loaded once; the sweep starts with them."""
        with self._lock:
            if self._generation is None:
                pipeline = self._pipeline or build_pipeline(self.settings)
                jobs = JobStore(pipeline.audit)
                options = job_settings(self.settings)
                queue = build_job_queue(
                    self.settings, lambda job_id: run_job(pipeline, jobs, job_id, options)
                )
                self._generation = GenerationContext(pipeline, jobs, queue, options)
                threading.Thread(target=self._sweep, daemon=True, name="hallmark-sweep").start()
            return self._generation

    def warm_up(self) -> None:
        try:
            self.generation()
        except Exception as exc:  # readiness reports it; the process stays up for the other routes
            self.generation_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the generation pipeline failed")

    def close(self) -> None:
        self._stop.set()
        context = self._generation
        if context is not None and hasattr(context.queue, "shutdown"):
            context.queue.shutdown()

    def _sweep(self) -> None:
        """Requeue jobs whose worker was lost, now and every half lease, until the app stops."""
        context = self._generation
        while True:
            try:
                recover(context.pipeline, context.jobs, context.queue, context.settings)
            except Exception:  # a database hiccup: try again at the next sweep
                log.exception("job sweep failed")
            if self._stop.wait(self.settings.job_lease_s / 2):
                return


def create_app(
    settings: Settings | None = None, warm: bool = False, pipeline: GuardedPipeline | None = None
) -> FastAPI:
    """The app. The generation pipeline loads on the first accepted generation request, or at
    start-up with `warm` (what `hallmark serve` does), which also requeues jobs a crash left
    behind and keeps doing so while the app runs. `pipeline`: one already built from the same
    settings."""
    settings = settings or Settings()
    services = Services(settings, pipeline)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm:
            threading.Thread(target=services.warm_up, daemon=True, name="hallmark-warm-up").start()
        yield
        services.close()

    app = FastAPI(
        title="Hallmark",
        version=__version__,
        lifespan=lifespan,
        description="Guarded, watermarked and C2PA-signed AI video generation: generations for "
        "platform teams, verification and soft-binding resolution (public), and the "
        "review API for trust-and-safety teams.",
    )
    app.middleware("http")(_count_requests)
    app.exception_handler(RequestValidationError)(_invalid_request)

    policy = Policy.load(settings.policy)
    app.state.services = services
    app.state.warm = warm
    app.state.audit_store = services.store
    app.state.review = services.review
    app.state.verifier = services.verifier
    app.state.generation = services.generation
    app.state.generation_config = GenerationConfig(policy, job_settings(settings), settings.model)
    app.state.metrics = metrics.registry(lambda: JobStore(services.store()).counts())

    upload_limit = settings.max_upload_mb * 1024 * 1024
    # A multipart upload's framing comes on top of the file.
    app.include_router(verify_router, max_body_size=upload_limit + 64 * 1024)
    # A generation request is JSON with at most one base64 image: the policy's image limit, plus room.
    image_limit = policy.image.max_megabytes * 1024 * 1024
    app.include_router(generation_router, max_body_size=int(image_limit * 4 / 3) + 1024 * 1024)
    app.include_router(review_router)
    app.include_router(health_router)
    app.include_router(pages.router)
    return app


async def _count_requests(request: Request, call_next) -> Response:
    response = await call_next(request)
    route = request.scope.get("route")
    metrics.REQUESTS.labels(
        getattr(route, "path", "unmatched"), request.method, str(response.status_code)
    ).inc()
    return response


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field and rule, without echoing the input back: a prompt is not copied
    into responses, and a body that is not valid text (a lone surrogate) could not be encoded."""
    errors = [
        {
            "loc": [_printable(part) for part in error["loc"]],
            "msg": _printable(error["msg"]),
            "type": error["type"],
        }
        for error in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


def _printable(value: object) -> object:
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


health_router = APIRouter(tags=["health"])


@health_router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health_router.get("/readyz", summary="Ready to serve: database, queue and models")
def readyz(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    checks: dict[str, str] = {}
    try:
        with services.store().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any database failure means not ready
        checks["database"] = f"unavailable: {type(exc).__name__}"
    context = services.loaded
    checks["generation"] = (
        "ready" if context else ("loading" if request.app.state.warm else "loads on first use")
    )
    if services.generation_error:
        checks["generation"] = f"failed: {services.generation_error}"
    if context is not None and hasattr(context.queue, "ping"):
        checks["broker"] = "ok" if context.queue.ping() else "unavailable"
    ready = (
        checks["database"] == "ok"
        and checks.get("broker", "ok") == "ok"
        and checks["generation"] in ("ready", "loads on first use")
    )
    return JSONResponse({"ready": ready, **checks}, 200 if ready else 503)


@health_router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
