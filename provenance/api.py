"""HTTP router for third parties: POST /v1/verify (no authentication: verification is public)."""

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, UploadFile, status

from audit import AuditStore
from provenance.invisible import InvisibleWatermark
from provenance.verify import VerificationReport, verify


class Verifier:
    """What the verify route needs, built once by the app factory."""

    def __init__(self, trust_anchors_pem: str, watermark: InvisibleWatermark, store: AuditStore | None,
                 max_upload_bytes: int) -> None:  # fmt: skip
        self.trust_anchors_pem = trust_anchors_pem
        self.watermark = watermark
        self.store = store
        self.max_upload_bytes = max_upload_bytes


def build_router(get_verifier: Callable[[], Verifier]) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["verify"])

    @router.post("/verify", response_model=VerificationReport, summary="Verify a video's provenance")
    def verify_upload(  # a plain def: FastAPI runs it in a worker thread, off the event loop
        file: UploadFile, verifier: Annotated[Verifier, Depends(get_verifier)]
    ) -> VerificationReport:
        """Upload a video (multipart field `file`): C2PA manifest, invisible watermark, audit record."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload.mp4"
            size = 0
            with path.open("wb") as out:  # streamed to disk in chunks: memory stays bounded
                while chunk := file.file.read(1 << 20):
                    size += len(chunk)
                    if size > verifier.max_upload_bytes:
                        raise HTTPException(
                            status.HTTP_413_CONTENT_TOO_LARGE,
                            f"field 'file': larger than the limit of {verifier.max_upload_bytes} bytes",
                        )
                    out.write(chunk)
            if size == 0:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "field 'file': empty upload")
            report = verify(path, verifier.trust_anchors_pem, verifier.watermark, verifier.store)
        if report.watermark.error and not report.manifest.present:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"field 'file': {report.watermark.error.replace(str(path) + ': ', '')}",
            )
        report.file = file.filename or "upload"
        return report

    return router
