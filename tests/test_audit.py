"""The hash-chained audit store on SQLite and on PostgreSQL: tampering, truncation, rewriting,
redaction, concurrent writers, migrations and API keys."""

import json
import subprocess
import sys
import threading

import pytest
from sqlalchemy import create_engine, text

from audit import AuditError, AuditStore, CheckpointKey, RecordDraft, SchemaError
from audit.keys import authenticate, create_key, revoke_key


def draft(i: int, status: str = "released", tenant: str = "default") -> RecordDraft:
    return RecordDraft(
        generation_id=f"gen-{i}",
        prompt=f"prompt {i}",
        policy_name="p",
        policy_version="sha256:1",
        model_id="m",
        model_version="1",
        status=status,
        output_sha256=f"{i:064x}",
        tenant=tenant,
        watermark_payload=f"{i:012x}",
        manifest_label=f"urn:c2pa:{i}",
        verdicts=[
            {
                "stage": "prompt",
                "classifier": "c",
                "classifier_version": "1",
                "category": "sexual",
                "score": 0.1 * (i % 10),
                "threshold": 0.5,
                "action": "allow",
                "calibrated": True,
                "detail": "",
            }
        ],
    )


@pytest.fixture(scope="module")
def checkpoint_key(tmp_path_factory):
    from provenance import ensure_dev_chain

    material = ensure_dev_chain(tmp_path_factory.mktemp("certs"))
    return CheckpointKey.from_files(material.chain_path, material.key_path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    return request.getfixturevalue("postgres_url")


def _sql(url: str, statement: str, **params) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(statement), params)
    engine.dispose()


def test_modified_rows_are_detected_at_the_first_broken_link(url):
    store = AuditStore(url)
    for i in range(6):
        store.record(draft(i))
    store.decide("gen-1", "confirm", "fine", "alice", "k1")
    report = store.verify_chain()
    assert report.ok and report.rows_checked == 7
    assert store.find_by_payload(f"{3:012x}").generation_id == "gen-3"
    assert store.find_by_sha256(f"{2:064x}").generation_id == "gen-2"
    assert store.find_by_manifest("urn:c2pa:4").generation_id == "gen-4"
    assert store.find_by_payload("f" * 12) is None

    seq = {f"gen-{i}": store.get(f"gen-{i}").seq for i in range(6)}
    _sql(url, "UPDATE record_content SET prompt = 'innocent' WHERE record_seq = :s", s=seq["gen-2"])
    report = store.verify_chain()
    assert not report.ok and report.first_broken_seq == seq["gen-2"] and "prompt or image" in report.problem
    assert report.rows_checked == 2
    _sql(url, "UPDATE record_content SET prompt = 'prompt 2' WHERE record_seq = :s", s=seq["gen-2"])
    assert store.verify_chain().ok

    _sql(url, "UPDATE generation_records SET status = 'blocked' WHERE seq = :s", s=seq["gen-3"])
    report = store.verify_chain()
    assert report.first_broken_seq == seq["gen-3"] and "fields or verdicts" in report.problem
    _sql(url, "UPDATE generation_records SET status = 'released' WHERE seq = :s", s=seq["gen-3"])

    _sql(url, "UPDATE verdicts SET score = 0.99 WHERE record_seq = :s", s=seq["gen-4"])
    assert store.verify_chain().first_broken_seq == seq["gen-4"]
    _sql(url, "UPDATE verdicts SET score = 0.4 WHERE record_seq = :s", s=seq["gen-4"])

    decision = store.decisions(seq["gen-1"])[0].seq
    _sql(url, "UPDATE decisions SET decision = 'overturn' WHERE seq = :s", s=decision)
    report = store.verify_chain()
    assert report.first_broken_seq == decision and "decision's fields" in report.problem
    _sql(url, "UPDATE decisions SET decision = 'confirm' WHERE seq = :s", s=decision)
    assert store.verify_chain().ok

    for table in ("verdicts", "record_content", "decisions"):
        _sql(url, f"DELETE FROM {table} WHERE record_seq = :s", s=seq["gen-1"])
    _sql(url, "DELETE FROM generation_records WHERE seq = :s", s=seq["gen-1"])
    report = store.verify_chain()
    assert not report.ok and report.first_broken_seq == seq["gen-2"] and "previous-hash" in report.problem
    store.dispose()


