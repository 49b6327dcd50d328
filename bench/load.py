"""Load on the generation API: N concurrent clients for a fixed time against a real `hallmark serve`.

    python bench/load.py [--clients 8] [--seconds 30] [--blocked-share 0.25] [--port 0]
                         [--jobs inprocess|celery] [--broker-url redis://...] [--database-url URL]
                         [--ready-timeout 600] [--drain-timeout 600] [--keep]

A fresh data directory (a temporary folder; kept with --keep) gets a generator key of tier "pro"
(5 concurrent jobs per user, 2,000 a month), made with `hallmark keys create`; then `hallmark serve`
runs on loopback with the tiny built-in model (HF_HUB_OFFLINE=1, HALLMARK_TORCH_THREADS=1) and, with
--jobs celery, a `hallmark worker` beside it on --broker-url. The clock starts once /readyz says
ready (the generation pipeline loads in the background at start-up). Each client is a thread with
its own httpx.Client and its own `user`, so the per-user limit applies per client; it POSTs
/v1/generations back to back (128p, square, 1 s: 8 frames; a fresh Idempotency-Key each), a
--blocked-share of them with a prompt the default policy blocks, the rest with varied benign
prompts, and backs off 0.5 s after a 429. When the time is up, requests in flight finish; then the
script waits until every accepted job has reached a final state.

It prints throughput, the latency of the synchronous gate (the POST's response time) for accepted
(202) and refused (400) requests, time to drain and the job states, and a reconciliation that must
match exactly: requests = 202 + 400 + 422 + 429 + other; new job rows == 202s (and the same ids);
new audit records == 202s + 400s (+ 422s that carry a request_id: refusals the gate recorded with
an error status; none are expected). It exits 1 on a mismatch. Run it alone: other work slows it.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
BLOCKED_PROMPTS = [
    "explicit porn video",
    "a pornographic scene in a hotel room",
    "xxx porn clip of two adults",
    "hentai nsfw animation",
]
SUBJECTS = [
    "a paper boat",
    "a red kite",
    "an old lighthouse",
    "a tabby cat",
    "a steam train",
    "a hot air balloon",
    "a field of sunflowers",
    "a wooden sailboat",
    "a snowy mountain cabin",
    "a golden retriever",
]
ACTIONS = [
    "drifting on a pond",
    "at sunset",
    "in the morning fog",
    "under a starry sky",
    "in light rain",
    "seen from above",
    "in slow motion",
    "on a windy day",
    "beside a quiet river",
    "in autumn colours",
]
BACKOFF_S = 0.5


@dataclass
class Tally:
    """What one client saw; merged at the end."""

    sent: int = 0  # POSTs started, counted apart from their answers
    statuses: Counter = field(default_factory=Counter)
    latency: dict[int, list[float]] = field(default_factory=dict)  # status -> seconds
    accepted: list[str] = field(default_factory=list)  # job ids of 202s
    recorded_422: int = 0  # 422s with a request_id: a gate refusal recorded with status "error"
    quota: Counter = field(default_factory=Counter)  # 429 kind -> n
    errors: list[str] = field(default_factory=list)  # 5xx, transport errors, unexpected answers

    def merge(self, other: Tally) -> None:
        self.sent += other.sent
        self.statuses.update(other.statuses)
        for status, values in other.latency.items():
            self.latency.setdefault(status, []).extend(values)
        self.accepted.extend(other.accepted)
        self.recorded_422 += other.recorded_422
        self.quota.update(other.quota)
        self.errors.extend(other.errors)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _tail(path: Path, lines: int = 40) -> str:
    """The server log's last lines, leaving out the access log."""
    try:
        kept = [
            line for line in path.read_text(errors="replace").splitlines() if '"uvicorn.access"' not in line
        ]
    except OSError:
        return "(no log)"
    return "\n".join(kept[-lines:]) or "(nothing but the access log)"


