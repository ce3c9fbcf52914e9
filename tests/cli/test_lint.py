"""`promptory lint`: every problem a prompt repository can have, as file:line messages.

The command runs in this process (`promptory_in_process`); the first two tests run it for
real as a child process.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from promptory.server.commits import example_prompts
from support.cli import promptory_command, promptory_in_process


def lint(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return promptory_in_process("lint", str(path), *args)


def write(root: Path, relative: str, text: str) -> None:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def prompt(body: str, **front: str) -> str:
    fields = {"version": "1.0.0", **front}
    return "---\n" + "".join(f"{k}: {v}\n" for k, v in fields.items()) + "---\n" + body


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A folder holding the example prompts (a working tree; lint needs no commit)."""
    for relative, data in example_prompts().items():
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return tmp_path


def test_the_examples_are_clean(repo: Path) -> None:
    result = promptory_command("lint", str(repo))
    assert result.returncode == 0, result.stdout
    assert result.stdout == ""
    assert "0 errors, 0 warnings" in result.stderr


def test_bad_yaml_is_an_error_with_its_line(repo: Path) -> None:
    write(repo, "myorg/myapp/bad.md", "---\nversion: 1.0.0\ntags: [a, b\n---\nbody\n")
    result = promptory_command("lint", str(repo))
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith("myorg/myapp/bad.md:")
    assert ": error: " in line


def test_wrong_type_names_the_field(repo: Path) -> None:
    write(repo, "myorg/myapp/typed.md", prompt("x", tags="5", active="maybe"))
    result = lint(repo)
    assert result.returncode == 1
    assert "myorg/myapp/typed.md:" in result.stdout
    assert "tags" in result.stdout or "active" in result.stdout


def test_jinja_syntax_error_points_at_the_file_line(repo: Path) -> None:
    write(repo, "myorg/myapp/syntax.md", prompt("line one\n{% if %}\n"))
    result = lint(repo)
    assert result.returncode == 1
    assert result.stdout.startswith("myorg/myapp/syntax.md:5: error: template syntax error")


def test_duplicate_ids_and_names_are_errors(repo: Path) -> None:
    same_id = "id: 550e8400-e29b-41d4-a716-446655440000"
    write(repo, "myorg/myapp/zz_copy.md", "---\n" + same_id + "\nversion: 1.0.0\n---\nx\n")
    write(repo, "myorg/myapp/sub/greeting.md", prompt("again", environment="production"))
    result = lint(repo)
    assert result.returncode == 1
    # The server's own verdicts and messages: the first path in byte order is served.
    assert (
        "myorg/myapp/zz_copy.md:1: error: duplicate id 550e8400-e29b-41d4-a716-446655440000: "
        "myorg/myapp/meditation_script_relax.md is served instead"
    ) in result.stdout
    assert (
        "myorg/myapp/sub/greeting.md:1: error: duplicate prompt myorg/myapp/greeting "
        "(production): myorg/myapp/greeting.md is served instead"
    ) in result.stdout


def test_include_problems_are_errors(repo: Path) -> None:
    write(repo, "myorg/myapp/a.md", prompt('{% include "b" %}'))
    write(repo, "myorg/myapp/b.md", prompt('{% include "a" %}'))
    write(repo, "myorg/myapp/missing.md", prompt('{% include "nowhere" %}'))
    write(repo, "myorg/myapp/other_app.md", prompt('{% include "../other/x" %}'))
    write(repo, "myorg/myapp/dynamic.md", prompt("{% include which %}"))
    result = lint(repo)
    assert result.returncode == 1
    out = result.stdout
    assert "include cycle: a -> b -> a" in out or "include cycle: b -> a -> b" in out
    assert out.count("include cycle") == 2  # each prompt of the cycle fails to render
    assert "includes 'nowhere', which is not an active prompt of myorg/myapp" in out
    assert "includes '../other/x'" in out
    assert (
        "myorg/myapp/dynamic.md:4: error: prompt myorg/myapp/dynamic includes a template "
        "whose name is computed at render time"
    ) in out


def test_undeclared_and_unused_variables(repo: Path) -> None:
    write(
        repo,
        "myorg/myapp/vars.md",
        "---\nversion: 1.0.0\nvariables: [name, unused]\n---\nHi {{ name }} {{ surprise }}\n",
    )
    result = lint(repo)
    assert result.returncode == 1
    assert (
        "myorg/myapp/vars.md:3: error: the body reads undeclared variable surprise" in result.stdout
    )
    assert "myorg/myapp/vars.md:3: warning: declared variable unused never read" in result.stdout


def test_warnings_alone_pass_unless_strict(repo: Path) -> None:
    write(repo, "myorg/myapp/extra.md", prompt("x", colour="blue"))
    result = lint(repo)
    assert result.returncode == 0
    assert "myorg/myapp/extra.md:3: warning: unknown front-matter key 'colour'" in result.stdout
    assert lint(repo, "--strict").returncode == 1


def test_files_outside_the_layout_are_not_prompts(repo: Path) -> None:
    write(repo, "README.md", "# not a prompt\n")
    write(repo, "myorg/notes.md", "not a prompt either\n")
    write(repo, ".github/x/y/z.md", "hidden\n")
    assert lint(repo).returncode == 0


def test_single_app_mode(tmp_path: Path) -> None:
    write(tmp_path, "greeting.md", prompt("Hi"))
    write(tmp_path, "deep/other.md", prompt('{% include "greeting" %}'))
    result = lint(tmp_path, "--org", "acme", "--app", "bot")
    assert result.returncode == 0, result.stdout


def test_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    assert lint(tmp_path / "nope").returncode == 2
