"""The review API under /v1/audit, through HTTP, on SQLite and on PostgreSQL."""

import csv
import hashlib
import io
import json
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from audit import RecordDraft
from audit.keys import create_key, revoke_key
from hallmark.app import create_app
from hallmark.compose import open_store
from hallmark.settings import Settings

TENANTS = ("acme", "globex", "initech")


def _drafts() -> list[RecordDraft]:
    drafts = []
    for i in range(48):
        status = "blocked" if i % 4 == 0 else ("error" if i % 11 == 5 else "released")
        prompt_score, frame_score = (i * 7 % 100) / 100, (i * 13 % 100) / 100
        verdicts = [
            {
                "stage": "prompt",
                "classifier": "blocklist",
                "classifier_version": "1",
                "category": "sexual",
                "score": prompt_score,
                "threshold": 0.5,
                "action": "block" if status == "blocked" else "allow",
                "calibrated": True,
                "detail": "",
            }
        ]
        if status == "released":
            verdicts.append(
                {
                    "stage": "frames",
                    "classifier": "clip",
                    "classifier_version": "2",
                    "category": "violence",
                    "score": frame_score,
                    "threshold": 0.9,
                    "action": "flag" if i % 6 == 1 else "allow",
                    "calibrated": True,
                    "detail": "",
                }
            )
        released = status == "released"
        drafts.append(
            RecordDraft(
                generation_id=f"gen-{i:02d}",
                prompt="a red fox in deep snow" if i % 8 == 0 else f"scene {i} of a paper boat",
                policy_name="default",
                policy_version="v1" if i < 24 else "v2",
                model_id="tiny" if i % 2 else "big",
                model_version="1",
                status=status,
                verdicts=verdicts,
                tenant=TENANTS[i % 3],
                user=f"u{i % 5}",
                flagged=released and i % 6 == 1,
                blocked_stage="prompt" if status == "blocked" else None,
                reason="blocked by blocklist" if status == "blocked" else None,
                output_sha256=hashlib.sha256(f"file {i}".encode()).hexdigest() if released else None,
                watermark_payload=f"{i:012x}" if released else None,
                manifest_label=f"urn:c2pa:{i:04d}" if released else None,
            )
        )
    return drafts