def _client(index: int, base: str, key: str, deadline: float, blocked_share: float, seed: int) -> Tally:
    rng = random.Random(seed * 1000 + index)
    tally = Tally()
    user = f"load-client-{index:02d}"
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60.0) as client:
        while time.monotonic() < deadline:
            blocked = rng.random() < blocked_share
            prompt = (
                rng.choice(BLOCKED_PROMPTS)
                if blocked
                else f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)}, {rng.randrange(1000)}"
            )
            body = {
                "prompt": prompt,
                "height": 128,
                "aspect_ratio": "square",
                "duration_s": 1,
                "seed": rng.randrange(2**32),
                "user": user,
            }
            tally.sent += 1
            began = time.perf_counter()
            try:
                response = client.post(
                    "/v1/generations", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
                )
            except httpx.HTTPError as exc:
                tally.statuses["transport error"] += 1
                tally.errors.append(f"client {index}: {type(exc).__name__}: {exc}")
                time.sleep(BACKOFF_S)
                continue
            elapsed = time.perf_counter() - began
            status = response.status_code
            tally.statuses[status] += 1
            tally.latency.setdefault(status, []).append(elapsed)
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            if status == 202:
                tally.accepted.append(answer.get("id", "?"))
            elif status == 400:
                if not blocked:
                    tally.errors.append(f"client {index}: benign prompt refused: {prompt!r}: {answer}")
            elif status == 429:
                tally.quota[answer.get("kind", "?")] += 1
                time.sleep(BACKOFF_S)
            elif status == 422:
                if isinstance(answer, dict) and answer.get("request_id"):
                    tally.recorded_422 += 1
                tally.errors.append(f"client {index}: 422 {response.text[:300]}")
            else:
                tally.errors.append(f"client {index}: {status} {response.text[:300]}")
                if status >= 500:
                    time.sleep(BACKOFF_S)
            if status == 202 and blocked:
                tally.errors.append(f"client {index}: blocked prompt accepted: {prompt!r}")
    return tally


def _totals(store) -> tuple[int, int]:
    """(job rows, audit records) in the database."""
    from sqlalchemy import text

    from jobs.store import JobStore

    with store.engine.connect() as conn:
        records = conn.execute(text("select count(*) from generation_records")).scalar_one()
    return sum(JobStore(store).counts().values()), records


def _records_by_status(store) -> dict[str, int]:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return dict(
            conn.execute(text("select status, count(*) from generation_records group by status")).all()
        )


def _jobs(store, tenant: str) -> dict[str, str]:
    """This run's jobs (its tenant's): id -> state."""
    from sqlalchemy import text

    with store.engine.connect() as conn:
        rows = conn.execute(text("select id, state from generation_jobs where tenant = :t"), {"t": tenant})
        return dict(rows.all())


def _states(jobs: dict[str, str]) -> dict[str, int]:
    from jobs.store import STATES

    found = Counter(jobs.values())
    return {state: found[state] for state in STATES} | dict(found)


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--blocked-share", type=float, default=0.25)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--jobs", choices=("inprocess", "celery"), default="inprocess")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/0", help="with --jobs celery")
    parser.add_argument(
        "--database-url", default=None, help="e.g. PostgreSQL; default SQLite in the data dir"
    )
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for /readyz")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the data directory (and the server log)")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0 or not 0 <= args.blocked_share <= 1:
        parser.error("--clients >= 1, --seconds > 0 and --blocked-share in [0, 1]")

    print(
        f"cores {os.cpu_count()}, clients {args.clients}, seconds {args.seconds:g}, "
        f"blocked share {args.blocked_share:g}, jobs {args.jobs}"
        + (f", database {args.database_url.split('@')[-1]}" if args.database_url else ", database sqlite")
    )
    tmp = tempfile.mkdtemp(prefix="hallmark-load-") if args.keep else None
    holder = None if args.keep else tempfile.TemporaryDirectory(prefix="hallmark-load-")
    data_dir = Path(tmp or holder.name)
    try:
        return _run(args, data_dir)
    finally:
        if holder is not None:
            holder.cleanup()
        else:
            print(f"data directory kept: {data_dir}")


