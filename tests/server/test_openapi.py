"""/openapi.json describes every route, and live answers match what it documents."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from support.schema import SchemaError, validate
from support.servers import RunningServer

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"


@pytest.fixture(scope="module")
def document(shared_server: RunningServer) -> dict[str, Any]:
    response = httpx.get(f"{shared_server.url}/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_document_is_openapi_3_1_without_authentication(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_document_lists_every_route_and_method_of_the_app(
    document: dict[str, Any], shared_server: RunningServer
) -> None:
    app = shared_server.background.app
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ())
        if method != "HEAD"
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == served


def test_every_path_parameter_is_documented(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for operation in item.values():
            names = set()
            for parameter in operation.get("parameters", []):
                if "$ref" in parameter:
                    parameter = document["components"]["parameters"][
                        parameter["$ref"].split("/")[-1]
                    ]
                if parameter["in"] == "path":
                    names.add(parameter["name"])
            assert names == set(re.findall(r"{(\w+)}", path)), path


def check(document: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    """Assert the response's status is documented for the operation and its body matches."""
    operation = document["paths"][path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, f"{method} {path}: {response.status_code} not documented"
    while "$ref" in documented:
        documented = document["components"]["responses"][documented["$ref"].split("/")[-1]]
    for header in documented.get("headers", {}):
        assert header.lower() in response.headers, f"{header} missing"
    content = documented.get("content")
    if content is None:
        assert response.content == b""
        return
    try:
        validate(document, content["application/json"]["schema"], response.json())
    except SchemaError as exc:
        raise AssertionError(f"{method} {path} {response.status_code}: {exc}") from None


PROMPT = "/api/v1/prompts/{id}"
BY_NAME = "/api/v1/prompts/by-name/{org}/{app}/{name}"
RENDER = "/api/v1/prompts/{id}/render"
LIST = "/api/v1/prompts"


def test_answers_match_the_documented_schemas(
    document: dict[str, Any], shared_server: RunningServer
) -> None:
    with shared_server.client() as client, httpx.Client(base_url=shared_server.url) as anonymous:
        etag = client.get(f"/api/v1/prompts/{MEDITATION_ID}").headers["etag"]
        cases = [
            (PROMPT, "get", client.get(f"/api/v1/prompts/{MEDITATION_ID}")),
            (
                PROMPT,
                "get",
                client.get(f"/api/v1/prompts/{MEDITATION_ID}", headers={"If-None-Match": etag}),
            ),
            (PROMPT, "get", client.get("/api/v1/prompts/nope")),
            (PROMPT, "get", client.get(f"/api/v1/prompts/{MEDITATION_ID}?ref=nope")),
            (PROMPT, "get", anonymous.get(f"/api/v1/prompts/{MEDITATION_ID}")),
            (BY_NAME, "get", client.get("/api/v1/prompts/by-name/myorg/myapp/greeting")),
            (
                BY_NAME,
                "get",
                client.get("/api/v1/prompts/by-name/myorg/myapp/greeting?environment=x"),
            ),
            (BY_NAME, "get", client.get("/api/v1/prompts/by-name/myorg/nope/greeting")),
            (
                RENDER,
                "post",
                client.post(
                    f"/api/v1/prompts/{MEDITATION_ID}/render",
                    json={"variables": {"user": {}, "vision": {}}},
                ),
            ),
            (RENDER, "post", client.post(f"/api/v1/prompts/{MEDITATION_ID}/render", content=b"[")),
            (
                RENDER,
                "post",
                client.post(
                    f"/api/v1/prompts/{MEDITATION_ID}/render", content=b"x" * (1024 * 1024 + 1)
                ),
            ),
            (LIST, "get", client.get("/api/v1/prompts")),
            (LIST, "get", client.get("/api/v1/prompts?environment=bad")),
            ("/api/v1/status", "get", client.get("/api/v1/status")),
            ("/api/v1/status", "get", anonymous.get("/api/v1/status")),
            ("/health", "get", anonymous.get("/health")),
            ("/openapi.json", "get", anonymous.get("/openapi.json")),
        ]
        for path, method, response in cases:
            check(document, path, method, response)


def test_every_error_code_sent_is_in_the_error_schema(document: dict[str, Any]) -> None:
    codes = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"][
        "enum"
    ]
    for code in (
        "UNAUTHORIZED",
        "FORBIDDEN",
        "RATE_LIMITED",
        "REF_NOT_FOUND",
        "INVALID_BODY",
        "RENDER_ERROR",
        "PAYLOAD_TOO_LARGE",
        "NOT_FOUND",
        "METHOD_NOT_ALLOWED",
    ):
        assert code in codes
