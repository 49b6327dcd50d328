"""The FastAPI app factory: mounts each package's router. `hallmark serve` runs it."""

from __future__ import annotations

from functools import lru_cache

from fastapi import FastAPI

from audit import AuditStore
from audit.api import ReviewContext
from audit.api import build_router as build_review_router
from generator.pipeline import __version__
from hallmark.compose import build_watermark, open_store, trust_anchors_pem
from hallmark.pages import build_pages
from hallmark.settings import Settings
from provenance import thumbnail_strip
from provenance.api import Verifier
from provenance.api import build_router as build_verify_router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(title="Hallmark", version=__version__,
                  description="Guarded, watermarked and C2PA-signed AI video generation: "
                              "verification (public) and the review API for trust-and-safety teams.")  # fmt: skip

    @lru_cache(maxsize=1)
    def get_store() -> AuditStore:
        return open_store(settings)

    @lru_cache(maxsize=1)
    def get_verifier() -> Verifier:
        return Verifier(trust_anchors_pem(settings), build_watermark(settings), get_store(),
                        settings.max_upload_mb * 1024 * 1024)  # fmt: skip

    @lru_cache(maxsize=1)
    def get_review() -> ReviewContext:
        return ReviewContext(get_store(), thumbnail_strip)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(build_verify_router(get_verifier, settings.max_upload_mb * 1024 * 1024))
    app.include_router(build_review_router(get_review))
    app.include_router(build_pages())
    return app
