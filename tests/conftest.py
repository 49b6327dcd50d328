"""Fixtures for real parts: a temporary data directory (SQLite, dev certificates), the real
pipeline with the tiny model, PostgreSQL when it runs, and the shared data when it is present."""

from __future__ import annotations

import copy
import os
import uuid
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(2)

SHARED_DATA = Path(
    os.environ.get("HALLMARK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
POSTGRES_URL = os.environ.get(
    "HALLMARK_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hallmark-data")


@pytest.fixture(scope="session")
def settings(data_dir):
    from hallmark.settings import Settings

    # The suite verifies hundreds of files from one test client: the per-client rate limit of the
    # public routes is lifted here; tests of the limit set their own.
    return Settings(data_dir=data_dir, torch_threads=2, verify_rate_per_minute=1_000_000)


@pytest.fixture(scope="session")
def pipeline(settings):
    """The real pipeline on the embedded default, built once: loading its models takes seconds."""
    from hallmark.compose import build_pipeline

    return build_pipeline(settings)


@pytest.fixture
def variant(pipeline):
    """A shallow copy of the pipeline whose stages a test may swap without touching the shared one."""
    return copy.copy(pipeline)


@pytest.fixture(scope="session")
def trust_anchors(settings) -> str:
    from hallmark.compose import trust_anchors_pem

    return trust_anchors_pem(settings)


@pytest.fixture(scope="session")
def signers(settings) -> list[str]:
    """The pins of this deployment's signing keys, as the app and the CLI compute them."""
    from hallmark.compose import signing_identities

    return signing_identities(settings)


@pytest.fixture(scope="session")
def released(pipeline, tmp_path_factory):
    """One released generation shared by the read-only tests."""
    from generator import GenerationRequest

    out = tmp_path_factory.mktemp("released") / "boat.mp4"
    result = pipeline(GenerationRequest(prompt="a paper boat drifting on a pond", output=out, seed=7))
    assert result.status == "released", result.reason
    return result


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped afterwards; skipped when none runs."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    try:
        admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"hallmark_test_{uuid.uuid4().hex[:10]}"
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except Exception as exc:  # no server, no driver, no permission
        pytest.skip(f"PostgreSQL not available at {POSTGRES_URL}: {exc}")
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set HALLMARK_SHARED_DATA)")
    return SHARED_DATA


def natural_frames(count: int = 16, size: tuple[int, int] = (256, 256)) -> np.ndarray:
    """Frames of a benign photograph (scikit-image ships it), shifted a little each frame."""
    from PIL import Image
    from skimage import data

    base = np.asarray(Image.fromarray(data.coffee()).resize(size))
    return np.stack([np.roll(base, 3 * i, axis=1) for i in range(count)])


@pytest.fixture
def hallmark_server():
    """Starts `hallmark serve` on a free port over a data directory; returns its base URL once
    /healthz answers. Every server started is stopped after the test."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    servers = []

    def start(data_dir: Path) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {"HALLMARK_DATA_DIR": str(data_dir), "PATH": "", "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "-m", "hallmark.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        servers.append(
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    return base
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"hallmark serve did not answer on {base}")

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=30)


def capture_manifest(name: str, version: str, title: str, media_type: str) -> dict:
    """The manifest definition of a capture device or another tool: one `c2pa.created` action."""
    created = {
        "action": "c2pa.created",
        "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture",
    }
    return {
        "claim_generator_info": [{"name": name, "version": version}],
        "title": title,
        "format": media_type,
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [created]}}],
    }


def sign_as_other_tool(
    material, source: Path, dest: Path, name: str = "Other editor", remote_url: str | None = None
) -> Path:
    """Sign `source` as another C2PA tool would (a capture manifest naming `name`), with
    `material`'s key; with `remote_url`, the manifest is not embedded: the file names that URL."""
    import c2pa

    manifest = capture_manifest(name, "9", dest.name, "video/mp4")
    info = c2pa.C2paSignerInfo(b"es256", material.chain_pem(), material.key_pem(), None)
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest) as builder:
        if remote_url is not None:
            builder.set_no_embed()
            builder.set_remote_url(remote_url)
        with source.open("rb") as src, dest.open("w+b") as dst:
            builder.sign(signer, "video/mp4", src, dst)
    return dest


def look_alike_facts(released, pipeline, **changes):
    """Hallmark's claims, copied from a release: the screening, the policy, the model and the
    soft binding, for a forger's manifest."""
    from provenance.manifest import ManifestFacts

    facts = dict(
        generation_id="forged",
        title="forged.mp4",
        model_name=pipeline.backend.name,
        model_version=pipeline.backend.version,
        policy=pipeline.policy.label,
        screening={"classifiers": {}, "uncalibrated": []},
        watermark_method=pipeline.invisible_watermark.name,
        watermark_payload=released.watermark_payload,
        watermark_alg=pipeline.invisible_watermark.soft_binding_alg,
        claim_generator_version="0.1.0",
        watermark_key_id=released.watermark_key_id,
    )
    return ManifestFacts(**{**facts, **changes})
