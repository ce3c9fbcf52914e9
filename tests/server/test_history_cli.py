"""``promptory log``, ``promptory diff`` and ``--ref`` on get/render/list/pull, run for real
against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.servers import RunningServer

PATH = "myorg/myapp/greeting.md"


def promptory(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTORY_")}
    env["PROMPTORY_BASE_URL"] = server.url
    env["PROMPTORY_API_KEY"] = server.api_key
    return subprocess.run(
        [sys.executable, "-m", "promptory", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _bump(server: RunningServer) -> tuple[str, str]:
    repo = server.repo
    first = repo.head
    text = (repo.path / PATH).read_text()
    repo.write(PATH, text.replace("version: 2.0.0", "version: 2.1.0").replace("Hey", "Hello"))
    second = repo.commit("Greeting 2.1.0\n\nWarmer.")
    server.wait_for_commit(second)
    return first, second


def test_log_lists_sha_date_version_author_and_subject(server: RunningServer) -> None:
    first, second = _bump(server)
    result = promptory(server, "log", "myorg/myapp/greeting")
    assert result.returncode == 0, result.stderr
    newest, oldest = result.stdout.splitlines()
    assert newest.startswith(second[:12])
    assert "2.1.0" in newest
    assert "Prompt Author" in newest
    assert newest.endswith("Greeting 2.1.0")
    assert oldest.startswith(first[:12])
    data = json.loads(promptory(server, "log", "myorg/myapp/greeting", "--json").stdout)
    assert [r["sha"] for r in data["revisions"]] == [second, first]


def test_diff_prints_fields_and_unified_diffs(server: RunningServer) -> None:
    first, second = _bump(server)
    result = promptory(server, "diff", "myorg/myapp/greeting", first[:10])
    assert result.returncode == 0, result.stderr
    assert f"{first[:12]} (2.0.0) -> {second[:12]} (2.1.0)" in result.stdout
    assert '# version: "2.0.0" -> "2.1.0"' in result.stdout
    assert "-version: 2.0.0" in result.stdout
    assert "+{% if formal %}Dear{% else %}Hello" in result.stdout
    same = promptory(server, "diff", "myorg/myapp/greeting", second, second)
    assert "# no difference" in same.stdout


def test_diff_of_an_unknown_ref_names_it(server: RunningServer) -> None:
    result = promptory(server, "diff", "myorg/myapp/greeting", "nosuchtag")
    assert result.returncode == 1
    assert "nosuchtag" in result.stderr
    assert "HTTP 404" in result.stderr


def test_ref_reads_prompts_as_they_were(server: RunningServer, tmp_path: Path) -> None:
    first, _ = _bump(server)
    got = promptory(server, "get", "myorg/myapp/greeting", "--ref", first)
    assert got.returncode == 0, got.stderr
    assert "v2.0.0" in got.stdout
    rendered = promptory(server, "render", "myorg/myapp/greeting", "--ref", first)
    assert rendered.stdout.startswith("Hey")
    listed = promptory(server, "list", "myorg/myapp", "--ref", first, "--json")
    versions = {p["name"]: p["version"] for p in json.loads(listed.stdout)}
    assert versions["greeting"] == "2.0.0"
    out = tmp_path / "snapshot.json"
    pulled = promptory(server, "pull", "myorg/myapp", "--ref", first, "--out", str(out))
    assert pulled.returncode == 0, pulled.stderr
    assert '"version": "2.0.0"' in out.read_text() or '"version":"2.0.0"' in out.read_text()
