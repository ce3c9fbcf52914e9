"""The server's OpenAPI 3.1 document, written by hand to say exactly what the app does.

Rules of this module:

* Every route, parameter, request body, response status, header and schema the app has is
  here, and nothing it does not have: the document is checked by fuzzing the live server,
  so a status code or field missing from it (or promised by it) is a bug on one side.
* Objects the server writes are closed (``additionalProperties: false``) and list every key
  as required: clients may rely on the keys being there, and on nothing else.
* Error codes are listed per status in the error schema's enum, so a client can switch on
  them.
"""

from __future__ import annotations

from typing import Any

from .._fields import PROMPT_JSON_KEYS, json_schema_properties
from .._protocol import ENVIRONMENTS
from .._protocol import ERROR_CODES as PROTOCOL_ERROR_CODES
from .._version import __version__

__all__ = ["ERROR_CODES", "openapi_document"]

#: Every error code the server sends, by HTTP status (shared with the SDK: `_protocol`).
ERROR_CODES: dict[int, tuple[str, ...]] = PROTOCOL_ERROR_CODES


def _nullable_string(description: str) -> dict[str, Any]:
    return {"type": ["string", "null"], "description": description}


def _prompt_properties() -> dict[str, Any]:
    # Derived from the field table (`promptory._fields`), in wire order.
    properties = json_schema_properties()
    assert tuple(properties) == PROMPT_JSON_KEYS
    return properties


def _closed(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


def _schemas() -> dict[str, Any]:
    prompt = _prompt_properties()
    meta = {key: value for key, value in prompt.items() if key != "body"}
    problem = _closed({"path": {"type": "string"}, "message": {"type": "string"}})
    return {
        "Prompt": _closed(prompt, description="A prompt, keys in this order."),
        "PromptMeta": _closed(meta, description="A prompt without its body."),
        "PromptList": _closed(
            {
                "prompts": {"type": "array", "items": {"$ref": "#/components/schemas/Prompt"}},
                "count": {"type": "integer", "minimum": 0},
                "commit": _nullable_string("The commit served."),
            }
        ),
        "RenderRequest": {
            "type": "object",
            "properties": {
                "variables": {
                    "type": ["object", "null"],
                    "description": "Values the template reads, by name. Absent or null: none.",
                }
            },
            "description": "Other keys are ignored. An empty body means no variables.",
        },
        "RenderResult": _closed(
            {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "rendered_body": {"type": "string"},
                "meta": {"$ref": "#/components/schemas/PromptMeta"},
                "model": {"type": "object"},
                "messages": {
                    "type": "array",
                    "description": "The rendered chat messages, in order (README, 'Chat "
                    "prompts'); one message for a body without role lines.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "role": {"type": "string"},
                            "content": {"type": ["string", "null"]},
                        },
                        "required": ["role"],
                    },
                },
            }
        ),
        "Status": _closed(
            {
                "commit": _nullable_string("The commit served (null before the first)."),
                "ref": {"type": "string", "description": "The ref the server follows."},
                "committed_at": _nullable_string("The commit's time."),
                "files": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Prompt files indexed, in the key's scope.",
                },
                "prompts": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Prompts served, in the key's scope.",
                },
                "problems": {
                    "type": "array",
                    "items": problem,
                    "description": "Files not served, and why; and served files whose id "
                    "a file of another app also claims.",
                },
            }
        ),
        "Health": _closed(
            {
                "status": {"type": "string", "enum": ["ok"]},
                "commit": _nullable_string("The commit served."),
                "prompts": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Prompt files indexed at that commit.",
                },
            }
        ),
        "History": _closed(
            {
                "id": {"type": "string"},
                "path": {"type": "string", "description": "The prompt's file."},
                "commit": {"type": "string", "description": "The commit the walk started at."},
                "revisions": {
                    "type": "array",
                    "items": _closed(
                        {
                            "sha": {"type": "string"},
                            "author": {"type": "string"},
                            "email": {"type": "string"},
                            "date": {"type": "string", "description": "Author time, ISO 8601."},
                            "message": {"type": "string"},
                            "version": _nullable_string(
                                "The version after the commit; null if it deleted the file."
                            ),
                        }
                    ),
                    "description": "Commits that changed the file, newest first (first "
                    "parents; renames not followed).",
                },
                "truncated": {
                    "type": "boolean",
                    "description": "More commits may have changed the file: raise limit "
                    "(at most 200) or ask from an older ref.",
                },
            }
        ),
        "Diff": _closed(
            {
                "id": {"type": "string"},
                "path": {"type": "string"},
                "from": {"$ref": "#/components/schemas/DiffSide"},
                "to": {"$ref": "#/components/schemas/DiffSide"},
                "fields": {
                    "type": "array",
                    "items": _closed(
                        {"field": {"type": "string"}, "from": {}, "to": {}},
                    ),
                    "description": "Front matter fields that differ (null: absent).",
                },
                "front_matter_diff": {"type": "string", "description": "Unified diff."},
                "body_diff": {"type": "string", "description": "Unified diff."},
            }
        ),
        "DiffSide": _closed(
            {
                "sha": {"type": "string"},
                "version": _nullable_string("The version there, if readable."),
                "exists": {"type": "boolean", "description": "Whether the file is there."},
            }
        ),
        "Error": _closed(
            {
                "error": _closed(
                    {
                        "code": {
                            "type": "string",
                            "enum": [code for codes in ERROR_CODES.values() for code in codes],
                        },
                        "message": {"type": "string"},
                    }
                )
            }
        ),
    }


