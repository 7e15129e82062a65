"""Fuzz the API from its own OpenAPI schema (schemathesis): whatever arrives, never a 5xx,
and every answer is one the schema documents."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from cnnlab.serve import ServeLimits, create_app

OPERATIONS = ["GET /healthz", "GET /v1/health/live", "GET /v1/health/ready", "GET /v1/models",
              "GET /v1/models/{name}", "POST /v1/predict"]  # fmt: skip
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip


@pytest.fixture(scope="module")
def api_schema(digit_bundle, binary_bundle):
    app = create_app([digit_bundle, binary_bundle], ServeLimits(max_request_bytes=100_000))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_schema_lists_every_operation(api_schema):
    labels = {op.ok().label for op in api_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


# Negative data (values that break the schema) exists only where there are constraints to break.
RUNS = [(op, GenerationMode.POSITIVE) for op in OPERATIONS] + [
    ("POST /v1/predict", GenerationMode.NEGATIVE)
]


@pytest.mark.parametrize("label, mode", RUNS, ids=[f"{m.value}-{op}" for op, m in RUNS])
def test_no_server_errors(api_schema, label, mode):
    operation = api_schema.find_operation_by_label(label)
    calls = []

    @given(data=st.data())
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)  # fmt: skip
    def fuzz(data):
        case = data.draw(operation.as_strategy(generation_mode=mode))
        response = case.call_and_validate(checks=CHECKS)
        calls.append(response.status_code)

    fuzz()
    assert calls and all(code < 500 for code in calls)


def test_probes_allow_get_and_head_and_a_prediction_needs_a_file(digit_bundle):
    """OPTIONS (or any other method) on a probe names every method it answers (schemathesis'
    allow_header_conformance), and the schema says `files` holds at least one image, as the
    API requires."""
    with TestClient(create_app(digit_bundle)) as c:
        for path in ("/healthz", "/v1/health/live", "/v1/health/ready"):
            r = c.options(path)
            assert r.status_code == 405, (path, r.text)
            assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD"}, path
            assert r.json()["error"] == "method_not_allowed"
        schema = c.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["files"]["minItems"] == 1
