"""Prometheus metrics of the generation service (served at /metrics by the app).

Counters are per process. Queue depth and jobs per state are read from the database when
/metrics is scraped, so they are right whichever process (API or Celery worker) ran the jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REQUESTS = Counter(
    "hallmark_http_requests",
    "HTTP requests by route, method and status",
    ["route", "method", "status"],
    registry=None,
)
BLOCKS = Counter(
    "hallmark_blocks",
    "Requests refused by the policy, by stage and category",
    ["stage", "category"],
    registry=None,
)
JOBS_CREATED = Counter("hallmark_jobs_created", "Generation jobs queued, by tier", ["tier"], registry=None)
QUOTA_REFUSALS = Counter(
    "hallmark_quota_refusals", "Requests refused for quota, by kind", ["kind"], registry=None
)
JOB_SECONDS = Histogram(
    "hallmark_job_seconds",
    "Time to run a job in this process, by final state",
    ["state"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
    registry=None,
)


class JobStateCollector(Collector):
    """hallmark_jobs{state=...} and hallmark_queue_depth, read from the jobs table at scrape time."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self._counts()
        jobs = GaugeMetricFamily("hallmark_jobs", "Generation jobs by state", labels=["state"])
        for state, n in counts.items():
            jobs.add_metric([state], n)
        yield jobs
        yield GaugeMetricFamily(
            "hallmark_queue_depth", "Jobs queued and not yet started", value=counts.get("queued", 0)
        )


def registry(job_counts: Callable[[], dict[str, int]] | None) -> CollectorRegistry:
    """A registry for one app: this process's counters, and the job gauges of its database."""
    registry = CollectorRegistry()
    for collector in (REQUESTS, BLOCKS, JOBS_CREATED, QUOTA_REFUSALS, JOB_SECONDS):
        registry.register(collector)
    if job_counts is not None:
        registry.register(JobStateCollector(job_counts))
    return registry