def _error(description: str, status: int, **headers: Any) -> dict[str, Any]:
    codes = ", ".join(ERROR_CODES[status])
    response: dict[str, Any] = {
        "description": f"{description} (code: {codes})",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        response["headers"] = headers
    return response


_CACHE_HEADERS = {
    "ETag": {
        "description": 'Strong ETag, e.g. "1.2.0-0123456789abcdef".',
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "private, max-age=60, stale-while-revalidate=300; or, for a commit "
        "id or tag given as ref: private, max-age=31536000, immutable.",
        "schema": {"type": "string"},
    },
}

_RESPONSES: dict[str, Any] = {
    "InvalidRequest": _error("Bad request", 400),
    "Unauthorized": _error(
        "Missing or unknown API key",
        401,
        **{"WWW-Authenticate": {"schema": {"type": "string"}}},
    ),
    "Forbidden": _error("The API key is scoped to another org or app", 403),
    "NotFound": _error("Not found", 404),
    "PayloadTooLarge": _error("Request body over 1 MiB", 413),
    "RateLimited": _error(
        "Too many requests for this API key",
        429,
        **{
            "Retry-After": {
                "description": "Seconds until the next request is allowed.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    ),
    "NotModified": {
        "description": "The client's copy (If-None-Match) is current; no body.",
        "headers": _CACHE_HEADERS,
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _parameters() -> dict[str, Any]:
    def path(name: str, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "path",
            "required": True,
            "description": description,
            "schema": {"type": "string"},
        }

    def query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": description + " An empty value counts as not given.",
            "schema": schema,
        }

    return {
        "PromptId": path("id", "The prompt's UUID."),
        "Org": path("org", "Organization name."),
        "App": path("app", "Application name."),
        "Name": path("name", "Prompt name."),
        "Environment": query(
            "environment",
            "Only this environment. Without it, by-name gives the most promoted active "
            "variant: production, else staging, else development.",
            # "" is accepted and means not given, so the schema admits it.
            {"type": "string", "enum": ["", *ENVIRONMENTS]},
        ),
        "Ref": query(
            "ref",
            "Serve from a tag or commit id (7 to 40 hex digits) that the served ref holds "
            "in its history, or the served ref by name, instead of the current commit.",
            {"type": "string"},
        ),
        "IfNoneMatch": {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "ETags of the client's copies (RFC 9110: lists, W/, *).",
            "schema": {"type": "string"},
        },
    }


def _prompt_get(summary: str, parameters: list[dict[str, Any]], *, bad_request: bool) -> Any:
    responses: dict[str, Any] = {
        "200": {
            "description": "The prompt.",
            "headers": _CACHE_HEADERS,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Prompt"}}},
        },
        "304": _ref("NotModified"),
    }
    if bad_request:
        responses["400"] = _ref("InvalidRequest")
    responses.update(
        {
            "401": _ref("Unauthorized"),
            "403": _ref("Forbidden"),
            "404": _ref("NotFound"),
            "429": _ref("RateLimited"),
        }
    )
    return {"summary": summary, "parameters": parameters, "responses": responses}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the server, as a new dict."""
    json_of = {
        name: {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
        for name in ("PromptList", "RenderResult", "Status", "Health", "History", "Diff")
    }
    paths: dict[str, Any] = {
        "/api/v1/prompts": {
            "get": {
                "operationId": "listPrompts",
                "summary": "List the prompts the key may read, sorted by org, app, name and "
                "environment.",
                "parameters": [
                    {
                        "name": "org",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Only this org. An empty value counts as not given.",
                    },
                    {
                        "name": "app",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Only this app. An empty value counts as not given.",
                    },
                    _param("Environment"),
                    {
                        "name": "tag",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Only prompts with this tag. An empty value counts as "
                        "not given.",
                    },
                    _param("Ref"),
                ],
                "responses": {
                    "200": {"description": "The prompts.", "content": json_of["PromptList"]},
                    "400": _ref("InvalidRequest"),
                    "401": _ref("Unauthorized"),
                    "403": _ref("Forbidden"),
                    "404": _ref("NotFound"),
                    "429": _ref("RateLimited"),
                },
            }
        },
        "/api/v1/prompts/{id}": {
            "get": {
                "operationId": "getPrompt",
                **_prompt_get(
                    "Get a prompt by id (inactive prompts included).",
                    [_param("PromptId"), _param("Ref"), _param("IfNoneMatch")],
                    bad_request=False,
                ),
            }
        },
        "/api/v1/prompts/by-name/{org}/{app}/{name}": {
            "get": {
                "operationId": "getPromptByName",
                **_prompt_get(
                    "Get an active prompt by org, app and name.",
                    [
                        _param("Org"),
                        _param("App"),
                        _param("Name"),
                        _param("Environment"),
                        _param("Ref"),
                        _param("IfNoneMatch"),
                    ],
                    bad_request=True,
                ),
            }
        },
        "/api/v1/prompts/{id}/render": {
            "post": {
                "operationId": "renderPrompt",
                "summary": "Render a prompt with variables, includes resolved.",
                "parameters": [_param("PromptId"), _param("Ref")],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/RenderRequest"}
                        }
                    },
                },
                "responses": {
                    "200": {"description": "Rendered.", "content": json_of["RenderResult"]},
                    "400": _ref("InvalidRequest"),
                    "401": _ref("Unauthorized"),
                    "403": _ref("Forbidden"),
                    "404": _ref("NotFound"),
                    "413": _ref("PayloadTooLarge"),
                    "429": _ref("RateLimited"),
                },
            }
        },
        "/api/v1/prompts/{id}/history": {
            "get": {
                "operationId": "getPromptHistory",
                "summary": "The commits that changed a prompt's file, newest first.",
                "parameters": [
                    _param("PromptId"),
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "How many commits, 1 to 200 (default 50). An empty "
                        "value counts as not given.",
                        "schema": {"type": "string", "pattern": "^([0-9]*)$"},
                    },
                    _param("Ref"),
                ],
                "responses": {
                    "200": {"description": "The history.", "content": json_of["History"]},
                    "400": _ref("InvalidRequest"),
                    "401": _ref("Unauthorized"),
                    "403": _ref("Forbidden"),
                    "404": _ref("NotFound"),
                    "429": _ref("RateLimited"),
                },
            }
        },
        "/api/v1/prompts/{id}/diff": {
            "get": {
                "operationId": "getPromptDiff",
                "summary": "How a prompt's file differs between two commits: front matter "
                "fields, front matter text and body.",
                "parameters": [
                    _param("PromptId"),
                    {
                        "name": "from",
                        "in": "query",
                        "required": True,
                        "description": "The older commit id, tag or branch.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "to",
                        "in": "query",
                        "required": False,
                        "description": "The newer commit id, tag or branch (default: the "
                        "commit served, or ref). An empty value counts as not given.",
                        "schema": {"type": "string"},
                    },
                    _param("Ref"),
                ],
                "responses": {
                    "200": {"description": "The diff.", "content": json_of["Diff"]},
                    "400": _ref("InvalidRequest"),
                    "401": _ref("Unauthorized"),
                    "403": _ref("Forbidden"),
                    "404": _ref("NotFound"),
                    "429": _ref("RateLimited"),
                },
            }
        },
        "/api/v1/status": {
            "get": {
                "operationId": "getStatus",
                "summary": "The commit served and the files that are not served, with why.",
                "responses": {
                    "200": {"description": "Status.", "content": json_of["Status"]},
                    "401": _ref("Unauthorized"),
                    "429": _ref("RateLimited"),
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "getHealth",
                "summary": "Liveness, without authentication.",
                "security": [],
                "responses": {"200": {"description": "Alive.", "content": json_of["Health"]}},
            }
        },
        "/ui": {
            "get": {
                "operationId": "openWebUI",
                "summary": "The web UI (HTML pages under /ui/, signed in with an API key): a "
                "redirect to its first page.",
                "security": [],
                "responses": {
                    "303": {
                        "description": "See /ui/apps (which sends to /ui/login without a session).",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/api/v1/watch": {
            "get": {
                "operationId": "watch",
                "summary": "Server-Sent Events: a 'hello' event, then one 'commit' event per "
                "served commit (id: the sha; data: the prompts in the key's scope whose answer "
                "changed), heartbeat comments, and 'reset' when Last-Event-ID is too old.",
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Resume after this commit.",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "An event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "401": _ref("Unauthorized"),
                    "429": _ref("RateLimited"),
                },
            }
        },
        "/api/v1/webhooks/git": {
            "post": {
                "operationId": "gitWebhook",
                "summary": "A push webhook (GitHub X-Hub-Signature-256, GitLab X-Gitlab-Token, "
                "Gitea/Forgejo X-Gitea-Signature): fetch the followed remote now.",
                "security": [],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "202": {
                        "description": "Accepted: a fetch follows.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "401": _ref("Unauthorized"),
                    "409": {
                        "description": "The server does not follow a remote.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "413": _ref("PayloadTooLarge"),
                },
            }
        },
        "/ready": {
            "get": {
                "operationId": "getReady",
                "summary": "Readiness: 200 once a commit is served (with the sha and, when "
                "following a remote, the last fetch and the lag), else 503.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Ready.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "503": {
                        "description": "No commit served yet.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Prometheus metrics: loopback clients and unscoped keys (or anyone "
                "with --metrics-public).",
                # A key is needed only from another host: from loopback none is.
                "security": [{"bearer": []}, {}],
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _ref("Unauthorized"),
                    "403": _ref("Forbidden"),
                    "429": _ref("RateLimited"),
                },
            }
        },
        "/mcp": _mcp_operations(),
        "/openapi.json": {
            "get": {
                "operationId": "getOpenAPI",
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "promptory server",
            "version": __version__,
            "description": "Prompts served straight from a git repository. Errors are "
            '{"error": {"code", "message"}}.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: pm_live_... or pm_test_...",
                }
            },
            "parameters": _parameters(),
            "responses": _RESPONSES,
            "schemas": _schemas(),
        },
    }


def _mcp_operations() -> dict[str, Any]:
    """``/mcp``: the Model Context Protocol over streamable HTTP (JSON-RPC messages,
    stateless, POST only: no server-to-client stream); the same key auth as the API."""
    jsonrpc = {"application/json": {"schema": {"type": "object"}}}
    return {
        "post": {
            "operationId": "mcpPost",
            "summary": "An MCP JSON-RPC message (prompts/list, prompts/get...), answered in JSON.",
            "responses": {
                "200": {"description": "A JSON-RPC answer.", "content": jsonrpc},
                "202": {"description": "A notification, accepted."},
                "400": {"description": "Not a valid MCP message (the MCP SDK's own answer)."},
                "401": _ref("Unauthorized"),
                "404": {"description": "An unknown MCP session."},
                "406": {"description": "The Accept header does not allow JSON."},
                "413": {"description": "The message is too large."},
                "415": {"description": "The body is not JSON."},
                "429": _ref("RateLimited"),
            },
        }
    }
