"""Adding a prompt field is one edit: one `Field` appended to `promptory._fields.PROMPT_FIELDS`
reaches the wire order, the SDK's checks of an answer, the server's front matter and records,
and the OpenAPI schema. Shown on a copy of the package with exactly that one line added.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import promptory
from promptory._fields import PROMPT_FIELDS, PROMPT_JSON_KEYS, answer_problem
from promptory.server import openapi

NEW_FIELD = '    Field("voice", "str", nullable=True, description="A voice to read it with."),\n'

PROBE = textwrap.dedent(
    """
    import json
    from promptory import MalformedResponseError, Prompt
    from promptory._fields import PROMPT_JSON_KEYS
    from promptory.server.files import KNOWN_KEYS, parse_prompt_file
    from promptory.server.openapi import openapi_document

    text = b"---\\nversion: 1.0.0\\nvoice: calm\\n---\\nHello\\n"
    file = parse_prompt_file("greeting.md", text, org="o", app="a")
    answer = {"id": "p", "name": "greeting", "body": "Hello", "voice": "calm"}
    try:
        Prompt.from_api(dict(answer, voice=3))
        refused = False
    except MalformedResponseError:
        refused = True
    schema = openapi_document()["components"]["schemas"]["Prompt"]["properties"]
    print(json.dumps({
        "last_key": PROMPT_JSON_KEYS[-1],
        "known": "voice" in KNOWN_KEYS,
        "front_matter": dict(file.extra).get("voice"),
        "in_meta": Prompt.from_api(answer).meta["voice"],
        "wrong_type_refused": refused,
        "schema": schema["voice"],
    }))
    """
)


def test_one_field_line_reaches_wire_sdk_server_and_schema(tmp_path: Path) -> None:
    package = Path(promptory.__file__).parent
    copy = tmp_path / "src" / "promptory"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    table = copy / "_fields.py"
    source = table.read_text(encoding="utf-8")
    anchor = "    ),\n)\n\n#: The keys of a prompt's JSON on the wire"
    assert source.count(anchor) == 1
    table.write_text(
        source.replace(
            anchor, "    ),\n" + NEW_FIELD + ")\n\n#: The keys of a prompt's JSON on the wire"
        ),
        encoding="utf-8",
    )

    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(tmp_path / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout)
    assert seen == {
        "last_key": "voice",
        "known": True,
        "front_matter": "calm",
        "in_meta": "calm",
        "wrong_type_refused": True,
        "schema": {"type": ["string", "null"], "description": "A voice to read it with."},
    }


def test_the_table_is_what_every_side_uses() -> None:
    assert tuple(f.name for f in PROMPT_FIELDS) == PROMPT_JSON_KEYS
    schema = openapi.openapi_document()["components"]["schemas"]["Prompt"]
    assert tuple(schema["properties"]) == PROMPT_JSON_KEYS
    assert answer_problem({"id": "p", "name": "n", "body": "b", "tags": ["x", 1]}) == (
        "field 'tags' is an array, expected a list of strings"
    )
