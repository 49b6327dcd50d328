"""Celery on Redis, the scale-out job queue: `hallmark worker` runs a worker, and the API sends
it job ids when HALLMARK_JOBS=celery. The task is `generator.jobs.run_job`, the same code the
in-process queue runs.

Nothing is lost when a worker dies: tasks are acknowledged only after they ran (acks_late),
so Redis hands an unacknowledged task to another worker after
HALLMARK_JOB_VISIBILITY_TIMEOUT_S; the job's lease in the database decides who runs it, and
the API's sweep requeues any job whose lease lapsed. Each worker process runs one job at a time
(`--pool solo`); run more processes for more at once.
"""

from __future__ import annotations

from celery import Celery

from hallmark.settings import Settings

TASK = "hallmark.run_job"
QUEUE = "hallmark-generations"


def celery_app(settings: Settings) -> Celery:
    app = Celery("hallmark", broker=settings.broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_transport_options={"visibility_timeout": settings.job_visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


class CeleryQueue:
    """Submits job ids to the Celery workers."""

    def __init__(self, settings: Settings) -> None:
        self.app = celery_app(settings)

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


def run_worker(settings: Settings) -> None:
    """Load the pipeline once and run jobs one at a time per process (`--pool solo`: a diffusers
    pipeline is not safe to share between threads, and a GPU runs one generation at a time)."""
    from audit.jobs import JobStore
    from generator.jobs import run_job
    from hallmark.compose import build_pipeline, job_settings

    pipeline = build_pipeline(settings)
    jobs = JobStore(pipeline.audit)
    options = job_settings(settings)
    app = celery_app(settings)

    @app.task(name=TASK)
    def run(job_id: str) -> None:
        run_job(pipeline, jobs, job_id, options)

    app.worker_main(
        [
            "worker",
            "--pool",
            "solo",
            "--queues",
            QUEUE,
            "--loglevel",
            settings.log_level,
            "--without-gossip",
            "--without-mingle",
        ]
    )