def test_redaction_erases_content_and_keeps_the_chain_verifiable(url):
    store = AuditStore(url)
    for i in range(4):
        store.record(draft(i))
    event = store.redact("gen-2", "GDPR erasure request #17", "dpo@example.com")
    seq2 = store.get("gen-2").seq
    assert store.content(seq2) is None and store.content(store.get("gen-1").seq).prompt == "prompt 1"
    assert [r.reason for r in store.redactions(seq2)] == ["GDPR erasure request #17"]
    report = store.verify_chain()
    assert report.ok and report.rows_checked == 5
    with pytest.raises(AuditError, match="already redacted"):
        store.redact("gen-2", "again", "x")
    with pytest.raises(AuditError, match="no record"):
        store.redact("gen-99", "r", "x")
    # Erasing content without a redaction event is caught.
    _sql(url, "DELETE FROM record_content WHERE record_seq = :s", s=store.get("gen-3").seq)
    report = store.verify_chain()
    assert (
        not report.ok
        and report.first_broken_seq == store.get("gen-3").seq
        and "without a redaction" in report.problem
    )
    assert event.seq == 5
    store.dispose()


def test_signed_checkpoints_catch_truncation_rewrite_and_forgery(url, checkpoint_key):
    store = AuditStore(url, checkpoint_key=checkpoint_key, checkpoint_every=3)
    for i in range(7):
        store.record(draft(i))
    assert [c.head_seq for c in store.checkpoints()] == [3, 6]
    report = store.verify_chain()
    assert report.ok and report.checkpoints_checked == 2
    published = store.checkpoint()  # kept elsewhere, e.g. printed by `hallmark audit checkpoint --out`
    assert published.head_seq == 7

    # Truncation: the newest rows are deleted and the head row moved back to match.
    seq6 = store.get("gen-6").seq
    last = store.get("gen-5")
    for table in ("verdicts", "record_content"):
        _sql(url, f"DELETE FROM {table} WHERE record_seq >= :s", s=seq6)
    _sql(url, "DELETE FROM generation_records WHERE seq >= :s", s=seq6)
    _sql(url, "UPDATE chain_head SET seq = :s, row_hash = :h", s=last.seq, h=last.row_hash)
    report = store.verify_chain()
    assert not report.ok and "truncated" in report.problem
    # ... even when the checkpoints table is wiped too, the published copy still catches it.
    _sql(url, "DELETE FROM checkpoints")
    assert store.verify_chain().ok
    report = store.verify_chain([published])
    assert not report.ok and "truncated" in report.problem and report.first_broken_seq == 7

    # A forged signature is caught.
    forged = type(published)(**{**published.__dict__, "head_seq": 5, "head_hash": last.row_hash})
    report = store.verify_chain([forged])
    assert not report.ok and "signature" in report.problem
    store.dispose()


def test_a_rewritten_chain_differs_from_the_signed_checkpoint(url, checkpoint_key):
    store = AuditStore(url, checkpoint_key=checkpoint_key, checkpoint_every=100)
    for i in range(3):
        store.record(draft(i))
    published = store.checkpoint()
    # Someone with write access rewrites record 2 and re-chains everything from it (no key needed
    # for that): every link verifies, but the head no longer matches the signed checkpoint.
    from audit import chain

    seq2 = store.get("gen-1").seq
    _sql(url, "UPDATE record_content SET prompt = 'rewritten' WHERE record_seq = :s", s=seq2)
    content = store.content(seq2)
    prev = chain.GENESIS
    for i in range(3):
        record = store.get(f"gen-{i}")
        c = store.content(record.seq)
        values = record.model_dump()
        values["prev_hash"] = prev
        values["content_hash"] = chain.content_hash(c.salt, c.prompt, c.input_image_sha256)
        values["row_hash"] = chain.record_hash(
            prev, values, [v.model_dump() for v in store.verdicts(record.seq)]
        )
        _sql(
            url,
            "UPDATE generation_records SET prev_hash = :p, content_hash = :c, row_hash = :h WHERE seq = :s",
            p=prev,
            c=values["content_hash"],
            h=values["row_hash"],
            s=record.seq,
        )
        prev = values["row_hash"]
    _sql(url, "UPDATE chain_head SET row_hash = :h", h=prev)
    assert content.prompt == "rewritten"
    report = store.verify_chain()
    assert not report.ok and "differs from a signed checkpoint" in report.problem
    assert report.first_broken_seq == published.head_seq
    store.dispose()


