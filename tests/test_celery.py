"""The scale path for real: the API queues jobs on Redis, `hallmark worker` (a Celery worker in
its own process) runs them, the audit store is PostgreSQL. A worker killed mid-job (SIGKILL)
loses nothing: the job is run again by the next worker and recorded once."""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from audit.keys import create_key
from hallmark.app import create_app
from hallmark.compose import open_store
from hallmark.settings import Settings
from jobs.store import JobStore

pytestmark = pytest.mark.slow  # a Celery worker process and full generations

REDIS = os.environ.get("HALLMARK_TEST_REDIS", "redis://127.0.0.1:6379")


@pytest.fixture
def redis_url():
    redis = pytest.importorskip("redis")
    url = f"{REDIS}/{random.randint(1, 15)}"
    try:
        client = redis.Redis.from_url(url)
        client.flushdb()
    except Exception as exc:  # no server
        pytest.skip(f"Redis not available at {REDIS}: {exc}")
    yield url
    client.flushdb()


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "hallmark.cli", "worker"], env=env, stdout=out, stderr=out)


def wait_for(client, url, headers, states, timeout, log: Path):
    deadline, body = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        body = client.get(url, headers=headers).json()
        if body["state"] in states:
            return body
        time.sleep(0.2)
    raise AssertionError(f"job never reached {states}: {body}\nworker log:\n{log.read_text()[-3000:]}")


def test_celery_worker_on_redis_and_postgres_survives_a_killed_worker(
    tmp_path, postgres_url, redis_url, pipeline
):
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=postgres_url,
        jobs="celery",
        broker_url=redis_url,
        job_lease_s=3,
        job_visibility_timeout_s=5,
        torch_threads=1,
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HF_HUB_OFFLINE": "1",
        "HALLMARK_DATA_DIR": str(settings.data_dir),
        "HALLMARK_DATABASE_URL": postgres_url,
        "HALLMARK_JOBS": "celery",
        "HALLMARK_BROKER_URL": redis_url,
        "HALLMARK_JOB_LEASE_S": "3",
        "HALLMARK_JOB_VISIBILITY_TIMEOUT_S": "5",
        "HALLMARK_TORCH_THREADS": "1",
    }
    store = open_store(settings)
    _, key = create_key(store, "generator", "acme", tenant="acme", tier="pro")
    headers = {"Authorization": f"Bearer {key}"}
    gate = copy.copy(pipeline)  # the API side only screens and records: its store is this test's
    gate.audit = store
    log = tmp_path / "worker.log"
    workers = [start_worker(env, log)]
    try:
        with TestClient(create_app(settings, pipeline=gate)) as client:
            assert client.get("/readyz").json()["database"] == "ok"
            first = client.post(
                "/v1/generations",
                json={
                    "prompt": "a paper boat on a pond",
                    "height": 128,
                    "aspect_ratio": "square",
                    "duration_s": 1,
                },
                headers=headers,
            )
            assert first.status_code == 202, first.text
            done = wait_for(client, first.json()["links"]["self"], headers, ("succeeded", "failed"), 180, log)
            assert done["state"] == "succeeded", done
            assert client.get("/readyz").json()["broker"] == "ok"
            assert store.get(done["request_id"]).status == "released"
            assert client.get(done["links"]["video"], headers=headers).status_code == 200

            slow = client.post(
                "/v1/generations",
                json={
                    "prompt": "a long sunrise over hills",
                    "height": 128,
                    "aspect_ratio": "square",
                    "duration_s": 5,
                },
                headers=headers,
            )
            job_url = slow.json()["links"]["self"]
            wait_for(client, job_url, headers, ("running",), 60, log)
            workers[0].kill()  # SIGKILL mid-job: no chance to clean up or acknowledge
            workers[0].wait(timeout=30)
            assert client.get(job_url, headers=headers).json()["state"] == "running"
            workers.append(start_worker(env, log))
            final = wait_for(client, job_url, headers, ("succeeded", "failed", "cancelled"), 240, log)
            assert final["state"] == "succeeded" and final["attempts"] == 2, final
            record = store.get(final["request_id"])
            assert record.status == "released" and record.tier == "pro"
            jobs = JobStore(store)
            assert jobs.counts()["succeeded"] == 2 and jobs.inputs(final["id"]) is None
            assert store.verify_chain().ok
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(timeout=30)
        store.dispose()
