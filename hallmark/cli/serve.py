"""`hallmark serve` (the HTTP API) and `hallmark worker` (a Celery worker)."""

from __future__ import annotations

from typing import Annotated

import typer

from hallmark.cli.common import load_settings


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Run the HTTP API: generations (generator keys; jobs run in this process unless
    HALLMARK_JOBS=celery), verification and soft-binding resolution (public), the review API and
    its page (reviewer keys). OpenAPI at /docs, Prometheus metrics at /metrics."""
    import uvicorn

    from hallmark.app import create_app
    from hallmark.logs import configure

    settings = load_settings()
    log_config = configure(settings.log_level, settings.log_prompts)
    uvicorn.run(create_app(settings, warm=True), host=host, port=port, log_config=log_config)


def worker() -> None:
    """Run a Celery worker for generation jobs (HALLMARK_BROKER_URL, default Redis on 127.0.0.1).
    It loads the pipeline once and runs the jobs the API queued with HALLMARK_JOBS=celery, one at
    a time: start one process per GPU."""
    from hallmark.logs import configure
    from hallmark.worker import run_worker

    settings = load_settings()
    configure(settings.log_level, settings.log_prompts)
    run_worker(settings)