@dataclass
class Review:
    client: TestClient
    store: object
    drafts: list[RecordDraft]
    reviewer: dict
    admin: dict
    acme: dict  # a generator key of tenant acme

    def ids(self, path: str = "/v1/audit/records", headers: dict | None = None, **params) -> list[str]:
        """Every generation id a listing returns, following next_cursor page by page."""
        out, cursor = [], None
        while True:
            query = {**params, "limit": params.get("limit", 7), **({"cursor": cursor} if cursor else {})}
            r = self.client.get(path, params=query, headers=headers or self.reviewer)
            assert r.status_code == 200, r.text
            body = r.json()
            out += [item["generation_id"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return out


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def review(request, tmp_path):
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(data_dir=tmp_path, database_url=url, torch_threads=2)
    store = open_store(settings)
    drafts = _drafts()
    store.record_many(drafts)
    keys = [
        create_key(store, "reviewer", "rita")[1],
        create_key(store, "admin", "ada")[1],
        create_key(store, "generator", "acme-app", tenant="acme")[1],
    ]
    with TestClient(create_app(settings)) as client:
        yield Review(client, store, drafts, *({"Authorization": f"Bearer {k}"} for k in keys))
    store.dispose()


def _expected(drafts, keep) -> list[str]:
    """Matching ids, newest first (records were written in list order)."""
    return [d.generation_id for d in reversed(drafts) if keep(d)]


def test_no_key_wrong_key_and_roles(review):
    c = review.client
    none = c.get("/v1/audit/records")
    assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
    assert c.get("/v1/audit/records", headers={"Authorization": "Bearer hk_nope_nope"}).status_code == 401
    assert c.get("/v1/audit/records", headers={"Authorization": "Basic abc"}).status_code == 401

    # A generator key sees its own tenant's records only.
    assert review.ids(headers=review.acme) == _expected(review.drafts, lambda d: d.tenant == "acme")
    other = c.get("/v1/audit/records", params={"tenant": "globex"}, headers=review.acme)
    assert other.status_code == 403 and "tenant" in other.json()["detail"]
    assert c.get("/v1/audit/records/gen-01", headers=review.acme).status_code == 404  # globex's
    assert c.get("/v1/audit/records/gen-03", headers=review.acme).status_code == 200
    assert (
        c.get("/v1/audit/lookup", params={"watermark": f"{1:012x}"}, headers=review.acme).status_code == 404
    )
    stats = c.get("/v1/audit/stats", headers=review.acme).json()
    assert stats["total"] == sum(d.tenant == "acme" for d in review.drafts)
    for method, path in (
        ("get", "/v1/audit/queue"),
        ("get", "/v1/audit/export"),
        ("post", "/v1/audit/records/gen-03/decisions"),
    ):
        r = c.request(method, path, headers=review.acme, json={"decision": "confirm", "reason": "x"})
        assert r.status_code == 403 and "generator key" in r.json()["detail"]

    # Reviewers decide but do not redact; admins do both.
    assert (
        c.post(
            "/v1/audit/records/gen-03/redactions", json={"reason": "x"}, headers=review.reviewer
        ).status_code
        == 403
    )
    assert (
        c.post(
            "/v1/audit/records/gen-03/decisions",
            json={"decision": "confirm", "reason": "ok"},
            headers=review.admin,
        ).status_code
        == 201
    )

    # A revoked key stops working at once.
    key_id = review.reviewer["Authorization"].split("_")[1]
    revoke_key(review.store, key_id)
    assert c.get("/v1/audit/records", headers=review.reviewer).status_code == 401


FILTERS = [
    ({}, lambda d: True),
    ({"tenant": "globex"}, lambda d: d.tenant == "globex"),
    ({"user": "u2"}, lambda d: d.user == "u2"),
    ({"status": "blocked"}, lambda d: d.status == "blocked"),
    ({"status": "error", "model": "tiny"}, lambda d: d.status == "error" and d.model_id == "tiny"),
    ({"blocked_stage": "prompt"}, lambda d: d.blocked_stage == "prompt"),
    ({"policy_version": "v2"}, lambda d: d.policy_version == "v2"),
    ({"classifier": "clip"}, lambda d: any(v["classifier"] == "clip" for v in d.verdicts)),
    (
        {"stage": "frames", "min_score": 0.5},
        lambda d: any(v["stage"] == "frames" and v["score"] >= 0.5 for v in d.verdicts),
    ),
    (
        {"category": "sexual", "min_score": 0.7},
        lambda d: any(v["category"] == "sexual" and v["score"] >= 0.7 for v in d.verdicts),
    ),
    ({"min_score": 0.9}, lambda d: max(v["score"] for v in d.verdicts) >= 0.9),
    ({"q": "RED FOX"}, lambda d: "red fox" in d.prompt),
    ({"q": "100%_"}, lambda d: False),  # LIKE wildcards are taken literally
]


@pytest.mark.parametrize("params,keep", FILTERS, ids=[json.dumps(f[0]) for f in FILTERS])
def test_each_filter_returns_exactly_the_matching_records(review, params, keep):
    assert review.ids(**params) == _expected(review.drafts, keep)


def test_time_range_reviewed_and_decision_filters(review):
    c, h = review.client, review.reviewer
    first = c.get("/v1/audit/records/gen-10", headers=h).json()["created_at"]
    last = c.get("/v1/audit/records/gen-20", headers=h).json()["created_at"]
    window = review.ids(since=first, until=last)
    assert window == [f"gen-{i:02d}" for i in range(19, 9, -1)]
    for gid, decision in (("gen-04", "confirm"), ("gen-08", "escalate"), ("gen-04", "overturn")):
        assert (
            c.post(
                f"/v1/audit/records/{gid}/decisions", json={"decision": decision, "reason": "r"}, headers=h
            ).status_code
            == 201
        )
    assert review.ids(reviewed="true") == ["gen-08", "gen-04"]
    assert len(review.ids(reviewed="false")) == 46
    assert review.ids(decision="overturn") == ["gen-04"]  # the latest decision counts
    assert review.ids(decision="confirm") == []
    assert review.ids(decision="escalate") == ["gen-08"]


@pytest.mark.parametrize("sort", ["time", "score"])
def test_pages_never_repeat_or_skip_while_records_are_written(review, sort):
    c, h = review.client, review.reviewer
    seen, cursor, written = [], None, 0
    while True:
        params = {"sort": sort, "limit": 6, **({"cursor": cursor} if cursor else {})}
        body = c.get("/v1/audit/records", params=params, headers=h).json()
        seen += [(i["generation_id"], i["top_score"], i["seq"]) for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        extra = _drafts()[written % 48]  # new records keep arriving between page requests
        extra.generation_id, extra.watermark_payload = f"new-{written}", None
        review.store.record(extra)
        written += 1
    originals = [s for s in seen if s[0].startswith("gen-")]
    assert sorted(s[0] for s in originals) == sorted(d.generation_id for d in review.drafts)
    assert len({s[0] for s in seen}) == len(seen)
    key = (lambda s: (-s[1], -s[2])) if sort == "score" else (lambda s: -s[2])
    assert seen == sorted(seen, key=key)


def test_bad_input_gets_a_4xx_naming_the_field(review):
    c, h = review.client, review.reviewer

    def field_of(r):
        detail = r.json()["detail"]
        return detail if isinstance(detail, str) else [e["loc"][-1] for e in detail]

    for params, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"status": "done"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"min_score": -1}, "min_score"),
        ({"sort": "size"}, "sort"),
        ({"colour": "red"}, "colour"),
    ):
        r = c.get("/v1/audit/records", params=params, headers=h)
        assert r.status_code == 422 and field in field_of(r), (params, r.text)
    bad = c.get("/v1/audit/records", params={"cursor": "garbage"}, headers=h)
    assert bad.status_code == 422 and "field 'cursor'" in bad.json()["detail"]
    time_cursor = c.get("/v1/audit/records", params={"limit": 2}, headers=h).json()["next_cursor"]
    mixed = c.get("/v1/audit/records", params={"cursor": time_cursor, "sort": "score"}, headers=h)
    assert mixed.status_code == 422 and "sorted by time" in mixed.json()["detail"]
    r = c.get("/v1/audit/lookup", headers=h)
    assert r.status_code == 422 and "exactly one" in r.json()["detail"]
    r = c.get("/v1/audit/lookup", params={"sha256": "zz"}, headers=h)
    assert r.status_code == 422 and "sha256" in field_of(r)
    r = c.get("/v1/audit/export", params={"format": "dsa", "territory": "germany"}, headers=h)
    assert r.status_code == 422 and "territory" in r.json()["detail"]

    head = review.store.head().seq
    for body, field in (
        ({"decision": "approve", "reason": "x"}, "decision"),
        ({"decision": "confirm"}, "reason"),
        ({"decision": "confirm", "reason": ""}, "reason"),
        ({"decision": "confirm", "reason": "x", "extra": 1}, "extra"),
    ):
        r = c.post("/v1/audit/records/gen-04/decisions", json=body, headers=h)
        assert r.status_code == 422 and field in field_of(r), (body, r.text)
    assert (
        c.post(
            "/v1/audit/records/gen-99/decisions", json={"decision": "confirm", "reason": "x"}, headers=h
        ).status_code
        == 404
    )
    assert review.store.head().seq == head  # nothing partial was written
    assert c.get("/v1/audit/records/gen-99", headers=h).status_code == 404


