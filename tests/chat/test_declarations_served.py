"""`inputs`, `tools` and `response_format` in the front matter: checked when indexed (a bad
one makes its file a problem, others still serve), served as written after `updated_at`, and
read by older clients that ignore them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptory import Prompt, PromptClient
from promptory._fields import PROMPT_JSON_KEYS
from support.cli import promptory_in_process
from support.gitrepo import PromptRepo
from support.servers import RunningServer, running_server

TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Find a record.",
        "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
    },
}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}
INPUTS = {"topic": {"type": "string", "required": True, "description": "What to explain"}}

BAD: dict[str, tuple[dict[str, Any], str]] = {
    "bad_tool_schema": (
        {"tools": [{"name": "t", "parameters": {"type": "objekt"}}]},
        "tools[0] (t) parameters is not a valid JSON Schema",
    ),
    "tool_without_name": ({"tools": [{"description": "x"}]}, "tools[0] needs a name"),
    "tool_twice": ({"tools": [TOOL, copy.deepcopy(TOOL)]}, "tool name 'lookup' is declared twice"),
    "bad_response_format": (
        {"response_format": {"type": "object", "properties": {"a": {"type": 5}}}},
        "field 'response_format'",
    ),
    "tools_not_a_list": ({"tools": {"name": "x"}}, "must be a list of mappings"),
    "bad_inputs": ({"inputs": {"topic": {"type": "text"}}}, "has type 'text'"),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, api_key: str) -> Iterator[RunningServer]:
    repo = PromptRepo(tmp_path_factory.mktemp("decl") / "repo")
    repo.write_prompt(
        "o",
        "a",
        "explain",
        "Explain {{ topic }}.",
        inputs=INPUTS,
        tools=[TOOL],
        response_format=SCHEMA,
    )
    for name, (fields, _) in BAD.items():
        repo.write_prompt("o", "a", name, "x", **fields)
    repo.commit()
    with running_server(repo, api_key) as server:
        yield server


def test_declarations_are_served_as_written_after_updated_at(served: RunningServer) -> None:
    with served.client() as client:
        data = client.get("/api/v1/prompts/by-name/o/a/explain").json()
    assert list(data) == list(PROMPT_JSON_KEYS)
    assert list(data)[-3:] == ["inputs", "tools", "response_format"]
    assert list(data).index("updated_at") == len(data) - 4
    assert (data["inputs"], data["tools"], data["response_format"]) == (INPUTS, [TOOL], SCHEMA)


def test_a_prompt_without_them_serves_empty_values(served: RunningServer) -> None:
    with PromptClient(served.url, served.api_key) as client:
        listed = [p for p in client.list_prompts("o", "a") if p.name == "explain"]
        assert listed
    repo_prompt = Prompt.from_api({"id": "x", "name": "n", "body": "b"})
    assert (repo_prompt.inputs, repo_prompt.tools, repo_prompt.response_format) == ({}, [], None)


def test_the_sdk_reads_them_and_strict_uses_the_inputs(served: RunningServer) -> None:
    with PromptClient(served.url, served.api_key) as client:
        prompt = client.get_by_name("o", "a", "explain")
    assert prompt.tools == [TOOL]
    assert prompt.response_format == SCHEMA
    assert prompt.render({"topic": "tides"}, strict=True) == "Explain tides."


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_declaration_is_a_problem_naming_it(served: RunningServer, name: str) -> None:
    with served.client() as client:
        problems = client.get("/api/v1/status").json()["problems"]
        good = client.get("/api/v1/prompts/by-name/o/a/explain")
    [problem] = [p for p in problems if p["path"] == f"o/a/{name}.md"]
    assert BAD[name][1] in problem["message"]
    assert good.status_code == 200


def write(root: Path, relative: str, text: str) -> None:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def test_lint_reports_inputs_used_but_undeclared_and_declared_but_unused(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        "o/a/typed.md",
        "---\nversion: 1.0.0\ninputs:\n  topic: {type: string}\n  tone: {type: string}\n---\n"
        "system:\nExplain {{ topic }} to {{ reader }}.\n"
        "{% for m in history %}\n{{m.role}}:\n{{m.content}}\n{% endfor %}\n",
    )
    result = promptory_in_process("lint", str(tmp_path))
    lines = result.stdout.splitlines()
    assert "o/a/typed.md:3: error: the body reads undeclared variable reader" in lines[0]
    assert "o/a/typed.md:3: warning: declared variable tone never read" in lines[1]
    assert len(lines) == 2
    assert result.returncode == 1


def test_lint_reports_a_bad_tool_schema(tmp_path: Path) -> None:
    write(
        tmp_path,
        "o/a/tooled.md",
        "---\nversion: 1.0.0\ntools:\n  - name: t\n    parameters: {type: 7}\n---\nHi\n",
    )
    result = promptory_in_process("lint", str(tmp_path))
    assert result.returncode == 1
    assert "tools[0] (t) parameters is not a valid JSON Schema" in result.stdout
