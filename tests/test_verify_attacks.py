"""Verification under attack (issue 20, items 2 and 3): malformed files are clear 4xx answers or
one-line CLI errors, never a 5xx or a traceback; and verifying never fetches a URL a file names.

The fuzzer mutates a real signed Hallmark MP4 (byte flips, inside the manifest box and anywhere,
truncation, box-size corruption, duplicated boxes) with a fixed seed; `bench/verify_attacks.py`
runs the same mutations longer and prints the table."""

from __future__ import annotations

import http.server
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import natural_frames, sign_as_other_tool
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from generator import GenerationRequest
from hallmark.app import create_app
from hallmark.cli import app as cli
from provenance import encode_mp4, ensure_dev_chain, verify
from provenance.fuzz import MUTATIONS, mutate

FUZZ_CASES = int(os.environ.get("HALLMARK_FUZZ_CASES", "1000"))


@pytest.fixture(scope="module")
def small_release(pipeline, tmp_path_factory) -> Path:
    """A real released file, small so that a thousand verifications take a minute."""
    out = tmp_path_factory.mktemp("fuzz") / "small.mp4"
    result = pipeline(
        GenerationRequest(prompt="a lighthouse at dusk", output=out, height=128, width=128, steps=2)
    )
    assert result.released, result.reason
    return out


@pytest.fixture(scope="module")
def client(settings, pipeline):
    with TestClient(create_app(settings, pipeline=pipeline), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.slow
def test_a_thousand_mutated_files_get_clear_answers_on_every_route_and_the_cli(
    small_release, client, settings, monkeypatch
):
    monkeypatch.setenv("HALLMARK_DATA_DIR", str(settings.data_dir))
    original = small_release.read_bytes()
    rng = random.Random(2020)
    runner = CliRunner()
    seen: dict[str, set[int]] = {"verify": set(), "byContent": set(), "cli": set()}
    kinds: dict[str, int] = {}
    for case in range(FUZZ_CASES):
        kind, data = mutate(original, rng)
        kinds[kind] = kinds.get(kind, 0) + 1
        route = ("verify", "byContent", "cli")[case % 3] if case % 10 else "cli"
        if route == "verify":
            r = client.post("/v1/verify", files={"file": ("x.mp4", data, "video/mp4")})
            assert r.status_code in (200, 413, 422), (case, kind, r.status_code, r.text[:300])
            seen[route].add(r.status_code)
        elif route == "byContent":
            r = client.post("/v1/matches/byContent", content=data, headers={"Content-Type": "video/mp4"})
            assert r.status_code in (200, 400, 422), (case, kind, r.status_code, r.text[:300])
            seen[route].add(r.status_code)
        else:
            path = settings.data_dir / "fuzz.mp4"
            path.write_bytes(data)
            result = runner.invoke(cli, ["verify", str(path), "--json"])
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                case,
                kind,
                repr(result.exception),
            )
            assert result.exit_code in (0, 1, 3, 4), (case, kind, result.exit_code, result.output[-300:])
            seen[route].add(result.exit_code)
    assert set(kinds) == set(MUTATIONS), kinds
    # The mutations reach both outcomes: some files still verify, some are refused.
    assert {200, 422} <= seen["verify"], seen
    assert {1} < seen["cli"] or len(seen["cli"]) > 1, seen


@pytest.mark.slow
def test_a_manifest_that_is_present_but_unreadable_is_not_reported_as_missing(
    small_release, trust_anchors, pipeline
):
    """Flip bytes only inside the manifest store: a report that says so, never 'no manifest'."""
    data = bytearray(small_release.read_bytes())
    start = data.find(b"jumb") - 4
    rng = random.Random(7)
    unreadable = 0
    for trial in range(40):
        copy = bytearray(data)
        for _ in range(3):
            copy[start + rng.randrange(64, 4000)] ^= 0xFF
        path = small_release.with_name(f"flipped{trial}.mp4")
        path.write_bytes(copy)
        report = verify(path, trust_anchors, pipeline.invisible_watermark)
        assert report.manifest.present or report.manifest.error, report.manifest
        unreadable += not report.manifest.valid
    assert unreadable > 0


