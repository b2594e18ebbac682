"""Property-based tests of the served API against its own OpenAPI document (schemathesis):
whatever a client that knows only `/api/v1/openapi.json` sends, the console answers without a
server error, with a documented status code and content type, and a body that matches the schema.

Bounded: a few examples per operation (MAX_EXAMPLES), so the run stays well under a minute.
(schemathesis' own pytest plugin does not run under pytest 9 yet, so pytest.ini disables it and the
operations are driven with hypothesis directly, one `given` per operation.)
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.api_fixtures import ServedApi

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 3


def test_no_server_error_and_every_response_matches_the_schema(served_api: ServedApi) -> None:
    schema = schemathesis.openapi.from_url(served_api.base + "/openapi.json", timeout=30)
    headers = served_api.headers("admin")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, "every endpoint of the document is in the OpenAPI document"
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=served_api.base, headers=headers, checks=CHECKS, timeout=30)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every failure, then fail once
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
