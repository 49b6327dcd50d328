"""schemathesis against the OpenAPI schema of the generation routes: generated requests, valid
and invalid, must never get a 5xx. A tight tier keeps the jobs that pass tiny."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from audit.keys import create_key  # noqa: E402
from hallmark.app import create_app  # noqa: E402
from hallmark.compose import open_store  # noqa: E402

pytestmark = pytest.mark.slow  # builds a pipeline and runs the generations the fuzzer gets accepted


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory, settings, pipeline):
    from policy import Policy

    data = tmp_path_factory.mktemp("fuzz")
    text = open(Policy.load().source).read()
    tight = (
        text.replace("max_height = 480", "max_height = 128")
        .replace("max_seconds = 5", "max_seconds = 1")
        .replace("concurrent_jobs = 2", "concurrent_jobs = 1")
    )
    (data / "policy.toml").write_text(tight)
    fuzz = settings.model_copy(update={"data_dir": data / "d", "policy": data / "policy.toml"})
    from hallmark.compose import build_pipeline

    store = open_store(fuzz)
    _, key = create_key(store, "generator", "fuzzer", tenant="fuzz")
    app = create_app(fuzz, pipeline=build_pipeline(fuzz))
    yield app, {"Authorization": f"Bearer {key}"}
    store.dispose()


def test_no_server_errors(fuzz_service):
    """Every operation under /v1/generations, up to 30 generated requests each."""
    app, headers = fuzz_service
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex="^/v1/generations")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5
    seen: dict[int, int] = {}

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            response = case.call(headers={**(case.headers or {}), **headers})
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (
                case.method,
                case.path,
                response.status_code,
                response.text[:500],
            )

        check()
    assert sum(seen.values()) >= 50 and all(code < 500 for code in seen), seen