def test_record_detail_and_lookups(review):
    c, h = review.client, review.reviewer
    d = review.drafts[7]
    body = c.get(f"/v1/audit/records/{d.generation_id}", headers=h).json()
    assert body["prompt"] == d.prompt and body["tenant"] == d.tenant and body["status"] == "released"
    assert [(v["classifier"], v["score"], v["threshold"], v["action"]) for v in body["verdicts"]] == [
        (v["classifier"], round(v["score"], 6), v["threshold"], v["action"]) for v in d.verdicts
    ]
    assert body["policy"] == {"name": "default", "version": "v1"} and body["decisions"] == []
    assert body["links"]["video"].endswith(f"/v1/audit/records/{d.generation_id}/video")
    for params in (
        {"sha256": d.output_sha256.upper()},
        {"watermark": d.watermark_payload},
        {"manifest": d.manifest_label},
    ):
        r = c.get("/v1/audit/lookup", params=params, headers=h)
        assert r.status_code == 200 and r.json()["generation_id"] == d.generation_id, params
    assert c.get("/v1/audit/lookup", params={"watermark": "abcdef"}, headers=h).status_code == 404
    blocked = c.get("/v1/audit/records/gen-04", headers=h).json()
    assert blocked["links"]["video"] is None and blocked["reason"] == "blocked by blocklist"
    assert c.get("/v1/audit/records/gen-04/video", headers=h).status_code == 404
    gone = c.get(f"/v1/audit/records/{d.generation_id}/video", headers=h)
    assert gone.status_code == 404  # synthetic records have no file on disk