def _run(args: argparse.Namespace, data_dir: Path) -> int:
    from hallmark.compose import open_store
    from hallmark.settings import Settings

    env = {
        k: v for k, v in os.environ.items() if not k.startswith("HALLMARK_") or k == "HALLMARK_SHARED_DATA"
    }
    env |= {
        "HALLMARK_DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "HALLMARK_TORCH_THREADS": "1",
        "HALLMARK_JOBS": args.jobs,
    }
    if args.jobs == "celery":
        env["HALLMARK_BROKER_URL"] = args.broker_url
    if args.database_url:
        env["HALLMARK_DATABASE_URL"] = args.database_url
    cli = [sys.executable, "-m", "hallmark.cli"]
    tenant = f"load-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(
        [
            *cli,
            "keys",
            "create",
            "--role",
            "generator",
            "--name",
            "bench-load",
            "--tenant",
            tenant,
            "--tier",
            "pro",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if made.returncode != 0 or not made.stdout.strip():
        print(f"`hallmark keys create` failed ({made.returncode}):\n{made.stdout}\n{made.stderr}")
        return 2
    key = made.stdout.strip().splitlines()[-1].strip()

    store = open_store(Settings(data_dir=data_dir, database_url=args.database_url))
    jobs_before, records_before = _totals(store)

    port = args.port or _free_port()
    base = f"http://127.0.0.1:{port}"
    server_log, worker_log = data_dir / "serve.log", data_dir / "worker.log"
    server = worker = None
    logs = []
    try:
        logs.append(server_log.open("w"))
        server = subprocess.Popen(
            [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=logs[-1],
            stderr=subprocess.STDOUT,
        )
        if args.jobs == "celery":
            logs.append(worker_log.open("w"))
            worker = subprocess.Popen(
                [*cli, "worker"], env=env, cwd=ROOT, stdout=logs[-1], stderr=subprocess.STDOUT
            )
        began = time.monotonic()
        last_print, state = began, "not answering"
        while True:
            if server.poll() is not None:
                print(
                    f"hallmark serve exited ({server.returncode}) before it was ready:\n{_tail(server_log)}"
                )
                return 2
            try:
                answer = httpx.get(f"{base}/readyz", timeout=5)
                state = answer.text
                if answer.status_code == 200 and answer.json().get("ready"):
                    break
            except httpx.HTTPError as exc:
                state = f"not answering ({type(exc).__name__})"
            now = time.monotonic()
            if "Exception in thread hallmark-warm-up" in server_log.read_text(errors="replace"):
                print(f"the server's warm-up failed; /readyz says {state}\n{_tail(server_log)}")
                return 2
            if now - began > args.ready_timeout:
                print(f"not ready after {args.ready_timeout:g} s: {state}\n{_tail(server_log)}")
                return 2
            if now - last_print >= 10:
                print(f"  waiting for /readyz ({now - began:.0f} s): {state}", flush=True)
                last_print = now
            time.sleep(0.5)
        print(f"ready after {time.monotonic() - began:.1f} s: {state}", flush=True)

        results: list[Tally | None] = [None] * args.clients
        start = time.monotonic()
        deadline = start + args.seconds

        def run_client(i: int) -> None:
            results[i] = _client(i, base, key, deadline, args.blocked_share, args.seed)

        threads = [
            threading.Thread(target=run_client, args=(i,), name=f"load-{i}") for i in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        load_s = time.monotonic() - start
        tally = Tally()
        for i, result in enumerate(results):
            if result is None:
                tally.errors.append(f"client {i} crashed (see the traceback above)")
                tally.statuses["client crash"] += 1
            else:
                tally.merge(result)

        # Drain: every accepted job to a final state.
        drain_start = time.monotonic()
        last_print, drained = drain_start, False
        while True:
            states = _states(_jobs(store, tenant))
            active = states["queued"] + states["running"]
            now = time.monotonic()
            if active == 0:
                drained = True
                break
            if server.poll() is not None:
                print(f"hallmark serve exited ({server.returncode}) while draining")
                break
            if now - drain_start > args.drain_timeout:
                print(f"drain timed out after {args.drain_timeout:g} s")
                break
            if now - last_print >= 5:
                print(
                    f"  draining ({now - drain_start:.0f} s): {', '.join(f'{k} {n}' for k, n in states.items())}",
                    flush=True,
                )
                last_print = now
            time.sleep(0.5)
        drain_s = time.monotonic() - drain_start
        # A job's outcome record is written before its final state, but give a slow commit a moment.
        time.sleep(0.5)
        server_alive = server.poll() is None
    finally:
        _stop(worker)
        _stop(server)
        for log in logs:
            log.close()

    jobs_total, records_total = _totals(store)
    by_status, jobs = _records_by_status(store), _jobs(store, tenant)
    store.engine.dispose()
    return _report(
        args,
        tally,
        load_s,
        drain_s,
        drained,
        server_alive,
        jobs_total - jobs_before,
        records_total - records_before,
        by_status,
        jobs,
        server_log,
    )


def _report(
    args,
    tally: Tally,
    load_s: float,
    drain_s: float,
    drained: bool,
    server_alive: bool,
    jobs_new: int,
    records_new: int,
    by_status: dict,
    jobs: dict[str, str],
    server_log: Path,
) -> int:
    job_states = _states(jobs)
    s = tally.statuses
    sent = tally.sent
    ok, refused, invalid, quota = s[202], s[400], s[422], s[429]
    other = sum(s.values()) - ok - refused - invalid - quota  # 200 (a replay), 401, 5xx, transport errors
    print()
    print(f"load {load_s:.1f} s (the last requests finish after the {args.seconds:g} s mark)")
    print()
    print("| requests | answered/s | 202 | 400 | 422 | 429 (concurrent/month) | other | accepted jobs/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    answered = sent - s["transport error"] - s["client crash"]
    print(
        f"| {sent} | {answered / load_s:.2f} | {ok} | {refused} | {invalid} | {quota} "
        f"({tally.quota['concurrent']}/{tally.quota['month']}) | {other} | {ok / load_s:.2f} |"
    )
    print()
    print("Gate latency (POST response time), ms:")
    print()
    print("| answer | n | p50 | p95 | max | mean |")
    print("|---|---:|---:|---:|---:|---:|")
    for status, label in ((202, "202 accepted"), (400, "400 refused"), (429, "429 over quota")):
        values = tally.latency.get(status, [])
        if values:
            print(
                f"| {label} | {len(values)} | {_ms(_pct(values, 50))} | {_ms(_pct(values, 95))} | "
                f"{_ms(max(values))} | {_ms(statistics.fmean(values))} |"
            )
        else:
            print(f"| {label} | 0 | - | - | - | - |")
    print()
    print(f"drain: {'all jobs final' if drained else 'NOT DRAINED'} {drain_s:.1f} s after the load stopped")
    print("job states: " + ", ".join(f"{state} {n}" for state, n in job_states.items()))
    print("audit records by status: " + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())))
    if other:
        print(
            "other answers: " + ", ".join(f"{k} {v}" for k, v in s.items() if k not in (202, 400, 422, 429))
        )
    if tally.errors:
        print(f"unexpected answers ({len(tally.errors)}; first 10):")
        for line in tally.errors[:10]:
            print(f"  {line}")
    five_xx = sum(n for k, n in s.items() if isinstance(k, int) and k >= 500)
    if five_xx:
        print(f"SERVER ERRORS: {five_xx} answers were 5xx; the server log's tail:\n{_tail(server_log)}")

    accepted = set(tally.accepted)
    expected_records = ok + refused + tally.recorded_422
    ids = set(jobs)
    final = sum(job_states[k] for k in ("succeeded", "failed", "cancelled"))
    records_label = "audit records (new) = 202s + 400s" + (" + recorded 422s" if tally.recorded_422 else "")
    checks = [  # (what, expected, got)
        ("requests sent = 202 + 400 + 422 + 429 + other", sent, ok + refused + invalid + quota + other),
        ("job rows (new) = 202s", ok, jobs_new),
        ("distinct job ids in 202s = 202s", ok, len(accepted)),
        (
            "this run's jobs in the database, same ids as the 202s",
            len(accepted),
            len(ids)
            if ids == accepted
            else f"{len(ids)} ({len(ids - accepted)} unknown, {len(accepted - ids)} missing)",
        ),
        ("jobs in a final state = 202s", ok, final),
        (records_label, expected_records, records_new),
    ]
    print()
    print("| reconciliation | expected | got | |")
    print("|---|---:|---:|---|")
    mismatch = False
    for label, expected, got in checks:
        good = expected == got
        mismatch |= not good
        print(f"| {label} | {expected} | {got} | {'ok' if good else 'MISMATCH'} |")
    if not server_alive:
        print("the server was not running at the end of the drain")
    print()
    if mismatch:
        print("=" * 20 + " RECONCILIATION: MISMATCH " + "=" * 20)
        return 1
    print("=" * 20 + " RECONCILIATION: MATCH " + "=" * 20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
