"""HTTP routes for third parties, all without authentication (verification is public).

- POST /v1/verify: upload a video, get the verification report.
- The C2PA Soft Binding Resolution API for Hallmark's watermark, so that other C2PA tools can
  recover the manifest of a stripped or re-encoded copy: GET and POST /v1/matches/byBinding,
  POST /v1/matches/byContent, GET /v1/manifests/{manifestId}, GET /v1/services/supportedAlgorithms.

Uploads stream to a temporary file in chunks; the request body limit is enforced by the framework
as the bytes arrive (413), so a huge upload never fills memory or disk: the app includes `router`
with `max_body_size` of the Verifier's `max_upload_bytes` plus room for a multipart upload's framing.
"""

import tempfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, UploadFile, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from audit import AuditError, AuditStore
from provenance.limits import RateLimiter, Slots
from provenance.manifest import soft_binding_value
from provenance.resolve import StoreResolver, UnsupportedBinding
from provenance.verify import VerificationReport, verify
from provenance.video import VideoError, iter_frames
from provenance.watermark import VideoWatermark, WatermarkReading

UNPROCESSABLE = status.HTTP_422_UNPROCESSABLE_CONTENT


class Verifier:
    """What the routes need, built once by the app factory."""

    def __init__(
        self,
        trust_anchors_pem: str,
        watermark: VideoWatermark,
        store: AuditStore | None,
        max_upload_bytes: int,
        signers: Collection[str] = (),
        max_pixels: int = 4096 * 4096,
        rate: RateLimiter | None = None,
        slots: Slots | None = None,
    ) -> None:
        self.trust_anchors_pem = trust_anchors_pem
        self.signers = frozenset(signers)  # pins of this deployment's signing keys
        self.watermark = watermark
        self.store = store
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels  # a video's declared frame size, checked before decoding
        self.rate = rate or RateLimiter(per_minute=60)
        self.slots = slots or Slots(2)
        self.resolver = StoreResolver(store, watermark) if store is not None else None


class SoftBindingQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alg: str = Field(description="Soft-binding algorithm name, e.g. org.hallmark.tilemark.v1")
    value: str = Field(description="Base64 value of the soft binding, in the algorithm's format")


class SoftBindingMatch(BaseModel):
    manifestId: str  # noqa: N815 (the C2PA API's field names)
    similarityScore: int = 100  # noqa: N815 (a decoded watermark with a valid CRC is an exact match)


class SoftBindingQueryResult(BaseModel):
    matches: list[SoftBindingMatch]


class SoftBindingAlg(BaseModel):
    alg: str


class SoftBindingAlgList(BaseModel):
    watermarks: list[SoftBindingAlg]
    fingerprints: list[SoftBindingAlg] = []


def get_verifier(request: Request) -> Verifier:
    """The verification services (built by the app factory)."""
    return request.app.state.verifier()


def admit(request: Request, verifier: Annotated[Verifier, Depends(get_verifier)]) -> None:
    """The per-client rate limit of every public route: 429 with Retry-After. The client is the
    connection's address (behind a proxy, run uvicorn with --proxy-headers so it is the caller's)."""
    wait = verifier.rate.wait(request.client.host if request.client else "unknown")
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many requests from this address; retry in {wait:.0f} s",
            headers={"Retry-After": str(max(1, round(wait)))},
        )


router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(admit)],
    responses={
        429: {"description": "rate limited, or the verifier is busy: retry after Retry-After seconds"}
    },
)
Verified = Annotated[Verifier, Depends(get_verifier)]


@contextmanager
def _slot(verifier: Verifier) -> Iterator[None]:
    """One of the verifications that may decode at once, or 429 (busy) when none frees soon."""
    if not verifier.slots.take():
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "the verifier is busy with other uploads; retry shortly",
            headers={"Retry-After": "2"},
        )
    try:
        yield
    finally:
        verifier.slots.give_back()


def _matches(verifier: Verifier, alg: str, value: str, max_results: int) -> SoftBindingQueryResult:
    if verifier.resolver is None:
        return SoftBindingQueryResult(matches=[])
    try:
        labels = verifier.resolver.matches(alg, value, max_results)
    except UnsupportedBinding as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    return SoftBindingQueryResult(matches=[SoftBindingMatch(manifestId=label) for label in labels])


@router.post(
    "/verify", response_model=VerificationReport, tags=["verify"], summary="Verify a video's provenance"
)
def verify_upload(file: UploadFile, verifier: Verified) -> VerificationReport:
    """Upload a video (multipart field `file`): C2PA manifest, invisible watermark, the original
    manifest when the file's own is stripped or broken, and the audit record."""
    # a plain def: FastAPI runs it in a worker thread, off the event loop
    with _spooled(file.file.read, verifier.max_upload_bytes, "file") as path, _slot(verifier):
        try:
            report = verify(
                path,
                verifier.trust_anchors_pem,
                verifier.watermark,
                verifier.store,
                signers=verifier.signers,
                max_pixels=verifier.max_pixels,
            )
        except VideoError as exc:
            raise HTTPException(UNPROCESSABLE, f"field 'file': {_strip_path(exc, path)}") from exc
    report.file = file.filename or "upload"
    return report


