"""One set of request rules (generator/request.py), used by the CLI, the HTTP API, the job runner
and the pipeline: every problem is named by its field, an input image is checked before it is
decoded, and a request that fails its checks is refused, and recorded as refused, before any
model loads."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from audit.keys import create_key
from generator.request import (
    MIN_FRAMES,
    GenerationRequest,
    RequestRefused,
    check,
    frame_size,
    read_image,
)
from hallmark.app import create_app
from hallmark.compose import open_store
from hallmark.settings import Settings
from policy import Policy


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load()


def fields(request: GenerationRequest, policy: Policy) -> set[str]:
    return {problem.field for problem in check(request, policy)}


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 120, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_good_request_has_no_problems(policy):
    assert check(GenerationRequest(prompt="a paper boat", output=Path("boat.mp4")), policy) == []
    # A queued request has no output yet: that is not a problem until it runs.
    assert check(GenerationRequest(prompt="a paper boat"), policy) == []


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"prompt": "   "}, "prompt", "empty"),
        ({"prompt": "x" * 2001}, "prompt", "allows 2000"),
        ({"prompt": "a \ud800 boat"}, "prompt", "surrogate"),
        ({"prompt": "a \x00 boat"}, "prompt", "NUL"),
        ({"num_frames": MIN_FRAMES - 1}, "num_frames", f"at least {MIN_FRAMES} frames"),
        ({"fps": 0}, "fps", "at least 1"),
        ({"steps": 0}, "steps", "at least 1"),
        ({"output": Path("boat.gif")}, "output", ".mp4"),
        ({"height": 250}, "height", "multiple of 8"),
        ({"width": -8}, "width", "positive multiple of 8"),
        ({"tier": "platinum"}, "tier", "no tier 'platinum'"),
        ({"height": 720, "width": 1280, "tier": "free"}, "height", "up to 480p"),
        ({"num_frames": 800, "tier": "free"}, "num_frames", "allows up to"),
        ({"visible_watermark": False, "tier": "free"}, "visible_watermark", "does not allow"),
    ],
)
def test_each_rule_names_its_field(policy, change, field, words):
    request = GenerationRequest(**{"prompt": "a paper boat", "output": Path("boat.mp4"), **change})
    problems = check(request, policy)
    assert [p.field for p in problems] == [field], problems
    assert words in problems[0].message


def test_every_problem_is_named_at_once(policy):
    request = GenerationRequest(prompt="", output=Path("x.gif"), num_frames=2, height=12, tier="free")
    assert fields(request, policy) >= {"prompt", "num_frames", "output", "height"}


def test_a_tier_that_allows_more_accepts_what_the_free_one_refuses(policy):
    big = GenerationRequest(prompt="a boat", output=Path("b.mp4"), height=720, width=1280)
    assert "height" in fields(GenerationRequest(**{**big.__dict__, "tier": "free"}), policy)
    assert "height" not in fields(GenerationRequest(**{**big.__dict__, "tier": "pro"}), policy)


def test_an_image_is_refused_when_the_policy_screens_none(policy):
    no_images = policy.model_copy(
        update={
            "image": policy.image.model_copy(
                update={"nudity": policy.image.nudity.model_copy(update={"enabled": False})}
            )
        }
    )
    request = GenerationRequest(prompt="a boat", image=np.zeros((8, 8, 3), np.uint8))
    assert fields(request, policy) == set()
    assert fields(request, no_images) == {"image"}


def test_frame_sizes_are_multiples_of_8_with_the_short_side_asked_for():
    assert frame_size(480, "landscape") == (856, 480)
    assert frame_size(480, "portrait") == (480, 856)
    assert frame_size(250, "square") == (248, 248)


def test_read_image_checks_type_and_size_before_decoding(policy):
    read = read_image(png(32, 24), policy, "in.png")
    assert read.pixels.shape == (24, 32, 3) and read.ingredient.media_type == "image/png"
    with pytest.raises(RequestRefused, match="not a readable image"):
        read_image(b"plain text, not a picture", policy)
    with pytest.raises(RequestRefused, match="image/gif is not allowed|not a readable image"):
        read_image(b"GIF89a" + b"\0" * 32, policy)
    small = policy.model_copy(update={"image": policy.image.model_copy(update={"max_pixels": 100})})
    with pytest.raises(RequestRefused, match="larger than the policy's 100 pixels") as refused:
        read_image(png(32, 24), small)
    assert refused.value.problems[0].field == "image"
    truncated = png(32, 24)[:60]
    with pytest.raises(RequestRefused, match="not a readable image"):
        read_image(truncated, policy)


def test_the_cli_refuses_a_bad_request_before_loading_any_model(tmp_path):
    """The model setting names a directory that does not exist: had the CLI tried to load it,
    the error would be a model error, not the named field."""
    env = {
        **os.environ,
        "HALLMARK_DATA_DIR": str(tmp_path / "data"),
        "HALLMARK_MODEL": str(tmp_path / "no-such-model"),
        "HALLMARK_TORCH_THREADS": "2",
    }
    run = subprocess.run(
        [sys.executable, "-m", "hallmark.cli", "generate", "   ", "-o", str(tmp_path / "e.mp4"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr
    result = json.loads(run.stdout)
    assert (result["status"], result["stage"]) == ("refused", "request")
    assert "prompt: is empty" in run.stderr and "refused" in run.stderr
    store = open_store(Settings(data_dir=tmp_path / "data"))
    record = store.get(result["generation_id"])
    assert (record.status, record.blocked_stage, record.model_id) == (
        "refused",
        "request",
        env["HALLMARK_MODEL"],
    )
    assert not (tmp_path / "e.mp4").exists()
    store.dispose()


def test_the_api_refuses_and_records_bad_fields_without_loading_the_pipeline(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", model=str(tmp_path / "no-such-model"), torch_threads=2)
    store = open_store(settings)
    key = create_key(store, "generator", "acme", tenant="acme")[1]
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(settings)) as client:
        cases = [
            ({"prompt": "a boat", "height": 720}, "field 'height'"),
            ({"prompt": "a boat", "duration_s": 60}, "field 'duration_s'"),
            ({"prompt": "a \x00 boat"}, "field 'prompt'"),
            ({"prompt": "   "}, "field 'prompt'"),
        ]
        for body, named in cases:
            # As a client sends them: a lone surrogate can only travel as a JSON escape.
            raw = json.dumps(body)
            r = client.post(
                "/v1/generations", content=raw, headers={**headers, "Content-Type": "application/json"}
            )
            assert r.status_code == 422 and named in r.json()["detail"], (body, r.text)
            record = store.get(r.json()["request_id"])
            assert (record.status, record.blocked_stage, record.tenant) == ("refused", "request", "acme")
        # A lone surrogate is not valid JSON text: 422, and the body is not echoed back.
        raw = json.dumps({"prompt": "secret \ud800 plan"})
        r = client.post(
            "/v1/generations", content=raw, headers={**headers, "Content-Type": "application/json"}
        )
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "prompt"]
        assert "secret" not in r.text
        assert client.get("/readyz").json()["generation"] == "loads on first use"
        page = client.get("/v1/audit/records", params={"status": "refused"}, headers=headers).json()
        assert len(page["items"]) == len(cases)
    assert store.verify_chain().ok
    store.dispose()
