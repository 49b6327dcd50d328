"""Web pages served by the app, static HTML that calls the API from the browser.

- /verify, public: upload a video, see the verification report.
- /review: the review API with the reviewer's key (kept in the tab's sessionStorage, never in a
  cookie or URL)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

_STATIC = Path(__file__).parent / "static"


router = APIRouter(include_in_schema=False)


@router.get("/review", response_class=HTMLResponse)
def review_page() -> HTMLResponse:
    return HTMLResponse((_STATIC / "review.html").read_text(), headers=_SECURITY_HEADERS)


@router.get("/verify", response_class=HTMLResponse)
def verify_page() -> HTMLResponse:
    return HTMLResponse((_STATIC / "verify.html").read_text(), headers=_SECURITY_HEADERS)


_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