def test_concurrent_writers_keep_one_intact_chain(url):
    store = AuditStore(url)
    store.record(draft(0))
    errors = []

    def write(offset: int) -> None:
        try:
            for i in range(12):
                store.record(draft(offset + i))
                if i % 4 == 0:
                    store.decide("gen-0", "escalate", f"writer {offset}", "r", "k")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k * 100,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = store.verify_chain()
    assert report.ok and report.rows_checked == 1 + 4 * 12 + 4 * 3
    assert store.head().seq == report.rows_checked
    store.dispose()


def test_a_failed_batch_writes_nothing(url):
    store = AuditStore(url)
    store.record(draft(1))
    clash = draft(2)
    clash.watermark_payload = draft(1).watermark_payload
    with pytest.raises(AuditError, match="watermark_payload already exists"):
        store.record_many([draft(3), clash])
    assert store.get("gen-3") is None and store.head().seq == 1
    assert store.verify_chain().rows_checked == 1
    with pytest.raises(AuditError, match="decision must be one of"):
        store.decide("gen-1", "approve", "x", "r", "k")
    with pytest.raises(AuditError, match="needs a reason"):
        store.decide("gen-1", "confirm", "  ", "r", "k")
    with pytest.raises(AuditError, match="no record"):
        store.decide("gen-9", "confirm", "x", "r", "k")
    assert store.head().seq == 1
    store.dispose()


@pytest.mark.postgres
def test_postgres_chain_holds_in_a_non_utc_session(postgres_url):
    url = postgres_url + "?options=-c%20TimeZone%3DAmerica/New_York"
    store = AuditStore(url)
    for i in range(3):
        store.record(draft(i))
    store.decide("gen-1", "confirm", "ok", "r", "k")
    with create_engine(url).connect() as conn:
        assert conn.execute(text("SHOW TimeZone")).scalar() == "America/New_York"
    assert store.verify_chain().ok and store.verify_chain().rows_checked == 4
    store.dispose()


