"""POST /v1/verify through the app, with real files."""

import pytest
from fastapi.testclient import TestClient

from hallmark.app import create_app


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def test_health(client):
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.slow
def test_verify_upload_reports_trusted_manifest_and_record(client, released):
    with released.output.open("rb") as f:
        r = client.post("/v1/verify", files={"file": ("boat.mp4", f, "video/mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["file"] == "boat.mp4" and body["sha256"] == released.output_sha256
    assert body["manifest"]["trusted"] and body["watermark"]["payload"] == released.watermark_payload
    mark = body["watermark"]
    assert (
        mark["detected"]
        and mark["key_id"] == released.watermark_key_id
        and mark["method"] == "hallmark/tilemark-v1"
    )
    assert 0 < mark["false_positive_probability"] <= 1e-6
    assert body["record"]["generation_id"] == released.generation_id


def test_verify_rejects_bad_uploads_with_the_field_named(client, settings):
    not_video = client.post("/v1/verify", files={"file": ("x.mp4", b"definitely not a video", "video/mp4")})
    assert not_video.status_code == 422 and "field 'file'" in not_video.json()["detail"]
    empty = client.post("/v1/verify", files={"file": ("x.mp4", b"", "video/mp4")})
    assert empty.status_code == 422
    missing = client.post("/v1/verify")
    assert missing.status_code == 422 and "file" in str(missing.json()["detail"])


def test_verify_upload_limit(settings):
    small = settings.model_copy(update={"max_upload_mb": 1})
    with TestClient(create_app(small)) as c:
        big = b"\0" * (1024 * 1024 + 10)
        r = c.post("/v1/verify", files={"file": ("big.mp4", big, "video/mp4")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
