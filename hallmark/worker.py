"""`hallmark worker`: a Celery worker on Redis that runs generation jobs (HALLMARK_JOBS=celery).
The task is `jobs.runner.run_job`, the same code the in-process queue runs; jobs/queues.py says
how a dead worker's job is handed over."""

from __future__ import annotations

from hallmark.compose import build_pipeline, job_settings
from hallmark.settings import Settings
from jobs.queues import QUEUE, TASK, celery_app
from jobs.runner import run_job
from jobs.store import JobStore


def run_worker(settings: Settings) -> None:
    """Load the pipeline once and run jobs one at a time per process (`--pool solo`: a diffusers
    pipeline is not safe to share between threads, and a GPU runs one generation at a time)."""
    pipeline = build_pipeline(settings)
    jobs = JobStore(pipeline.audit)
    options = job_settings(settings)
    app = celery_app(settings.broker_url, settings.job_visibility_timeout_s)

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
