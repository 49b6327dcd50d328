"""The generation service over HTTP with in-process jobs: the real pipeline (tiny model), SQLite,
real files. Happy path, refusals, tier limits, quotas, idempotency, cancellation, roles, bad
input, recovery of a lost job, metrics and readiness."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import time

import pytest
from conftest import natural_frames
from fastapi.testclient import TestClient

from audit.keys import create_key
from hallmark.app import create_app
from hallmark.compose import open_store
from hallmark.settings import Settings
from jobs.runner import JobSettings, recover, run_job
from jobs.store import JobDraft, JobStore, Limits
from provenance import verify

SMALL = {"height": 128, "aspect_ratio": "square", "duration_s": 1}  # 8 frames of 128x128: quick


@pytest.fixture(scope="module")
def service(settings, pipeline):
    """The app over the session's data directory, reusing the session's pipeline."""
    store = open_store(settings)
    keys = {
        "free": create_key(store, "generator", "acme-free", tenant="acme")[1],
        "pro": create_key(store, "generator", "acme-pro", tenant="acme", tier="pro")[1],
        "other": create_key(store, "generator", "globex", tenant="globex")[1],
        "reviewer": create_key(store, "reviewer", "rita")[1],
    }
    with TestClient(create_app(settings, pipeline=pipeline)) as client:
        yield client, {name: {"Authorization": f"Bearer {key}"} for name, key in keys.items()}, store
    store.dispose()


def queued_job(jobs: JobStore, user: str, prompt: str, seed: int):
    """A tiny job queued straight in the database, for tests that play the worker themselves."""
    params = {
        "width": 128,
        "height": 128,
        "num_frames": 8,
        "fps": 8,
        "steps": 4,
        "seed": seed,
        "visible_watermark": True,
    }
    draft = JobDraft(
        tenant="acme",
        user=user,
        key_id=None,
        tier="free",
        params=params,
        prompt=prompt,
        request_sha256=str(seed),
    )
    return jobs.create(draft, Limits(10, 10))[0]


def wait_for(client, url, headers, states=("succeeded", "failed", "cancelled"), timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(url, headers=headers).json()
        if body["state"] in states:
            return body
        time.sleep(0.2)
    raise AssertionError(f"job never reached {states}: {body}")


@pytest.mark.slow
def test_a_generation_from_request_to_signed_video(service, pipeline, trust_anchors, signers):
    client, keys, store = service
    r = client.post(
        "/v1/generations",
        json={"prompt": "a paper boat drifting on a pond", "user": "u-happy", **SMALL},
        headers=keys["free"],
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] in ("queued", "running") and job["tier"] == "free" and job["user"] == "u-happy"
    done = wait_for(client, job["links"]["self"], keys["free"])
    assert done["state"] == "succeeded" and done["progress"] == 1.0 and done["attempts"] == 1, done
    video = client.get(done["links"]["video"], headers=keys["free"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    record = store.get(done["request_id"])
    assert record.status == "released" and record.tier == "free" and record.user == "u-happy"
    assert hashlib.sha256(video.content).hexdigest() == record.output_sha256
    report = client.get(done["links"]["report"], headers=keys["free"]).json()
    assert report["generation_id"] == done["request_id"] and report["tier"] == "free"
    assert report["c2pa_manifest"] == record.manifest_label and report["verdicts"]
    path = pipeline.audit.get(done["request_id"]).output_path
    checked = verify(path, trust_anchors, pipeline.invisible_watermark, pipeline.audit, signers=signers)
    assert checked.conclusion.made_by_generator and checked.conclusion.altered is False
    assert store.verify_chain().ok
    assert JobStore(store).inputs(done["id"]) is None, "the prompt lives in the audit record only"


def test_a_blocked_prompt_is_refused_at_once_and_audited(service):
    client, keys, store = service
    r = client.post(
        "/v1/generations", json={"prompt": "a naked woman posing on a bed", **SMALL}, headers=keys["free"]
    )
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["stage"] == "prompt" and body["category"] == "sexual" and body["score"] >= body["threshold"]
    record = store.get(body["request_id"])
    assert record.status == "blocked" and record.blocked_stage == "prompt" and record.tier == "free"
    assert body["policy"] == f"{record.policy_name}@{record.policy_version}"


def test_tier_limits_and_request_fields_are_named(service):
    client, keys, _ = service
    cases = [
        ({"height": 720}, "free", "field 'height'"),
        ({"duration_s": 6}, "free", "field 'duration_s'"),
        ({"visible_watermark": False}, "free", "field 'visible_watermark'"),
        ({"duration_s": 0.5}, "pro", "field 'duration_s'"),
        ({"image": "%%% not base64"}, "free", "field 'image'"),
        ({"image": base64.b64encode(b"GIF89a" + b"\0" * 20).decode()}, "free", "field 'image'"),
    ]
    for change, key, message in cases:
        r = client.post("/v1/generations", json={"prompt": "a boat", **SMALL, **change}, headers=keys[key])
        assert r.status_code == 422 and message in r.json()["detail"], (change, r.text)
    unknown = client.post("/v1/generations", json={"prompt": "a boat", "colour": "red"}, headers=keys["free"])
    assert unknown.status_code == 422 and "colour" in unknown.text
    too_long = client.post("/v1/generations", json={"prompt": "boat " * 1000, **SMALL}, headers=keys["free"])
    assert too_long.status_code == 422 and "field 'prompt'" in too_long.json()["detail"]


@pytest.mark.slow
def test_roles_and_tenants(service):
    client, keys, _ = service
    assert client.post("/v1/generations", json={"prompt": "a boat"}).status_code == 401
    assert (
        client.post("/v1/generations", json={"prompt": "a boat"}, headers=keys["reviewer"]).status_code == 403
    )
    r = client.post(
        "/v1/generations",
        json={"prompt": "a lighthouse at dusk", "user": "u-roles", **SMALL},
        headers=keys["free"],
    )
    job = r.json()
    assert client.get(job["links"]["self"], headers=keys["other"]).status_code == 404, "another tenant's job"
    assert client.get(job["links"]["self"], headers=keys["pro"]).status_code == 200, "same tenant, other key"
    wait_for(client, job["links"]["self"], keys["free"])


@pytest.mark.slow
def test_idempotent_retry_returns_the_same_job(service):
    client, keys, _ = service
    body = {"prompt": "a kite over a beach", "user": "u-idem", **SMALL}
    headers = {**keys["free"], "Idempotency-Key": "retry-1"}
    first = client.post("/v1/generations", json=body, headers=headers)
    again = client.post("/v1/generations", json=body, headers=headers)
    assert first.status_code == 202 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = client.post("/v1/generations", json={**body, "prompt": "a different kite"}, headers=headers)
    assert other.status_code == 409 and "different request" in other.json()["detail"]
    wait_for(client, first.json()["links"]["self"], keys["free"])


@pytest.mark.slow
def test_concurrency_and_monthly_quotas_answer_429(service, settings, pipeline, tmp_path):
    client, keys, store = service
    body = {"prompt": "rain on a window", "user": "u-busy", **SMALL}
    accepted = [client.post("/v1/generations", json=body, headers=keys["free"]) for _ in range(2)]
    assert all(r.status_code == 202 for r in accepted)
    third = client.post("/v1/generations", json=body, headers=keys["free"])
    assert third.status_code == 429 and third.json()["kind"] == "concurrent" and third.json()["limit"] == 2
    for r in accepted:
        wait_for(client, r.json()["links"]["self"], keys["free"])

    jobs = JobStore(store)
    limits = Limits(per_month=2, concurrent=5)
    draft = JobDraft(
        tenant="acme", user="u-month", key_id=None, tier="free", params={}, prompt="x", request_sha256="0"
    )
    now = dt.datetime(2026, 11, 30, 23, 0, tzinfo=dt.UTC)
    jobs.create(draft, limits, now=now)
    jobs.create(draft, limits, now=now)
    from jobs.store import QuotaExceeded

    with pytest.raises(QuotaExceeded) as refused:
        jobs.create(draft, limits, now=now)
    assert refused.value.kind == "month" and refused.value.resets_at == dt.datetime(
        2026, 12, 1, tzinfo=dt.UTC
    )
    assert jobs.create(draft, limits, now=dt.datetime(2026, 12, 1, 0, 1, tzinfo=dt.UTC))[1], "a new month"


@pytest.mark.slow
def test_monthly_quota_over_http_says_when_it_resets(settings, pipeline, tmp_path):
    from policy import Policy

    text = Policy.load().source
    policy_file = tmp_path / "tight.toml"
    policy_file.write_text(
        open(text).read().replace("generations_per_month = 50", "generations_per_month = 1")
    )
    tight = settings.model_copy(update={"data_dir": tmp_path / "data", "policy": policy_file})
    from hallmark.compose import build_pipeline

    store = open_store(tight)
    _, key = create_key(store, "generator", "acme", tenant="acme")
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(tight, pipeline=build_pipeline(tight))) as client:
        first = client.post("/v1/generations", json={"prompt": "a quiet harbour", **SMALL}, headers=headers)
        assert first.status_code == 202
        wait_for(client, first.json()["links"]["self"], headers)
        second = client.post("/v1/generations", json={"prompt": "a quiet harbour", **SMALL}, headers=headers)
    assert second.status_code == 429 and second.json()["kind"] == "month"
    resets = dt.datetime.fromisoformat(second.json()["resets_at"])
    assert resets.day == 1 and resets > dt.datetime.now(dt.UTC)
    assert 0 < int(second.headers["Retry-After"]) <= 31 * 86400
    store.dispose()


class HeldBackend:
    """The real backend, held after its first denoising step until the test lets it go: a job on
    it is running, mid-generation, for as long as the test needs."""

    def __init__(self, backend) -> None:
        import threading

        self._backend = backend
        self.name, self.version = backend.name, backend.version
        self.reached, self.release = threading.Event(), threading.Event()

    @property
    def accepts_image(self) -> bool:
        return self._backend.accepts_image

    def generate(self, spec, on_step=None):
        def step(done: int, total: int) -> None:
            on_step(done, total)  # the pipeline's progress report: the heartbeat and the cancel check
            if done == 1:
                self.reached.set()
                self.release.wait(timeout=120)

        return self._backend.generate(spec, on_step=step)


def test_cancelling_a_queued_and_a_running_job(variant, settings, tmp_path):
    """The running job is held after its first step (HeldBackend), so the cancel always arrives
    while it generates: it must end cancelled, not finish, and its audit record must say so."""
    held = variant.backend = HeldBackend(variant.backend)
    own = settings.model_copy(update={"data_dir": tmp_path / "data", "job_lease_s": 3})  # beats every 1 s
    store = variant.audit = open_store(own)
    _, key = create_key(store, "generator", "acme-cancel", tenant="acme")
    headers = {"Authorization": f"Bearer {key}"}
    slow = {"prompt": "a slow sunrise over hills", "user": "u-cancel", **SMALL}
    with TestClient(create_app(own, pipeline=variant)) as client:
        try:
            running = client.post("/v1/generations", json=slow, headers=headers).json()
            queued = client.post(
                "/v1/generations", json={**slow, "prompt": "a second sunrise"}, headers=headers
            ).json()
            assert held.reached.wait(120), "the first job never reached its first denoising step"
            cancelled = client.post(queued["links"]["cancel"], headers=headers).json()
            assert cancelled["state"] == "cancelled", cancelled
            record = store.get(cancelled["request_id"])
            assert record.status == "cancelled" and record.blocked_stage == "queue"

            url = running["links"]["self"]
            deadline = time.monotonic() + 30
            while (job := client.get(url, headers=headers).json())["stage"] != "generate":
                assert time.monotonic() < deadline and job["state"] in ("queued", "running"), job
                time.sleep(0.1)
            assert job["state"] == "running" and 0 < job["progress"] < 1, job
            asked = client.post(running["links"]["cancel"], headers=headers).json()
            assert asked["state"] == "running" and asked["cancel_requested"], asked
            # Progress reaches the database at most twice a second: after this wait, the next step's
            # report reads the cancel request.
            time.sleep(0.6)
            held.release.set()
            stopped = wait_for(client, url, headers)
        finally:
            held.release.set()  # never leave the worker thread waiting
        assert stopped["state"] == "cancelled", stopped
        record = store.get(stopped["request_id"])
        assert (record.status, record.blocked_stage) == ("cancelled", "generate"), record
        assert record.output_sha256 is None and record.manifest_label is None
        again = client.post(running["links"]["cancel"], headers=headers)
        assert again.status_code == 200 and again.json()["state"] == "cancelled", again.text
        assert client.get(url + "/video", headers=headers).status_code == 409
        assert client.get(cancelled["links"]["self"] + "/video", headers=headers).status_code == 409
    store.dispose()


@pytest.mark.slow
def test_a_job_whose_worker_died_is_run_again_and_recorded_once(service, pipeline, settings, tmp_path):
    _, _, store = service
    jobs = JobStore(store)
    options = JobSettings(artifacts=tmp_path, lease=dt.timedelta(seconds=1))
    job = queued_job(jobs, "u-lost", "a red kite over a beach", seed=1)
    assert jobs.claim(job.id, options.lease, 3) is not None  # a worker took it ... and died
    assert jobs.claim(job.id, options.lease, 3) is None, "its lease is fresh: nobody else runs it"
    time.sleep(1.2)

    class Queue:
        def submit(self, job_id):
            run_job(pipeline, jobs, job_id, options)

    assert job.id in recover(pipeline, jobs, Queue(), options)
    final = jobs.get(job.id)
    assert final.state == "succeeded" and final.attempts == 2
    assert store.get(final.generation_id).status == "released"
    assert run_job(pipeline, jobs, job.id, options) is None, "a finished job is not run again"


def test_metrics_and_readiness(service):
    client, keys, store = service
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    client.post("/v1/generations", json={"prompt": "explicit porn", **SMALL}, headers=keys["free"])
    text = client.get("/metrics").text
    counts = JobStore(store).counts()
    for state, n in counts.items():
        assert f'hallmark_jobs{{state="{state}"}} {float(n)}' in text
    assert f"hallmark_queue_depth {float(counts['queued'])}" in text
    assert 'hallmark_blocks_total{category="sexual",stage="prompt"}' in text
    assert 'hallmark_http_requests_total{method="POST",route="/v1/generations",status="400"}' in text


def test_logs_are_json_without_prompts(capsys):
    import logging

    from hallmark.logs import JsonFormatter

    record = logging.LogRecord("hallmark.jobs", logging.INFO, __file__, 1, "job finished", (), None)
    record.job, record.prompt, record.api_key = "j1", "secret prompt", "hk_x"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "job finished" and line["job"] == "j1"
    assert "prompt" not in line and "api_key" not in line
    assert json.loads(JsonFormatter(log_prompts=True).format(record))["prompt"] == "secret prompt"


@pytest.mark.slow
def test_an_input_image_is_checked_and_carried(service):
    from PIL import Image

    client, keys, store = service
    buffer = io.BytesIO()
    Image.fromarray(natural_frames(1, (128, 128))[0]).save(buffer, format="PNG")
    body = {
        "prompt": "steam rising from a cup",
        "user": "u-image",
        **SMALL,
        "image": base64.b64encode(buffer.getvalue()).decode(),
    }
    r = client.post("/v1/generations", json=body, headers=keys["free"])
    assert r.status_code == 202, r.text
    done = wait_for(client, r.json()["links"]["self"], keys["free"])
    assert done["state"] == "succeeded", done
    record = store.get(done["request_id"])
    assert store.content(record.seq).input_image_sha256


@pytest.mark.slow
def test_hallmark_serve_loads_at_start_up_and_generates_over_real_http(tmp_path, hallmark_server):
    import httpx

    store = open_store(Settings(data_dir=tmp_path))
    _, key = create_key(store, "generator", "acme", tenant="acme")
    base = hallmark_server(tmp_path)
    deadline = time.monotonic() + 180
    while (ready := httpx.get(f"{base}/readyz")).status_code != 200 and time.monotonic() < deadline:
        assert ready.json()["generation"] == "loading", ready.text
        time.sleep(0.5)
    assert ready.json() == {"ready": True, "database": "ok", "generation": "ready"}
    headers = {"Authorization": f"Bearer {key}"}
    job = httpx.post(
        f"{base}/v1/generations", json={"prompt": "a lighthouse at dusk", **SMALL}, headers=headers
    )
    assert job.status_code == 202, job.text
    while (state := httpx.get(job.json()["links"]["self"], headers=headers).json())["state"] not in (
        "succeeded",
        "failed",
    ) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert state["state"] == "succeeded", state
    assert httpx.get(state["links"]["video"], headers=headers).headers["content-type"] == "video/mp4"
    store.dispose()


@pytest.mark.slow
def test_a_taken_over_run_loses_its_lease_and_a_recorded_job_is_not_run_again(service, pipeline, tmp_path):
    """Two runs of one job: only the one holding the lease may report or record. And a job whose
    record exists (its worker died after recording) is finished from that record, not rerun."""
    _, _, store = service
    jobs = JobStore(store)
    options = JobSettings(artifacts=tmp_path, lease=dt.timedelta(seconds=1))
    job = queued_job(jobs, "u-twice", "a lighthouse in fog", seed=2)
    first = jobs.claim(job.id, options.lease, 3)
    time.sleep(1.2)
    second = jobs.claim(job.id, options.lease, 3)
    assert second is not None and second.job.attempts == first.job.attempts + 1
    assert not jobs.heartbeat(job.id, first.job.attempts, 0.5, "generate").held, "the first run lost it"
    assert jobs.heartbeat(job.id, second.job.attempts, 0.5, "generate").held

    from jobs.runner import to_request

    result = pipeline(
        to_request(second.job, second.inputs, tmp_path, pipeline.policy)
    )  # records, then "dies"
    assert result.released and jobs.get(job.id).state == "running"
    time.sleep(1.2)
    assert run_job(pipeline, jobs, job.id, options) == "succeeded"
    final = jobs.get(job.id)
    assert final.output_path == str(result.output) and jobs.inputs(job.id) is None
    from provenance import sha256_file

    assert sha256_file(result.output) == result.output_sha256, "finished from its record, not generated again"
    assert store.get(final.generation_id).output_sha256 == result.output_sha256