def test_queue_decisions_and_escalations(review):
    c, h = review.client, review.reviewer
    needs = [d for d in review.drafts if d.status == "blocked" or d.flagged]
    top = {d.generation_id: max(v["score"] for v in d.verdicts) for d in needs}
    queue = review.ids("/v1/audit/queue")
    assert sorted(queue) == sorted(top) and [top[g] for g in queue] == sorted(top.values(), reverse=True)
    first, second = queue[0], queue[1]
    r = c.post(
        f"/v1/audit/records/{first}/decisions",
        json={"decision": "confirm", "reason": "clear violation"},
        headers=h,
    )
    assert r.status_code == 201 and r.json()["reviewer"] == "rita" and r.json()["decision"] == "confirm"
    c.post(
        f"/v1/audit/records/{second}/decisions", json={"decision": "escalate", "reason": "unsure"}, headers=h
    )
    assert review.ids("/v1/audit/queue") == queue[2:]
    assert review.ids("/v1/audit/queue", escalated="true") == [second]
    detail = c.get(f"/v1/audit/records/{first}", headers=h).json()
    assert [(x["decision"], x["reason"]) for x in detail["decisions"]] == [("confirm", "clear violation")]
    assert detail["latest_decision"] == "confirm"
    assert review.store.verify_chain().ok


def test_statistics_count_what_the_records_say(review):
    stats = review.client.get("/v1/audit/stats", headers=review.reviewer).json()
    drafts = review.drafts
    assert stats["total"] == 48
    assert stats["by_status"] == {
        s: sum(d.status == s for d in drafts) for s in ("blocked", "error", "released")
    }
    assert list(stats["by_day"].values()) == [stats["by_status"]]
    blocked = sum(d.status == "blocked" for d in drafts)
    assert stats["classifiers"]["blocklist"] == {
        "screened": 48,
        "blocked": blocked,
        "block_rate": round(blocked / 48, 6),
    }
    assert stats["classifiers"]["clip"]["blocked"] == 0
    assert stats["by_category"] == {
        "sexual": {"block": blocked},
        "violence": {"flag": sum(d.flagged for d in drafts)},
    }
    one = review.client.get(
        "/v1/audit/stats", params={"tenant": "acme", "status": "blocked"}, headers=review.reviewer
    )
    assert one.json()["total"] == sum(d.tenant == "acme" and d.status == "blocked" for d in drafts)