class _Listener:
    """A local HTTP server that counts the requests it gets."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                hits.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/manifest.c2pa"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def remote_manifest_file(tmp_path):
    """A video whose manifest is not embedded: the file names a URL to fetch it from."""
    listener = _Listener()
    material = ensure_dev_chain(tmp_path / "ca", organisation="Remote Tool")
    plain = tmp_path / "plain.mp4"
    encode_mp4(natural_frames(8, (64, 64)), plain)
    out = sign_as_other_tool(material, plain, tmp_path / "remote.mp4", "Remote tool", remote_url=listener.url)
    yield out, listener
    listener.server.shutdown()


@pytest.mark.slow
def test_verifying_never_fetches_a_url_the_file_names(
    remote_manifest_file, client, settings, pipeline, trust_anchors
):
    path, listener = remote_manifest_file
    report = verify(path, trust_anchors, pipeline.invisible_watermark)
    assert not report.manifest.present and "remote manifest, not fetched" in report.manifest.error
    r = client.post("/v1/verify", files={"file": ("remote.mp4", path.read_bytes(), "video/mp4")})
    assert r.status_code == 200 and "not fetched" in r.json()["manifest"]["error"]
    env = {
        **os.environ,
        "HALLMARK_DATA_DIR": str(settings.data_dir),
        "HALLMARK_TORCH_THREADS": "2",
        "COLUMNS": "300",
    }
    run = subprocess.run(
        [sys.executable, "-m", "hallmark.cli", "verify", str(path)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 4 and "not fetched" in run.stdout, run.stdout + run.stderr
    assert listener.hits == []
    # Only a person who asks for it makes the request (and then the listener sees exactly one).
    run = subprocess.run(
        [sys.executable, "-m", "hallmark.cli", "verify", str(path), "--fetch-remote-manifest"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode in (1, 4), run.stdout + run.stderr
    assert listener.hits == ["/manifest.c2pa"]


@pytest.mark.slow
def test_frames_larger_than_the_limit_are_refused_before_decoding(settings, pipeline, tmp_path):
    """A 4160x4160 H.264 frame (a few kilobytes of file, 52 MB decoded) is over the default limit of
    4096x4096: refused from its declared size, on both upload routes and the CLI."""
    big = tmp_path / "big.mp4"
    encode_mp4(np.zeros((1, 4160, 4160, 3), np.uint8), big)
    assert big.stat().st_size < 200_000
    with TestClient(create_app(settings, pipeline=pipeline)) as client:
        r = client.post("/v1/verify", files={"file": ("big.mp4", big.read_bytes(), "video/mp4")})
        assert (
            r.status_code == 422 and "4160x4160 are larger than this verifier's limit" in r.json()["detail"]
        )
        r = client.post(
            "/v1/matches/byContent", content=big.read_bytes(), headers={"Content-Type": "video/mp4"}
        )
        assert r.status_code == 422 and "larger than this verifier's limit" in r.json()["detail"]
    env = {**os.environ, "HALLMARK_DATA_DIR": str(settings.data_dir), "COLUMNS": "300"}
    run = subprocess.run(
        [sys.executable, "-m", "hallmark.cli", "verify", str(big)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 1 and "larger than this verifier's limit" in run.stderr, run.stdout + run.stderr
    small = settings.model_copy(update={"max_video_pixels": 64 * 64})
    with TestClient(create_app(small, pipeline=pipeline)) as client:
        clip = tmp_path / "clip.mp4"
        encode_mp4(natural_frames(8, (128, 128)), clip)
        r = client.post("/v1/verify", files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")})
        assert r.status_code == 422 and "128x128" in r.json()["detail"]


def test_public_routes_limit_each_client_and_say_when_to_retry(settings, pipeline):
    limited = settings.model_copy(update={"verify_rate_per_minute": 3})
    with TestClient(create_app(limited, pipeline=pipeline)) as client:
        answers = [client.get("/v1/services/supportedAlgorithms") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert (
        int(answers[-1].headers["Retry-After"]) >= 1 and "too many requests" in answers[-1].json()["detail"]
    )


def test_a_busy_verifier_answers_429_instead_of_queueing_without_bound(settings, pipeline, tmp_path):
    clip = tmp_path / "clip.mp4"
    encode_mp4(natural_frames(8, (64, 64)), clip)
    with TestClient(create_app(settings, pipeline=pipeline)) as client:
        verifier = client.app.state.verifier()
        taken = [verifier.slots.take() for _ in range(settings.verify_concurrency)]
        assert all(taken)
        try:
            r = client.post("/v1/verify", files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")})
            assert r.status_code == 429 and "busy" in r.json()["detail"] and r.headers["Retry-After"]
        finally:
            for _ in taken:
                verifier.slots.give_back()
        r = client.post("/v1/verify", files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")})
        assert r.status_code == 200
