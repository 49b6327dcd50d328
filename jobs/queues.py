"""The job queues: they carry job ids to whatever runs `jobs.runner.run_job`.

- `InProcessQueue`, the embedded default: a worker thread of the serving process.
- `CeleryQueue`, the scale path: Celery on Redis (`hallmark worker` runs the workers).

Nothing is lost when a Celery worker dies: tasks are acknowledged only after they ran
(acks_late), so Redis hands an unacknowledged task to another worker after the visibility
timeout; the job's lease in the database decides who runs it, and the API's sweep requeues any
job whose lease lapsed. Each worker process runs one job at a time (`--pool solo`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from celery import Celery

log = logging.getLogger("hallmark.jobs")

TASK = "hallmark.run_job"
QUEUE = "hallmark-generations"


class InProcessQueue:
    """The embedded default: jobs run one at a time on a worker thread of the serving process (a
    diffusers pipeline is not safe to call from two threads at once, and a GPU runs one generation
    at a time). A job id already waiting is not queued twice."""

    def __init__(self, run: Callable[[str], object]) -> None:
        self._run = run
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hallmark-job")
        self._waiting: set[str] = set()
        self._lock = threading.Lock()

    def submit(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._waiting:
                return
            self._waiting.add(job_id)
        self._pool.submit(self._safe_run, job_id)

    def _safe_run(self, job_id: str) -> None:
        with self._lock:
            self._waiting.discard(job_id)
        try:
            self._run(job_id)
        except Exception:  # the job stays running with a lapsing lease: the sweep picks it up
            log.exception("job failed to run", extra={"job": job_id})

    def shutdown(self) -> None:
        """Finish the running job; queued ones stay queued in the database for the next start."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def celery_app(broker_url: str, visibility_timeout_s: int) -> Celery:
    app = Celery("hallmark", broker=broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_transport_options={"visibility_timeout": visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


class CeleryQueue:
    """Submits job ids to the Celery workers."""

    def __init__(self, broker_url: str, visibility_timeout_s: int) -> None:
        self.app = celery_app(broker_url, visibility_timeout_s)

    def submit(self, job_id: str) -> None:
        self.app.send_task(TASK, args=[job_id], queue=QUEUE)

    def ping(self) -> bool:
        """Whether the broker answers (readiness)."""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            return True
        except Exception:  # any broker failure means not ready
            return False