@router.get(
    "/matches/byBinding",
    response_model=SoftBindingQueryResult,
    tags=["soft binding"],
    summary="C2PA manifest ids for a soft binding (watermark value)",
)
def matches_by_binding(
    verifier: Verified,
    alg: Annotated[str, Query(description="Soft-binding algorithm name")],
    value: Annotated[str, Query(description="Base64 value of the soft binding")],
    max_results: Annotated[int, Query(alias="maxResults", ge=1, le=100)] = 10,
) -> SoftBindingQueryResult:
    return _matches(verifier, alg, value, max_results)


@router.post(
    "/matches/byBinding",
    response_model=SoftBindingQueryResult,
    tags=["soft binding"],
    summary="C2PA manifest ids for a soft binding, value in the body",
)
def matches_by_large_binding(
    query: SoftBindingQuery,
    verifier: Verified,
    max_results: Annotated[int, Query(alias="maxResults", ge=1, le=100)] = 10,
) -> SoftBindingQueryResult:
    return _matches(verifier, query.alg, query.value, max_results)


@router.post(
    "/matches/byContent",
    response_model=SoftBindingQueryResult,
    tags=["soft binding"],
    summary="C2PA manifest ids for a video: the service reads its watermark",
)
async def matches_by_content(
    request: Request,
    verifier: Verified,
    alg: Annotated[str | None, Query(description="Soft-binding algorithm to read")] = None,
    max_results: Annotated[int, Query(alias="maxResults", ge=1, le=100)] = 10,
) -> SoftBindingQueryResult:
    """The request body is the video itself (Content-Type video/*)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip()
    if not media_type.startswith("video/"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"the body must be a video (Content-Type video/*), not {media_type or 'none'}",
        )
    watermark = verifier.watermark
    if alg is not None and alg != watermark.soft_binding_alg:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"alg {alg!r} is not read here; supported: {watermark.soft_binding_alg}",
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        with path.open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        if path.stat().st_size == 0:
            raise HTTPException(UNPROCESSABLE, "the body is empty")

        def read() -> WatermarkReading:
            with _slot(verifier):
                frames = iter_frames(path, 240, format=watermark.input_format, max_pixels=verifier.max_pixels)
                return watermark.detect(frames)

        try:
            reading = await run_in_threadpool(read)
        except VideoError as exc:
            raise HTTPException(UNPROCESSABLE, f"body: {_strip_path(exc, path)}") from exc
    if not reading.detected or reading.payload is None:
        return SoftBindingQueryResult(matches=[])
    value = soft_binding_value(reading.payload, reading.key_id)
    return _matches(verifier, watermark.soft_binding_alg, value, max_results)


@router.get(
    "/manifests/{manifestId}",
    tags=["soft binding"],
    response_class=Response,
    responses={200: {"content": {"application/c2pa": {}}}, 404: {"description": "unknown manifest"}},
    summary="The C2PA manifest store of a released video",
)
def manifest_by_id(
    verifier: Verified,
    manifest_id: Annotated[str, PathParam(alias="manifestId")],
    return_active_manifest: Annotated[bool, Query(alias="returnActiveManifest")] = False,
) -> Response:
    """The whole manifest store (the active manifest with its ingredients' manifests), as it was
    embedded in the released file. `returnActiveManifest` is accepted; the store is returned
    either way, since a C2PA manifest cannot be validated without the store it belongs to."""
    try:
        store = verifier.store.manifest_store(manifest_id) if verifier.store is not None else None
    except AuditError as exc:  # the stored bytes no longer match their hash: never serve them
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from exc
    if store is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no manifest {manifest_id!r}")
    return Response(
        store,
        media_type="application/c2pa",
        headers={"Content-Disposition": 'attachment; filename="manifest.c2pa"'},
    )


@router.get(
    "/services/supportedAlgorithms",
    response_model=SoftBindingAlgList,
    tags=["soft binding"],
    summary="Soft-binding algorithms this service resolves",
)
def supported_algorithms(verifier: Verified) -> SoftBindingAlgList:
    return SoftBindingAlgList(watermarks=[SoftBindingAlg(alg=verifier.watermark.soft_binding_alg)])


@contextmanager
def _spooled(read: Callable[[int], bytes], limit: int, field: str) -> Iterator[Path]:
    """Copy an upload to a temporary file in 1 MiB chunks, refusing more than `limit` bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        size = 0
        with path.open("wb") as out:
            while chunk := read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise HTTPException(
                        status.HTTP_413_CONTENT_TOO_LARGE,
                        f"field '{field}': larger than the limit of {limit} bytes",
                    )
                out.write(chunk)
        if size == 0:
            raise HTTPException(UNPROCESSABLE, f"field '{field}': empty upload")
        yield path


def _strip_path(exc: Exception, path: Path) -> str:
    return str(exc).replace(f"{path}: ", "").replace(f"{path.name}: ", "")