def test_migrations_build_exactly_the_models_schema(url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    from audit.migrate import current_revision, head_revision

    store = AuditStore(url)  # an empty database is migrated on first open
    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    store.dispose()


def test_an_outdated_or_pre_migration_database_is_refused_with_the_remedy(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditStore(url).dispose()
    _sql(url, "UPDATE alembic_version SET version_num = '0000'")
    with pytest.raises(SchemaError, match="hallmark db upgrade"):
        AuditStore(url)
    old = f"sqlite:///{tmp_path / 'old.db'}"
    _sql(old, "CREATE TABLE generation_records (id INTEGER PRIMARY KEY, prompt TEXT)")
    with pytest.raises(SchemaError, match="before schema migrations"):
        AuditStore(old)


def test_in_memory_sqlite_is_refused():
    with pytest.raises(ValueError, match="in-memory"):
        AuditStore("sqlite://")


def test_api_keys_are_stored_hashed_and_can_be_revoked(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'a.db'}")
    row, key = create_key(store, "reviewer", "alice")
    assert key.startswith("hk_" + row.key_id + "_") and key.split("_", 2)[2] not in row.secret_sha256
    found = authenticate(store, key)
    assert found.role == "reviewer" and found.name == "alice" and found.reviews
    assert authenticate(store, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert authenticate(store, "not-a-key") is None
    with pytest.raises(AuditError, match="needs a tenant"):
        create_key(store, "generator", "app")
    with pytest.raises(AuditError, match="role must be"):
        create_key(store, "root", "x")
    revoke_key(store, row.key_id)
    assert authenticate(store, key) is None
    with pytest.raises(AuditError, match="no active key"):
        revoke_key(store, row.key_id)
    engine = create_engine(store.url)
    with engine.connect() as conn:
        dump = " ".join(str(r) for r in conn.execute(text("SELECT * FROM api_keys")))
    assert key.split("_", 2)[2] not in dump
    engine.dispose()


def _cli(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "hallmark.cli", *args], capture_output=True, text=True, env=env
    )


@pytest.mark.slow
def test_cli_keys_db_upgrade_checkpoint_and_verify(tmp_path):
    env = {"HALLMARK_DATA_DIR": str(tmp_path), "PATH": "", "HALLMARK_AUDIT_CHECKPOINT_EVERY": "2"}
    up = _cli(env, "db", "upgrade")
    assert up.returncode == 0 and "upgraded from empty to schema revision" in up.stdout
    assert "already at" in _cli(env, "db", "upgrade").stdout

    created = _cli(env, "keys", "create", "--role", "reviewer", "--name", "alice")
    assert created.returncode == 0 and created.stdout.strip().startswith("hk_")
    secret = created.stdout.strip().split("_", 2)[2]
    listed = _cli(env, "keys", "list")
    assert "reviewer" in listed.stdout and "alice" in listed.stdout and secret not in listed.stdout
    bad = _cli(env, "keys", "create", "--role", "generator", "--name", "app")
    assert bad.returncode == 1 and "needs a tenant" in bad.stderr

    from hallmark.compose import open_store
    from hallmark.settings import Settings

    store = open_store(Settings(data_dir=tmp_path, audit_checkpoint_every=2))
    for i in range(5):
        store.record(draft(i))
    ok = _cli(env, "audit", "verify")
    assert ok.returncode == 0 and "5 rows, 2 signed checkpoints" in ok.stdout, ok.stderr
    out = tmp_path / "checkpoint.json"
    cp = _cli(env, "audit", "checkpoint", "--out", str(out))
    assert cp.returncode == 0 and json.loads(out.read_text())["head_seq"] == 5

    redacted = _cli(env, "audit", "redact", "gen-2", "--reason", "erasure request")
    assert redacted.returncode == 0 and store.content(store.get("gen-2").seq) is None
    assert _cli(env, "audit", "verify").returncode == 0

    _sql(store.url, "UPDATE generation_records SET status = 'blocked' WHERE generation_id = 'gen-1'")
    broken = _cli(env, "audit", "verify", "--checkpoint", str(out))
    assert broken.returncode == 4
    assert f"seq {store.get('gen-1').seq}" in broken.stderr and "1 rows before it are intact" in broken.stderr
    store.dispose()


_WRITER = """
import sys
from audit import AuditStore, RecordDraft
store = AuditStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.record(RecordDraft(generation_id=f"{sys.argv[2]}-{i}", prompt="p", policy_name="p", policy_version="1",
                             model_id="m", model_version="1", status="blocked"))
store.decide(f"{sys.argv[2]}-0", "confirm", "ok", "r", "k")
"""


def test_writers_in_separate_processes_keep_one_intact_chain(url):
    AuditStore(url).dispose()  # migrate once, before the writers race
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, url, f"p{k}", "15"]) for k in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    store = AuditStore(url)
    report = store.verify_chain()
    assert report.ok and report.rows_checked == 3 * 16
    store.dispose()


@pytest.mark.slow
def test_hallmark_serve_answers_over_real_http(tmp_path, hallmark_server):
    import httpx

    from hallmark.compose import open_store
    from hallmark.settings import Settings

    store = open_store(Settings(data_dir=tmp_path))
    store.record(draft(1, status="blocked"))
    _, key = create_key(store, "reviewer", "rita")
    base = hallmark_server(tmp_path)
    r = httpx.get(f"{base}/v1/audit/queue", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and [i["generation_id"] for i in r.json()["items"]] == ["gen-1"]
    assert httpx.get(f"{base}/v1/audit/queue").status_code == 401
    store.dispose()
