"""The `hallmark` command as a user runs it: a real process, real files, a real database."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # each test starts `hallmark` processes that load the models


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = tmp_path_factory.mktemp("cli-data")
    return {**os.environ, "HALLMARK_DATA_DIR": str(data), "HALLMARK_TORCH_THREADS": "2", "COLUMNS": "200"}


def hallmark(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "hallmark.cli", *args], capture_output=True, text=True, env=env
    )


def test_generate_then_verify_then_tamper(env, tmp_path):
    out = tmp_path / "boat.mp4"
    gen = hallmark("generate", "a paper boat drifting on a pond", "-o", str(out), "--frames", "8", env=env)
    assert gen.returncode == 0, gen.stderr
    assert "released" in gen.stdout and str(out) in gen.stdout
    assert "uncalibrated" in gen.stdout and "open_clip-ViT-B-32" in gen.stdout
    assert "audit record #1" in gen.stdout and "audit.db" in gen.stdout
    assert out.is_file()

    ver = hallmark("verify", str(out), "--json", env=env)
    assert ver.returncode == 0, ver.stderr
    report = json.loads(ver.stdout)
    assert report["manifest"]["trusted"] and report["manifest"]["validation_state"] == "Trusted"
    assert report["manifest"]["model"].startswith("hallmark/tiny-text-to-video")
    mark = report["watermark"]
    assert mark["detected"] and mark["method"] == "hallmark/tilemark-v1" and mark["key_id"] == 1
    assert 0 < mark["false_positive_probability"] <= 1e-6
    assert report["manifest"]["soft_binding"]["alg"] == "org.hallmark.tilemark.v1"
    assert report["record"]["matches_file"] and report["record"]["output_sha256"] == report["sha256"]
    assert report["watermark"]["payload"] in gen.stdout

    plain = hallmark("verify", str(out), env=env)
    assert plain.returncode == 0 and "Authentic: made by Hallmark" in plain.stdout
    assert "signer trusted" in plain.stdout and "Invisible watermark: detected" in plain.stdout
    assert "key id 1" in plain.stdout and "false-positive probability" in plain.stdout

    # Remux drops the C2PA manifest; the watermark still finds the record.
    import av

    stripped = tmp_path / "stripped.mp4"
    with av.open(str(out)) as src, av.open(str(stripped), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    run = hallmark("verify", str(stripped), "--json", env=env)
    assert run.returncode == 3, "made by this generator, but altered since signing"
    report = json.loads(run.stdout)
    assert report["conclusion"]["made_by_generator"] and report["conclusion"]["altered"]
    assert report["recovery"]["manifest"]["label"] == report["recovery"]["manifest_id"]
    assert report["recovery"]["manifest"]["trusted"] and report["recovery"]["source"] == "local audit store"
    assert not report["manifest"]["present"]
    assert report["watermark"]["detected"]
    assert report["record"]["matched_by"] == "watermark payload" and not report["record"]["matches_file"]

    chain = hallmark("audit", "verify", env=env)
    assert chain.returncode == 0 and "intact: 1 rows" in chain.stdout


def test_blocked_prompt_exits_3_and_writes_no_file(env, tmp_path):
    out = tmp_path / "x.mp4"
    run = hallmark("generate", "naked people having sex", "-o", str(out), "--json", env=env)
    assert run.returncode == 3, run.stderr
    result = json.loads(run.stdout)
    assert result["status"] == "blocked" and result["stage"] == "prompt" and result["output"] is None
    assert any(v["action"] == "block" for v in result["verdicts"])
    assert not out.exists()


def test_unreadable_image_and_missing_file_are_clear_errors(env, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    run = hallmark("generate", "a boat", "-o", str(tmp_path / "b.mp4"), "--image", str(bad), env=env)
    assert run.returncode == 1 and "not a readable image" in run.stderr
    empty = hallmark("generate", "   ", "-o", str(tmp_path / "e.mp4"), "--json", env=env)
    assert empty.returncode == 1 and json.loads(empty.stdout)["stage"] == "request"
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"keep me")
    run = hallmark("generate", "a boat", "-o", str(existing), env=env)
    assert run.returncode == 1 and "--overwrite" in run.stderr and existing.read_bytes() == b"keep me"
    missing = hallmark("verify", str(tmp_path / "nope.mp4"), env=env)
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_watermark_keys_rotate_and_old_videos_still_verify(tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "HALLMARK_DATA_DIR": str(data), "HALLMARK_TORCH_THREADS": "2", "COLUMNS": "200"}
    first = tmp_path / "first.mp4"
    assert (
        hallmark("generate", "a red kite over a beach", "-o", str(first), "--frames", "8", env=env).returncode
        == 0
    )
    listed = hallmark("watermark-keys", "list", env=env)
    assert "key id 1: embeds and detects" in listed.stdout
    secret = (data / "watermark-keys.toml").read_text().split('secret = "')[1][:64]
    rotated = hallmark("watermark-keys", "rotate", env=env)
    assert rotated.returncode == 0 and "new embedding key id 2" in rotated.stdout
    assert secret not in listed.stdout + rotated.stdout + rotated.stderr, "secrets are never printed"
    second = tmp_path / "second.mp4"
    gen = hallmark(
        "generate", "a red kite over a beach", "-o", str(second), "--frames", "8", "--json", env=env
    )
    assert json.loads(gen.stdout)["watermark"]["key_id"] == 2
    old = json.loads(hallmark("verify", str(first), "--json", env=env).stdout)["watermark"]
    assert old["detected"] and old["key_id"] == 1, "videos marked before the rotation still verify"
