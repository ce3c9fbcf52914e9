"""Schemathesis against the live server: no 5xx, and every answer is the one documented.

The OpenAPI document is fetched from the running server (``/openapi.json``), as a client
would, and schemathesis generates requests from it with Hypothesis: valid ones (positive)
and ones that break the document (negative), with random ids, names, query values,
``If-None-Match`` headers and render bodies. Random ids rarely name a prompt, so the
operations taking one also run with the id (or name) of a real prompt pinned and the rest
random: those reach the 200, 304 and render paths.

Each answer must pass:

* ``not_a_server_error``: no 5xx;
* ``status_code_conformance``: the status is documented for the operation;
* ``content_type_conformance``, ``response_headers_conformance``: the documented content
  type and headers (ETag and Cache-Control on 200 and 304, WWW-Authenticate on 401);
* ``response_schema_conformance``: the body matches the documented schema (closed objects,
  enums of error codes);
* ``ignored_auth``: an operation that needs a key refuses a request without one.

Runs are deterministic (``derandomize``) and bounded (`EXAMPLES` per operation and mode), with
no example database. A failure is a server bug (or a document bug): report the request
schemathesis prints, do not loosen the checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis import checks as schemathesis_checks

from promptory.server.openapi import openapi_document
from support.gitrepo import PromptRepo
from support.servers import RunningServer, copy_examples, running_server

from .conftest import Tally

#: Examples Hypothesis generates per operation and mode.
EXAMPLES = 100

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"

CHECKS = [
    schemathesis_checks.not_a_server_error,
    schemathesis_checks.status_code_conformance,
    schemathesis_checks.content_type_conformance,
    schemathesis_checks.response_headers_conformance,
    schemathesis_checks.response_schema_conformance,
    schemathesis_checks.ignored_auth,
]

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass(frozen=True)
class Target:
    """One fuzzing run: an operation, a generation mode, and path parameters held fixed."""

    path: str
    method: str
    mode: GenerationMode = GenerationMode.POSITIVE
    pinned: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        pinned = ",".join(f"{k}={v}" for k, v in self.pinned.items())
        return f"{self.method} {self.path} {self.mode.value}" + (f" [{pinned}]" if pinned else "")


def _targets() -> list[Target]:
    """Every operation of the document, positive; negative where the operation takes
    something that can be wrong; and the pinned variants."""
    targets = []
    for path, item in openapi_document()["paths"].items():
        if path == "/api/v1/watch":
            continue  # an endless event stream: tests/prod/test_watch.py covers it
        for method, operation in item.items():
            targets.append(Target(path, method.upper()))
            takes_input = operation.get("parameters") or operation.get("requestBody")
            security = operation.get("security")
            needs_key = security != [] and {} not in (security or [])  # {}: a key is optional
            if takes_input or needs_key:
                targets.append(Target(path, method.upper(), GenerationMode.NEGATIVE))
    targets += [
        Target("/api/v1/prompts/{id}", "GET", pinned={"id": MEDITATION_ID}),
        Target("/api/v1/prompts/{id}/render", "POST", pinned={"id": MEDITATION_ID}),
        Target("/api/v1/prompts/{id}/render", "POST", pinned={"id": "coach_checkin"}),
        Target("/api/v1/prompts/{id}/render", "POST", pinned={"id": "broken"}),
        Target(
            "/api/v1/prompts/by-name/{org}/{app}/{name}",
            "GET",
            pinned={"org": "myorg", "app": "myapp", "name": "greeting"},
        ),
    ]
    return targets


TARGETS = {target.label: target for target in _targets()}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, api_key: str) -> Iterator[RunningServer]:
    """The examples, a prompt whose render fails, a bad file (so status lists a problem);
    no rate limit."""
    repo = PromptRepo(tmp_path_factory.mktemp("fuzz") / "repo")
    copy_examples(repo)
    repo.write_prompt("myorg", "myapp", "broken", "{{ user.name.first() }}\n")
    repo.write("myorg/myapp/unreadable.md", "---\nversion: [\n---\n")
    repo.commit("examples, a broken render and a bad file")
    with running_server(repo, api_key, rate_limit=0) as running:
        yield running


@pytest.fixture(scope="module")
def schema(fuzz_server: RunningServer) -> Any:
    """The server's own document, as served."""
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


@pytest.fixture(scope="module")
def ids(fuzz_server: RunningServer) -> dict[str, str]:
    """Prompt ids by name, for the pinned targets that name a prompt by its name."""
    with fuzz_server.client() as http:
        prompts = http.get("/api/v1/prompts").json()["prompts"]
    return {prompt["name"]: prompt["id"] for prompt in prompts if prompt["org"] == "myorg"}


@pytest.mark.parametrize("label", list(TARGETS))
def test_fuzzed_requests_get_documented_answers_and_no_5xx(
    fuzz_server: RunningServer,
    schema: Any,
    ids: dict[str, str],
    tally: Tally,
    label: str,
) -> None:
    target = TARGETS[label]
    operation = schema[target.path][target.method]
    pinned = {name: ids.get(value, value) for name, value in target.pinned.items()}
    strategy = operation.as_strategy(generation_mode=target.mode, path_parameters=pinned or None)
    headers = {"Authorization": f"Bearer {fuzz_server.api_key}"}
    cases = 0

    @FUZZ_SETTINGS
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        nonlocal cases
        cases += 1
        # Each answer is checked as it is: a redirect is documented, not followed.
        case.call_and_validate(
            base_url=fuzz_server.url,
            headers=headers,
            checks=CHECKS,
            timeout=10,
            allow_redirects=False,
        )

    try:
        fuzz()
    finally:
        tally.add(f"fuzz cases: {target.method} {target.path}", cases)
        tally.add("fuzz cases: all", cases)
    assert cases > 0


def test_the_fuzzer_catches_a_status_the_document_does_not_promise(
    fuzz_server: RunningServer,
) -> None:
    # The harness itself: with the 404 left out of the document, random ids must fail it.
    document = openapi_document()
    del document["paths"]["/api/v1/prompts/{id}"]["get"]["responses"]["404"]
    operation = schemathesis.openapi.from_dict(document)["/api/v1/prompts/{id}"]["GET"]
    headers = {"Authorization": f"Bearer {fuzz_server.api_key}"}

    @settings(FUZZ_SETTINGS, max_examples=20, phases=[Phase.generate])
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        # Each answer is checked as it is: a redirect is documented, not followed.
        case.call_and_validate(
            base_url=fuzz_server.url,
            headers=headers,
            checks=CHECKS,
            timeout=10,
            allow_redirects=False,
        )

    with pytest.raises(BaseException, match=r"Undocumented (HTTP )?status code"):
        fuzz()
