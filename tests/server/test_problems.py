"""Bad files are skipped and reported in /api/v1/status; the good ones are still served."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from support.gitrepo import PromptRepo
from support.servers import RunningServer

SAME_ID = "11111111-2222-4333-8444-555555555555"


def _bad_yaml(repo: PromptRepo) -> str:
    repo.write("o/a/bad.md", "---\nversion: 1\nmodel: {default: x\n---\nbody\n")
    return "invalid YAML in front matter on line"


def _wrong_type(repo: PromptRepo) -> str:
    repo.write("o/a/bad.md", "---\nversion: 1\nactive: maybe\n---\nbody\n")
    return "field 'active' (line 3): must be true or false, not a string"


def _bad_version(repo: PromptRepo) -> str:
    repo.write("o/a/bad.md", '---\nversion: "1.0 final"\n---\nbody\n')
    return "field 'version' (line 2)"


def _no_version(repo: PromptRepo) -> str:
    repo.write("o/a/bad.md", "---\nname: bad\n---\nbody\n")
    return "field 'version' is required"


def _jinja_syntax(repo: PromptRepo) -> str:
    repo.write("o/a/bad.md", "---\nversion: 1\n---\nHello {{ name \n")
    return "template syntax error on line 4"


def _not_utf8(repo: PromptRepo) -> str:
    repo.write("o/a/bad.md", b"---\nversion: 1\n---\ncaf\xe9\n")
    return "not UTF-8"


def _binary(repo: PromptRepo) -> str:
    repo.write("o/a/bad.md", b"---\nversion: 1\n---\n\x00\x01\x02")
    return "binary"


def _too_large(repo: PromptRepo) -> str:
    repo.write("o/a/bad.md", "---\nversion: 1\n---\n" + "x" * (1024 * 1024))
    return "over the limit of 1,048,576 bytes"


def _symlink(repo: PromptRepo) -> str:
    repo.symlink("o/a/bad.md", "good.md")
    return "symbolic links are not served"


def _bad_file_name(repo: PromptRepo) -> str:
    repo.write("o/a/bad name!.md", "---\nversion: 1\n---\nbody\n")
    return "not a valid prompt name"


def _duplicate_id(repo: PromptRepo) -> str:
    repo.write_prompt("o", "a", "zz_second", path="o/a/zz_second.md", id=SAME_ID)
    repo.write_prompt("o", "a", "aa_first", path="o/a/aa_first.md", id=SAME_ID)
    return f"duplicate id {SAME_ID}: o/a/aa_first.md is served instead"


def _duplicate_name(repo: PromptRepo) -> str:
    repo.write_prompt("o", "a", "good", "copy\n", path="o/a/zz_copy.md", name="good")
    return "duplicate prompt o/a/good (development): o/a/good.md is served instead"


BAD_FILES: dict[str, Callable[[PromptRepo], str]] = {
    "bad YAML": _bad_yaml,
    "wrong type": _wrong_type,
    "bad version": _bad_version,
    "no version": _no_version,
    "Jinja syntax error": _jinja_syntax,
    "non-UTF-8": _not_utf8,
    "binary": _binary,
    "over 1 MiB": _too_large,
    "symlink": _symlink,
    "bad file name": _bad_file_name,
    "duplicate id": _duplicate_id,
    "duplicate name and environment": _duplicate_name,
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_is_skipped_reported_and_the_rest_served(
    tmp_path_factory: pytest.TempPathFactory,
    start_server: Callable[..., RunningServer],
    kind: str,
) -> None:
    repo = PromptRepo(tmp_path_factory.mktemp("bad") / "repo")
    repo.write_prompt("o", "a", "good", "I am fine.\n")
    expected = BAD_FILES[kind](repo)
    repo.commit()
    server = start_server(repo)
    with server.client() as client:
        status = client.get("/api/v1/status").json()
        good = client.get("/api/v1/prompts/by-name/o/a/good")
    [problem] = status["problems"]
    assert expected in problem["message"]
    assert problem["path"].startswith("o/a/")
    assert good.status_code == 200
    assert good.json()["body"] == "I am fine.\n"
    assert status["prompts"] == (2 if kind == "duplicate id" else 1)


def test_a_bad_file_answers_404_by_name(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> None:
    prompt_repo.write("myorg/myapp/broken.md", "---\nversion: 1\ntags: x\n---\n")
    prompt_repo.commit()
    server = start_server(prompt_repo)
    with server.client() as client:
        response = client.get("/api/v1/prompts/by-name/myorg/myapp/broken")
    assert response.status_code == 404


def test_fixing_a_bad_file_serves_it_and_clears_the_problem(server: RunningServer) -> None:
    repo = server.repo
    repo.write("myorg/myapp/late.md", "---\nversion: [\n---\nLate\n")
    server.wait_for_commit(repo.commit())
    with server.client() as client:
        assert len(client.get("/api/v1/status").json()["problems"]) == 1
        repo.write("myorg/myapp/late.md", "---\nversion: 1\n---\nLate\n")
        server.wait_for_commit(repo.commit())
        assert client.get("/api/v1/status").json()["problems"] == []
        assert client.get("/api/v1/prompts/by-name/myorg/myapp/late").status_code == 200


def test_problems_are_not_listed_for_a_key_scoped_elsewhere(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> None:
    from promptory.server.keys import KeyRecord, generate_key

    prompt_repo.write("myorg/myapp/broken.md", "---\nversion: 1\ntags: x\n---\n")
    prompt_repo.commit()
    scoped = generate_key()
    server = start_server(prompt_repo, keys=[KeyRecord.for_key(scoped, scope="futureself")])
    with server.client(scoped) as client:
        assert client.get("/api/v1/status").json()["problems"] == []
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_key_scoped_to_the_app_sees_its_problems(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> None:
    from promptory.server.keys import KeyRecord, generate_key

    prompt_repo.write("myorg/myapp/binary.md", b"---\x00")
    prompt_repo.write("myorg/myapp/broken.md", "---\nversion: 1\ntags: x\n---\n")
    prompt_repo.commit()
    scoped = generate_key()
    server = start_server(prompt_repo, keys=[KeyRecord.for_key(scoped, scope="myorg/myapp")])
    with server.client(scoped) as client:
        problems = client.get("/api/v1/status").json()["problems"]
    assert [p["path"] for p in problems] == ["myorg/myapp/binary.md", "myorg/myapp/broken.md"]