def test_exports_stream_jsonl_csv_and_dsa_statements(review):
    c, h = review.client, review.reviewer
    c.post("/v1/audit/records/gen-08/decisions", json={"decision": "confirm", "reason": "nudity"}, headers=h)
    r = c.get("/v1/audit/export", params={"tenant": "globex"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [x["generation_id"] for x in lines] == list(
        reversed(_expected(review.drafts, lambda d: d.tenant == "globex"))
    )
    assert all(x["verdicts"] and x["tenant"] == "globex" for x in lines)

    r = c.get("/v1/audit/export", params={"format": "csv", "status": "released"}, headers=h)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv")
    assert len(rows) == sum(d.status == "released" for d in review.drafts)
    assert {row["status"] for row in rows} == {"released"} and json.loads(rows[0]["verdicts"])[0][
        "classifier"
    ] == "blocklist"

    r = c.get("/v1/audit/export", params={"format": "dsa"}, headers=h)
    statements = [json.loads(line) for line in r.text.splitlines()]
    blocked = [d for d in review.drafts if d.status == "blocked"]
    assert [s["puid"] for s in statements] == [d.generation_id for d in blocked]
    required = {
        "decision_visibility",
        "decision_ground",
        "content_type",
        "category",
        "territorial_scope",
        "content_date",
        "application_date",
        "decision_facts",
        "source_type",
        "automated_detection",
        "automated_decision",
        "puid",
        "incompatible_content_ground",
        "incompatible_content_explanation",
    }
    for s in statements:
        assert required <= s.keys()
        assert (
            s["decision_ground"] == "DECISION_GROUND_INCOMPATIBLE_CONTENT"
            and s["automated_detection"] == "Yes"
        )
        assert s["content_type"] == ["CONTENT_TYPE_TEXT"] and "DE" in s["territorial_scope"]
        assert s["category_specification"] == ["KEYWORD_ADULT_SEXUAL_MATERIAL"]
        assert "blocklist 1 scored" in s["decision_facts"] and "policy default" in s["decision_facts"]
    by_id = {s["puid"]: s for s in statements}
    assert by_id["gen-08"]["automated_decision"] == "AUTOMATED_DECISION_PARTIALLY"
    assert by_id["gen-04"]["automated_decision"] == "AUTOMATED_DECISION_FULLY"
    scoped = c.get("/v1/audit/export", params={"format": "dsa", "territory": ["FR", "BE"]}, headers=h)
    assert json.loads(scoped.text.splitlines()[0])["territorial_scope"] == ["FR", "BE"]


def test_redaction_through_the_api(review):
    c = review.client
    r = c.post(
        "/v1/audit/records/gen-16/redactions", json={"reason": "erasure request 42"}, headers=review.admin
    )
    assert r.status_code == 201 and r.json()["requested_by"].startswith("ada (")
    body = c.get("/v1/audit/records/gen-16", headers=review.reviewer).json()
    assert (
        body["prompt"] is None
        and body["redacted"]
        and body["redactions"][0]["reason"] == "erasure request 42"
    )
    assert "gen-16" not in review.ids(q="red fox")
    again = c.post("/v1/audit/records/gen-16/redactions", json={"reason": "again"}, headers=review.admin)
    assert again.status_code == 409
    assert review.store.verify_chain().ok


def test_openapi_documents_the_review_api_and_the_page_is_served(review):
    spec = review.client.get("/openapi.json").json()
    for path in (
        "/v1/audit/records",
        "/v1/audit/records/{generation_id}",
        "/v1/audit/lookup",
        "/v1/audit/queue",
        "/v1/audit/stats",
        "/v1/audit/export",
        "/v1/audit/records/{generation_id}/decisions",
        "/v1/audit/records/{generation_id}/redactions",
        "/v1/verify",
    ):
        assert path in spec["paths"], path
    params = {p["name"] for p in spec["paths"]["/v1/audit/records"]["get"]["parameters"]}
    assert {"tenant", "category", "min_score", "q", "cursor", "sort", "reviewed", "decision"} <= params
    assert "HTTPBearer" in json.dumps(spec["components"]["securitySchemes"])
    page = review.client.get("/review")
    assert page.status_code == 200 and "/v1/audit/queue" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


@pytest.mark.slow
def test_a_real_release_has_its_video_and_thumbnails(settings, released):
    from PIL import Image

    store = open_store(settings)
    _, key = create_key(store, "reviewer", "rita")
    h = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(settings)) as c:
        body = c.get("/v1/audit/lookup", params={"sha256": released.output_sha256}, headers=h).json()
        assert (
            body["generation_id"] == released.generation_id
            and body["watermark"]["key_id"] == released.watermark_key_id
        )
        video = c.get(body["links"]["video"], headers=h)
        assert (
            video.status_code == 200 and hashlib.sha256(video.content).hexdigest() == released.output_sha256
        )
        strip = c.get(body["links"]["thumbnails"], headers=h)
        assert strip.status_code == 200 and strip.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(strip.content))
        assert image.height == 96 and image.width == 8 * 96  # eight square frames
        manifest = c.get(body["links"]["manifest"])  # public: the soft-binding resolution route
        assert manifest.status_code == 200 and manifest.headers["content-type"] == "application/c2pa"
        assert released.manifest_label.encode() in manifest.content
    store.dispose()


def test_concurrent_decisions_over_http_and_records_keep_one_chain(review):
    import threading

    errors: list[str] = []

    def decide(k: int) -> None:
        for i in range(5):
            r = review.client.post(
                f"/v1/audit/records/gen-{(k * 5 + i) % 48:02d}/decisions",
                json={"decision": "escalate", "reason": f"thread {k}"},
                headers=review.reviewer,
            )
            if r.status_code != 201:
                errors.append(r.text)

    def write(k: int) -> None:
        for i in range(5):
            extra = _drafts()[i]
            extra.generation_id, extra.watermark_payload = f"w{k}-{i}", None
            review.store.record(extra)

    threads = [threading.Thread(target=decide, args=(k,)) for k in range(4)]
    threads += [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = review.store.verify_chain()
    assert report.ok and report.rows_checked == 48 + 4 * 5 + 2 * 5
    assert len(review.ids("/v1/audit/queue", escalated="true")) == len(
        {f"gen-{n % 48:02d}" for n in range(20)}
        & {d.generation_id for d in review.drafts if d.status == "blocked" or d.flagged}
    )
