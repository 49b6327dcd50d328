"""The hash-chained audit store on SQLite and on PostgreSQL."""

import subprocess
import sys
import threading

import pytest
from sqlalchemy import create_engine, text

from audit import AuditStore, RecordDraft


def _draft(i: int, status: str = "released") -> RecordDraft:
    return RecordDraft(
        generation_id=f"gen-{i}", prompt=f"prompt {i}", policy_name="p", policy_version="sha256:1",
        model_id="m", model_version="1", status=status, output_sha256=f"{i:064x}",
        watermark_payload=f"{i:012x}",
        verdicts=[{"stage": "prompt", "classifier": "c", "classifier_version": "1", "category": "sexual",
                   "score": 0.1 * (i % 10), "threshold": 0.5, "action": "allow", "calibrated": True, "detail": ""}],
    )  # fmt: skip


def _tamper_and_detect(url: str) -> None:
    store = AuditStore(url)
    for i in range(5):
        store.record(_draft(i))
    assert store.verify_chain().ok and store.verify_chain().records_checked == 5
    assert store.find_by_payload(f"{3:012x}").generation_id == "gen-3"
    assert store.find_by_sha256(f"{2:064x}").generation_id == "gen-2"
    assert store.find_by_payload("f" * 12) is None
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE generation_records SET prompt = 'innocent' WHERE generation_id = 'gen-2'"))
    report = store.verify_chain()
    target = store.get("gen-2").id
    assert not report.ok and report.first_broken_id == target and report.records_checked == 2
    assert "content" in report.problem
    with engine.begin() as conn:
        conn.execute(text("UPDATE generation_records SET prompt = 'prompt 2' WHERE generation_id = 'gen-2'"))
        conn.execute(
            text("UPDATE verdicts SET score = 0.99 WHERE record_id = :id"), {"id": store.get("gen-4").id}
        )
    assert store.verify_chain().first_broken_id == store.get("gen-4").id
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE verdicts SET score = 0.4 WHERE record_id = :id"), {"id": store.get("gen-4").id}
        )
        conn.execute(text("DELETE FROM verdicts WHERE record_id = :id"), {"id": store.get("gen-1").id})
        conn.execute(text("DELETE FROM generation_records WHERE generation_id = 'gen-1'"))
    report = store.verify_chain()
    assert (
        not report.ok
        and report.first_broken_id == store.get("gen-2").id
        and "previous-hash" in report.problem
    )
    engine.dispose()
    store.dispose()


def _concurrent_writers_keep_the_chain(url: str) -> None:
    store = AuditStore(url)
    errors = []

    def write(offset: int) -> None:
        try:
            for i in range(15):
                store.record(_draft(offset + i))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = store.verify_chain()
    assert report.ok and report.records_checked == 60
    store.dispose()


def test_sqlite_chain_detects_modified_and_deleted_rows(tmp_path):
    _tamper_and_detect(f"sqlite:///{tmp_path / 'audit.db'}")


def test_sqlite_concurrent_writers_keep_the_chain_intact(tmp_path):
    _concurrent_writers_keep_the_chain(f"sqlite:///{tmp_path / 'audit.db'}")


@pytest.mark.postgres
def test_postgres_chain_detects_modified_and_deleted_rows(postgres_url):
    _tamper_and_detect(postgres_url)


@pytest.mark.postgres
def test_postgres_concurrent_writers_keep_the_chain_intact(postgres_url):
    _concurrent_writers_keep_the_chain(postgres_url)


@pytest.mark.postgres
def test_postgres_chain_holds_in_a_non_utc_session(postgres_url):
    url = postgres_url + "?options=-c%20TimeZone%3DAmerica/New_York"
    store = AuditStore(url)
    for i in range(3):
        store.record(_draft(i))
    with create_engine(url).connect() as conn:
        assert conn.execute(text("SHOW TimeZone")).scalar() == "America/New_York"
    assert store.verify_chain().ok and store.verify_chain().records_checked == 3
    store.dispose()


def test_in_memory_sqlite_is_refused():
    with pytest.raises(ValueError, match="in-memory"):
        AuditStore("sqlite://")


def test_watermark_payloads_are_unique(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'a.db'}")
    store.record(_draft(1))
    clash = _draft(2)
    clash.watermark_payload = _draft(1).watermark_payload
    with pytest.raises(Exception, match="UNIQUE"):
        store.record(clash)
    assert store.verify_chain().records_checked == 1


def test_audit_verify_cli_reports_first_broken_link(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore(url)
    for i in range(3):
        store.record(_draft(i))
    env = {"HALLMARK_DATA_DIR": str(tmp_path), "PATH": ""}
    ok = subprocess.run(
        [sys.executable, "-m", "hallmark.cli", "audit", "verify"], capture_output=True, text=True, env=env
    )
    assert ok.returncode == 0 and "3 records" in ok.stdout
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE generation_records SET status = 'blocked' WHERE generation_id = 'gen-1'"))
    broken = subprocess.run(
        [sys.executable, "-m", "hallmark.cli", "audit", "verify"], capture_output=True, text=True, env=env
    )
    assert broken.returncode == 4
    assert (
        f"record #{store.get('gen-1').id}" in broken.stderr
        and "1 records before it are intact" in broken.stderr
    )
