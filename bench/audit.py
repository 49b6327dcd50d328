"""Audit store at scale: ingest rate with hash chaining, and review-query latency at 1M records.

    python bench/audit.py [--records 1000000] [--backends sqlite,postgres] [--batch 5000] [--keep]

Each backend gets a fresh store (SQLite in a temporary folder, under --dir if given; PostgreSQL in
a new database hallmark_bench_<hex> on --pg), removed at the end unless --keep. It is filled with
seeded synthetic records through RecordDraft and AuditStore.record_many, --batch per transaction.
The store stamps rows with the time of writing; this script swaps that clock (audit.store._now)
for one that spreads the rows evenly over the last --days days, so that time ranges and per-day
statistics see a realistic share of the data. Then it times reviewer decisions (2% of the blocked
records, at most 2,000), single-record ingest (the pipeline's path; concurrent calls share
transactions by group commit) from 1, 4 and 16 writer threads, verify_chain, and each review
query --reps times with parameters drawn from the data. PostgreSQL is ANALYZEd first, as autovacuum would; SQLite is not (Hallmark never runs
ANALYZE). Run it alone: other work on the machine slows it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import os
import platform
import random
import secrets
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import audit.store  # noqa: E402
from audit import AuditStore, RecordDraft  # noqa: E402
from audit.queries import RecordFilter, list_records, review_queue, stats  # noqa: E402
from audit.store import DECISIONS  # noqa: E402

TENANTS = [f"tenant-{i:02d}" for i in range(20)]
USERS = 2000
CATEGORIES = ("sexual", "violence", "hate", "self_harm", "sexual_minors", "harassment")
CATEGORY_WEIGHTS = (35, 25, 12, 10, 3, 15)
CLASSIFIERS = {"prompt": ("blocklist", "minilm-semantic"), "frames": ("clip-concepts", "nudenet")}
POLICY_VERSIONS = ("2026.1", "2026.2", "2026.3")  # in use one after another, overlapping a little
MODELS = (("wan2.1-t2v-1.3b", "2.1.0"), ("hallmark-tiny", "0.3.1"))
FLAG, BLOCK = 0.5, 0.8
WORDS = """a the of and with in on at cat dog woman man child city forest beach river mountain car
street night sunset rain snow portrait video slow motion cinematic drone shot close up wide angle
running dancing walking flying swimming fighting crying laughing smiling sleeping cooking painting
red blue green golden dark bright neon vintage futuristic realistic anime watercolor sketch 4k hdr
old young tall small giant tiny robot dragon horse bird ocean desert castle village kitchen office
train bridge tower garden festival crowd concert wedding party market harbor storm fire smoke
explosion blood weapon gun knife sword battle war soldier police riot protest nude naked lingerie
bikini kiss romantic sensual violent gore horror zombie monster ghost skull hate flag symbol
insult bully drug pill alcohol suicide wound scar hospital doctor nurse teacher student school
astronaut spaceship planet galaxy moon star volcano glacier waterfall canyon jungle savanna tiger
elephant whale octopus butterfly""".split()


class Clock:
    """Stands in for audit.store._now: each call is a fixed step later, starting `days` ago."""

    def __init__(self, days: int, rows: int) -> None:
        self.start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=days)
        self.t, self.step, self.lock = self.start, dt.timedelta(days=days) / rows, threading.Lock()

    def __call__(self) -> dt.datetime:
        with self.lock:
            self.t += self.step
            return self.t


class Synth:
    """Seeded synthetic drafts: the same sequence on every backend. Keeps samples for the queries."""

    def __init__(self, seed: int, total: int) -> None:
        self.rng, self.seed, self.total = random.Random(seed), seed, total
        tenant_cw = list(itertools.accumulate(1 / (k + 1) ** 1.2 for k in range(len(TENANTS))))
        self.user_tenant = self.rng.choices(TENANTS, cum_weights=tenant_cw, k=USERS)
        self.user_cw = list(itertools.accumulate(1 / (k + 1) ** 0.7 for k in range(USERS)))
        self.word_cw = list(itertools.accumulate(1 / (k + 1) for k in range(len(WORDS))))
        self.samples: list[RecordDraft] = []  # about 1,000 released records, for lookups
        self.to_review: list[str] = []  # 2% of the blocked ones, for reviewer decisions

    def draft(self, i: int) -> RecordDraft:
        rng = self.rng
        user = rng.choices(range(USERS), cum_weights=self.user_cw)[0]
        phase = min(2, max(0, int(3 * i / self.total + rng.uniform(-0.05, 0.05))))
        model_id, model_version = MODELS[rng.random() < 0.35]
        r = rng.random()
        outcome = "block" if r < 0.08 else "flag" if r < 0.12 else "allow"
        at_prompt = outcome == "block" and rng.random() < 0.6  # blocked before any frame exists
        verdicts = []
        for stage, names in CLASSIFIERS.items():
            if stage == "frames":
                if at_prompt:
                    break
                names = rng.sample(names, rng.randint(1, 2))
            for name in names:
                category = "sexual" if name == "nudenet" else rng.choices(CATEGORIES, CATEGORY_WEIGHTS)[0]
                verdicts.append(
                    {
                        "stage": stage,
                        "classifier": name,
                        "classifier_version": "1.0",
                        "category": category,
                        "score": round(rng.random() ** 3 * FLAG, 4),
                        "threshold": BLOCK,
                        "action": "allow",
                        "calibrated": name != "blocklist",
                        "detail": "",
                    }
                )
        gid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        prompt = " ".join(rng.choices(WORDS, cum_weights=self.word_cw, k=rng.randint(6, 14)))
        draft = RecordDraft(
            generation_id=gid,
            prompt=prompt,
            policy_name="default",
            policy_version=POLICY_VERSIONS[phase],
            model_id=model_id,
            model_version=model_version,
            verdicts=verdicts,
            flagged=outcome == "flag",
            status="blocked" if outcome == "block" else "released",
            tenant=self.user_tenant[user],
            user=f"user-{user:04d}",
        )
        if outcome != "allow":
            hit = rng.choice(
                [v for v in verdicts if outcome == "flag" or (v["stage"] == "prompt") == at_prompt]
            )
            low, high = (BLOCK, 1.0) if outcome == "block" else (FLAG, BLOCK)
            hit.update(score=round(rng.uniform(low, high), 4), action=outcome)
            draft.reason = f"{hit['classifier']}: {hit['category']} {hit['score']:.2f}"
        if outcome == "block":
            draft.blocked_stage = hit["stage"]
            if rng.random() < 0.02:
                self.to_review.append(gid)
            return draft
        draft.output_sha256 = hashlib.sha256(f"{self.seed}:{i}".encode()).hexdigest()
        draft.output_path = f"outputs/{gid}.mp4"
        draft.watermark_payload = f"{i * 0x9E3779B97F4B % (1 << 48):012x}"  # odd multiplier: unique per i
        draft.watermark_method, draft.watermark_key_id = "tilemark", 1
        draft.manifest_label = f"urn:c2pa:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        if i % max(1, self.total // 1000) == 0:
            self.samples.append(draft)
        return draft


def open_backend(name: str, args) -> tuple[str, str, Callable[[], None]]:
    """(url, description, cleanup) of a fresh, empty database."""
    if name == "sqlite":
        folder = tempfile.mkdtemp(prefix="hallmark_bench_", dir=args.dir)
        url = f"sqlite:///{folder}/audit.db"
        return url, f"SQLite {sqlite3.sqlite_version}, {folder}/audit.db", partial(shutil.rmtree, folder)
    admin = create_engine(f"{args.pg}/postgres", isolation_level="AUTOCOMMIT")
    db = f"hallmark_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {db}")
        version = conn.exec_driver_sql("SHOW server_version").scalar()

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.dispose()

    return f"{args.pg}/{db}", f"PostgreSQL {version}, database {db}", drop


def log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def fill(store: AuditStore, synth: Synth, n: int, batch: int, label: str) -> float:
    """Records/s of record_many alone (making the drafts is not counted)."""
    spent, done, start = 0.0, 0, time.perf_counter()
    while done < n:
        drafts = [synth.draft(i) for i in range(done, min(n, done + batch))]
        t = time.perf_counter()
        store.record_many(drafts)
        spent += time.perf_counter() - t
        done += len(drafts)
        if done // 50_000 > (done - len(drafts)) // 50_000 or done == n:
            elapsed = time.perf_counter() - start
            log(f"{label}: {done:,}/{n:,} records, {done / spent:,.0f}/s so far, {elapsed:.0f} s")
    return n / spent


def one_by_one(
    store: AuditStore, synth: Synth, rng: random.Random, first: int, n: int
) -> list[tuple[str, float]]:
    """Per-second rates of writes that take one transaction each: decisions, then single records."""
    to_review = synth.to_review[:2000]
    t = time.perf_counter()
    for gid in to_review:
        decision = rng.choices(DECISIONS, (70, 20, 10))[0]
        store.decide(gid, decision, "benchmark review", "bench-reviewer", "bk_bench")
    rates = [(f"decide ({len(to_review):,} decisions)", len(to_review) / (time.perf_counter() - t))]
    for threads in (1, 4, 16):
        drafts, first = [synth.draft(i) for i in range(first, first + n)], first + n
        t = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(store.record, drafts))
        writers = f"{threads} writer thread{'s' if threads > 1 else ''}"
        rates.append((f"record, {writers} ({n:,} records)", n / (time.perf_counter() - t)))
    return rates


def query_plan(store: AuditStore, synth: Synth, clock: Clock, days: int) -> list[tuple[str, bool, Callable]]:
    """(name, has the 50 ms target, make(rng) -> the call to time)."""

    def lst(sort="time", **where):
        return partial(list_records, store, RecordFilter(**where), sort)

    def day(rng, **where):
        since = clock.start + dt.timedelta(days=rng.randrange(days))
        return RecordFilter(since=since, until=since + dt.timedelta(days=1), **where)

    def page2(rng):
        f = RecordFilter(tenant=rng.choice(TENANTS))
        return partial(list_records, store, f, "score", cursor=list_records(store, f, "score").next_cursor)

    s = synth.samples
    return [
        ("newest 50, no filter", True, lambda r: lst()),
        ("tenant", True, lambda r: lst(tenant=r.choice(TENANTS))),
        ("status=blocked", True, lambda r: lst(status="blocked")),
        (
            "category + min_score",
            True,
            lambda r: lst(category=r.choice(CATEGORIES), min_score=round(r.uniform(0.5, 0.95), 2)),
        ),
        ("classifier", True, lambda r: lst(classifier=r.choice(sum(CLASSIFIERS.values(), ())))),
        ("time range, one day", True, lambda r: partial(list_records, store, day(r))),
        ("policy_version", True, lambda r: lst(policy_version=r.choice(POLICY_VERSIONS))),
        ("status=blocked, reviewed=false", True, lambda r: lst(status="blocked", reviewed=False)),
        ("latest decision", True, lambda r: lst(decision=r.choice(DECISIONS))),
        ("text search q (vocabulary word)", True, lambda r: lst(q=r.choice(WORDS[8:]))),
        ("sort by score", True, lambda r: lst("score", status=r.choice((None, "blocked", "released")))),
        ("tenant, by score, page 2 (cursor)", True, page2),
        ("review queue", True, lambda r: partial(review_queue, store)),
        ("review queue, tenant", True, lambda r: partial(review_queue, store, tenant=r.choice(TENANTS))),
        ("find_by_sha256", True, lambda r: partial(store.find_by_sha256, r.choice(s).output_sha256)),
        ("find_by_payload", True, lambda r: partial(store.find_by_payload, r.choice(s).watermark_payload)),
        ("find_by_manifest", True, lambda r: partial(store.find_by_manifest, r.choice(s).manifest_label)),
        ("get (generation id)", True, lambda r: partial(store.get, r.choice(s).generation_id)),
        (
            "stats, one tenant, one day",
            False,
            lambda r: partial(stats, store, day(r, tenant=r.choice(TENANTS))),
        ),
    ]


def time_query(make: Callable, rng: random.Random, reps: int, budget: float) -> tuple[int, float, float]:
    """(runs, p50 ms, p95 ms): a warm-up run, then `reps` runs, fewer once `budget` seconds are spent."""
    times, spent = [], 0.0
    for i in range(reps + 1):
        call = make(rng)
        t = time.perf_counter()
        call()
        took = time.perf_counter() - t
        spent += took
        if i > 0 or took > budget:  # the warm-up counts only when it alone is over budget
            times.append(took * 1000)
        if spent > budget:
            break
    if len(times) == 1:
        return 1, times[0], times[0]
    cuts = statistics.quantiles(times, n=20, method="inclusive")
    return len(times), cuts[9], cuts[18]


def run_backend(name: str, args) -> None:
    url, description, cleanup = open_backend(name, args)
    clock = Clock(args.days, args.records)
    assert callable(getattr(audit.store, "_now", None)), "audit.store._now is gone: update Clock"
    audit.store._now = clock  # see the module docstring
    store = AuditStore(url)
    try:
        synth, rng = Synth(args.seed, args.records), random.Random(args.seed + 1)
        start = time.perf_counter()
        batch_rate = fill(store, synth, args.records, args.batch, name)
        fill_s = time.perf_counter() - start
        log(f"{name}: decisions, single records, verify_chain")
        batch = f"record_many, {args.batch:,} records per transaction (making drafts not counted)"
        ingest = [(batch, batch_rate), *one_by_one(store, synth, rng, args.records, args.single)]
        t = time.perf_counter()
        report = store.verify_chain()
        verify_s = time.perf_counter() - t
        with store.engine.begin() as conn:
            if name == "postgres":
                conn.execute(text("ANALYZE"))
                size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
            else:
                size = sum(p.stat().st_size for p in Path(url.removeprefix("sqlite:///")).parent.iterdir())
        rows = []
        for query, has_target, make in query_plan(store, synth, clock, args.days):
            rows.append((query, has_target, *time_query(make, rng, args.reps, args.budget)))
            log(f"{name}: {query}: {rows[-1][2]} runs, p50 {rows[-1][3]:.1f} ms, p95 {rows[-1][4]:.1f} ms")
    finally:
        store.dispose()
        if not args.keep:
            cleanup()
    print(f"\n## {name}: {description}\n")
    print(f"{args.records:,} records filled in {fill_s:.0f} s; {size / 2**30:.2f} GiB on disk\n")
    print("| hash-chained writes, one transaction each unless said | per second |\n| --- | ---: |")
    for what, rate in ingest:
        print(f"| {what} | {rate:,.0f} |")
    verdict = "ok" if report.ok else f"NOT ok: seq {report.first_broken_seq}: {report.problem}"
    print(f"\nverify_chain: {verify_s:.1f} s for {report.rows_checked:,} rows, {verdict}\n")
    print("| query | runs | p50 ms | p95 ms | target | meets target |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for query, has_target, runs, p50, p95 in rows:
        target, meets = ("p95 < 50 ms", "yes" if p95 < 50 else "**no**") if has_target else ("none", "-")
        print(f"| {query} | {runs} | {p50:.1f} | {p95:.1f} | {target} | {meets} |", flush=True)
    if args.keep:
        print(f"\nkept: {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--batch", type=int, default=5000, help="records per record_many transaction")
    parser.add_argument("--single", type=int, default=2000, help="records for the one-per-transaction runs")
    parser.add_argument("--reps", type=int, default=50, help="runs of each query")
    parser.add_argument("--budget", type=float, default=60, help="seconds per query before fewer runs")
    parser.add_argument("--days", type=int, default=90, help="the records' timestamps span this many days")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="folder for the SQLite file (default: a temporary one)")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432", help="server URL")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    print(f"$ python {shlex.join(sys.argv)}")
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    print(
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, code at {commit or 'unknown'}"
    )
    start = time.perf_counter()
    for name in args.backends.split(","):
        run_backend(name.strip(), args)
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
