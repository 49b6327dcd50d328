"""The FastAPI app factory: mounts each package's router. `hallmark serve` runs it."""

from __future__ import annotations

from functools import lru_cache

from fastapi import FastAPI

from generator.pipeline import __version__
from hallmark.compose import build_watermark, open_store, trust_anchors_pem
from hallmark.settings import Settings
from provenance.api import Verifier, build_router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(title="Hallmark", version=__version__,
                  description="Guarded, watermarked and C2PA-signed AI video generation.")  # fmt: skip

    @lru_cache(maxsize=1)
    def get_verifier() -> Verifier:
        return Verifier(
            trust_anchors_pem(settings), build_watermark(settings), open_store(settings),
            settings.max_upload_mb * 1024 * 1024,
        )  # fmt: skip

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(build_router(get_verifier))
    return app
