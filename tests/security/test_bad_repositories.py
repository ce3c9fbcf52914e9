"""Bad repositories: every bad file is skipped and reported, everything else is still served,
and the server keeps following new commits.

`tests/server/test_problems.py` covers one bad file of each common kind (bad YAML, wrong
types, no version, Jinja syntax, non-UTF-8 content, binary, over 1 MiB, a symlink inside the
repository, a bad file name, duplicate ids and names). This file adds what a hostile or
careless repository holds beyond that: symlinks out of the repository, YAML anchors that
expand to billions of values or to themselves, file names that are not UTF-8, submodules and
directories named like prompts, duplicates across directories and apps, and a tree of many
bad files next to many good ones.

Each server runs in a memory-capped child (`isolation.IsolatedServer`) and prepares records
in the background as a deployed server does: a file that hangs or exhausts the parser fails
its test in seconds instead of taking the test run down.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pygit2
import pytest

from promptory.server.keys import generate_key
from support.gitrepo import PromptRepo

from .conftest import Tally
from .isolation import IsolatedServer, run_module

CANARY = "CANARY-51c0e2-outside-the-repository"
SAME_ID = "7e57ab1e-0000-4000-8000-00000000d00d"
#: Seconds a child may take to start: a healthy one needs well under one, but on a loaded
#: machine (other test workers beside it) importing the server can take several.
START_TIMEOUT = 30.0
#: Seconds an answer may take: a server stuck on a bad file gives none.
ANSWER_TIMEOUT = 5.0

ALIASES = re.compile(r"alias|anchor|expan|too (large|many|deep)|nest", re.IGNORECASE)


# --- making bad files ---------------------------------------------------------------------------


def commit_with_raw_name(repo: PromptRepo, directory: str, raw_name: bytes, data: bytes) -> str:
    """Commit a file whose name is `raw_name` (bytes git allows, UTF-8 or not) in
    `directory`, on top of the current commit; the rest of the tree is kept."""
    git = repo.repo
    head = git.head.peel(pygit2.Commit)
    blob = git.create_blob(data)

    def rebuilt(tree: Any, parts: list[str]) -> pygit2.Oid:
        if not parts:
            # Written by hand: pygit2's tree builder takes names as str only.
            entries = [(entry.raw_name, entry.filemode, entry.id.raw) for entry in tree]
            entries.append((raw_name, pygit2.enums.FileMode.BLOB, blob.raw))
            entries.sort()
            raw = b"".join(b"%o %s\x00%s" % (int(m), n, oid) for n, m, oid in entries)
            return git.odb.write(pygit2.enums.ObjectType.TREE, raw)
        builder = git.TreeBuilder(tree)
        child = rebuilt(tree[parts[0]], parts[1:])
        builder.insert(parts[0], child, pygit2.enums.FileMode.TREE)
        return builder.write()

    root = rebuilt(head.tree, directory.split("/"))
    signature = repo.signature()
    return str(git.create_commit("HEAD", signature, signature, "raw name", root, [head.id]))


def _alias_bomb(top_level: bool) -> bytes:
    """Nine levels of ten aliases each: a few lines that expand to 10**9 values."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    if top_level:
        front = "version: 1\nmodel: &m\n" + "".join(f"  {line}\n" for line in lines)
    else:
        front = "version: 1\nmodel:\n" + "".join(f"  {line}\n" for line in lines)
    return f"---\n{front}---\nboom\n".encode()


@dataclass(frozen=True)
class BadFile:
    """How to put one bad file into a repository, and what its problem says.

    Attributes:
        write: writes (and stages) the file; returns its path as the status reports it (or
            the start of it, for a name that is not UTF-8).
        message: what the problem's message must match.
        raw_name: for a file whose name git stores as bytes that are not UTF-8: the name.
    """

    write: Callable[[PromptRepo], str]
    message: re.Pattern[str]
    raw_name: bytes | None = None


def _text(path: str, text: str | bytes) -> Callable[[PromptRepo], str]:
    def write(repo: PromptRepo) -> str:
        repo.write(path, text)
        return path

    return write


def _symlink(path: str, target: str) -> Callable[[PromptRepo], str]:
    def write(repo: PromptRepo) -> str:
        repo.symlink(path, target)
        return path

    return write


def _duplicate_in_another_directory(repo: PromptRepo) -> str:
    repo.write_prompt("o", "a", "dup", "first\n", path="o/a/x/dup.md")
    repo.write_prompt("o", "a", "dup", "second\n", path="o/a/y/dup.md")
    return "o/a/y/dup.md"


def _duplicate_id_in_another_app(repo: PromptRepo) -> str:
    # The impostor's app sorts first and claims the id a commit later: the owner keeps it.
    repo.write_prompt("o", "b", "owner", "mine\n", id=SAME_ID)
    repo.commit("the owner's prompt")
    repo.write_prompt("o", "a", "impostor", "theirs\n", id=SAME_ID)
    return "o/a/impostor.md"


def _not_utf8_name(repo: PromptRepo) -> str:
    # Committed by `build` with commit_with_raw_name. How the name is shown is the server's
    # choice; it starts with the part that is UTF-8.
    return "o/a/caf"


LATIN1_NAME = b"caf\xe9.md"
SYMLINK_TARGET_OUTSIDE = "../../../outside/secret.md"

BAD_FILES: dict[str, BadFile] = {
    "symlink to an absolute path": BadFile(
        _symlink("o/a/passwd.md", "/etc/passwd"), re.compile("symbolic links are not served")
    ),
    "symlink out of the repository": BadFile(
        _symlink("o/a/escape.md", SYMLINK_TARGET_OUTSIDE),
        re.compile("symbolic links are not served"),
    ),
    "2 MiB file": BadFile(
        _text("o/a/huge.md", "---\nversion: 1\n---\n" + "x" * (2 * 1024 * 1024)),
        re.compile(r"2,097,\d{3} bytes, over the limit of 1,048,576 bytes"),
    ),
    "empty file": BadFile(_text("o/a/empty.md", b""), re.compile("no front matter")),
    "unclosed front matter": BadFile(
        _text("o/a/unclosed.md", "---\nversion: 1\nHello\n"),
        re.compile("front matter is not closed"),
    ),
    "front matter that is a list": BadFile(
        _text("o/a/listed.md", "---\n- version\n- 1\n---\nbody\n"),
        re.compile("front matter must be a mapping"),
    ),
    "python object tag": BadFile(
        _text("o/a/pickled.md", "---\nversion: !!python/object/apply:os.system [id]\n---\nx\n"),
        re.compile("invalid YAML in front matter"),
    ),
    "YAML alias bomb": BadFile(_text("o/a/laughs.md", _alias_bomb(False)), ALIASES),
    "YAML alias bomb at the top level": BadFile(
        _text("o/a/laughs_top.md", _alias_bomb(True)), ALIASES
    ),
    "YAML value that holds itself": BadFile(
        _text("o/a/ouroboros.md", "---\nversion: 1\nmodel: &m {self: *m}\n---\nbody\n"), ALIASES
    ),
    "duplicate name in another directory": BadFile(
        _duplicate_in_another_directory,
        re.compile(re.escape("duplicate prompt o/a/dup (development): o/a/x/dup.md is served")),
    ),
    "duplicate id in another app": BadFile(
        _duplicate_id_in_another_app,
        re.compile(re.escape(f"id {SAME_ID} is held by another app, which claimed it first")),
    ),
    "file name that is not UTF-8": BadFile(
        _not_utf8_name, re.compile("not a valid prompt name"), raw_name=LATIN1_NAME
    ),
}


def build(repo: PromptRepo, kinds: list[str]) -> dict[str, str]:
    """Write the bad files of `kinds` into `repo` and commit; their paths by kind."""
    paths = {kind: BAD_FILES[kind].write(repo) for kind in kinds}
    repo.commit("bad files")
    for kind in kinds:
        raw_name = BAD_FILES[kind].raw_name
        if raw_name is not None:
            data = b"---\nversion: 1\n---\nlatin-1 name\n"
            commit_with_raw_name(repo, "o/a", raw_name, data)
    return paths


def _outside(root: Path) -> None:
    """A directory beside the repository, holding a prompt file with the canary."""
    (root / "outside").mkdir()
    (root / "outside" / "secret.md").write_text(f"---\nversion: 1\n---\n{CANARY}\n")


def _get(server: IsolatedServer, path: str) -> httpx.Response:
    with server.client(timeout=ANSWER_TIMEOUT) as http:
        try:
            return http.get(path)
        except httpx.TimeoutException:
            pytest.fail(f"GET {path}: no answer within {ANSWER_TIMEOUT} s (stuck on a bad file?)")


def _status(server: IsolatedServer) -> dict[str, Any]:
    response = _get(server, "/api/v1/status")
    assert response.status_code == 200, response.text[:300]
    data: dict[str, Any] = response.json()
    assert CANARY not in response.text
    return data


def _start(repo: PromptRepo) -> IsolatedServer:
    return IsolatedServer(
        Path(repo.path),
        generate_key(test=True),
        prepare_in_background=True,
        start_timeout=START_TIMEOUT,
    ).start()


# --- each bad file among the others, next to good ones ----------------------------------------


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_is_skipped_and_reported_and_the_good_ones_served(
    mixed: MixedTree, tally: Tally, kind: str
) -> None:
    # One server over a tree holding every kind (the mixed tree below): a kind that took
    # the index, the other files or the server down would fail here under its own name.
    tally.add("bad repositories: one bad file next to good ones")
    path = mixed.bad_paths[kind]
    good = _get(mixed.server, "/api/v1/prompts/by-name/o/a/good_0")
    status = _status(mixed.server)
    listed = _get(mixed.server, "/api/v1/prompts")
    assert good.status_code == 200
    assert good.json()["body"] == "good 0\n"
    # A file keeping an id another app claims is reported as well; it is served.
    [problem] = [
        problem
        for problem in status["problems"]
        if problem["path"].startswith(path) and "keeps it" not in problem["message"]
    ]
    assert BAD_FILES[kind].message.search(problem["message"]), problem
    assert CANARY not in listed.text


# --- files that look odd but are not problems ---------------------------------------------------


@pytest.fixture
def odd_server(tmp_path: Path) -> Iterator[IsolatedServer]:
    """A server over odd but valid files, and things that are not prompt files at all."""
    _outside(tmp_path)
    repo = PromptRepo(tmp_path / "repo")
    repo.write("o/a/bare.md", "---\nversion: 1\n---")
    repo.write("o/a/crlf.md", "---\r\nversion: 1\r\n---\r\nline one\r\nline two\r\n")
    repo.write_prompt(
        "o", "a", "inner", "inside a directory named clash.md\n", path="o/a/clash.md/inner.md"
    )
    repo.symlink("o/a/linked", "../../../outside")
    sha = repo.commit("odd files")
    index = repo.repo.index
    index.add(
        pygit2.IndexEntry("o/a/submodule.md", pygit2.Oid(hex=sha), pygit2.enums.FileMode.COMMIT)
    )
    index.write()
    repo.commit("a submodule named like a prompt")
    server = _start(repo)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("bare", ""),
        ("crlf", "line one\r\nline two\r\n"),
        ("inner", "inside a directory named clash.md\n"),
    ],
)
def test_odd_but_valid_file_is_served(
    odd_server: IsolatedServer, tally: Tally, name: str, body: str
) -> None:
    tally.add("bad repositories: odd but valid files")
    response = _get(odd_server, f"/api/v1/prompts/by-name/o/a/{name}")
    assert response.status_code == 200
    assert response.json()["body"] == body


def test_submodules_symlinked_directories_and_directories_are_not_prompts(
    odd_server: IsolatedServer,
) -> None:
    status = _status(odd_server)
    listed = _get(odd_server, "/api/v1/prompts").json()
    assert sorted(p["name"] for p in listed["prompts"]) == ["bare", "crlf", "inner"]
    assert status["problems"] == []
    for name in ("submodule", "clash", "linked", "secret"):
        assert _get(odd_server, f"/api/v1/prompts/by-name/o/a/{name}").status_code == 404
    assert CANARY not in json.dumps(listed)


# --- many bad files next to many good ones ------------------------------------------------------

GOOD_COUNT = 10


@dataclass
class MixedTree:
    repo: PromptRepo
    server: IsolatedServer
    bad_paths: dict[str, str]


def _mixed_tree(root: Path) -> Iterator[MixedTree]:
    """Ten good prompts next to one file of every bad kind, and a server over them."""
    _outside(root)
    repo = PromptRepo(root / "repo")
    for number in range(GOOD_COUNT):
        repo.write_prompt("o", "a", f"good_{number}", f"good {number}\n")
    # The common kinds of tests/server/test_problems.py, so the tree holds every kind.
    repo.write("o/a/bad_yaml.md", "---\nversion: 1\nmodel: {default: x\n---\nbody\n")
    repo.write("o/a/binary.md", b"---\nversion: 1\n---\n\x00\x01\x02")
    repo.write("o/a/latin1_body.md", b"---\nversion: 1\n---\ncaf\xe9\n")
    repo.write("o/a/jinja.md", "---\nversion: 1\n---\nHello {{ name \n")
    bad = build(repo, list(BAD_FILES))
    server = _start(repo)
    try:
        yield MixedTree(repo, server, bad)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MixedTree]:
    """The mixed tree, read only."""
    yield from _mixed_tree(tmp_path_factory.mktemp("mixed"))


@pytest.fixture
def fresh_mixed(tmp_path: Path) -> Iterator[MixedTree]:
    """A mixed tree of the test's own, to commit to."""
    yield from _mixed_tree(tmp_path)


def test_every_good_prompt_of_a_mixed_tree_is_served(mixed: MixedTree, tally: Tally) -> None:
    tally.add("bad repositories: good prompts in the mixed tree", GOOD_COUNT)
    bodies = {}
    for number in range(GOOD_COUNT):
        response = _get(mixed.server, f"/api/v1/prompts/by-name/o/a/good_{number}")
        assert response.status_code == 200, number
        bodies[number] = response.json()["body"]
    assert bodies == {number: f"good {number}\n" for number in range(GOOD_COUNT)}


def test_every_bad_file_of_a_mixed_tree_is_reported(mixed: MixedTree, tally: Tally) -> None:
    status = _status(mixed.server)
    tally.add("bad repositories: bad files in the mixed tree", len(status["problems"]))
    reported = {problem["path"]: problem["message"] for problem in status["problems"]}
    for kind, path in mixed.bad_paths.items():
        messages = [message for where, message in reported.items() if where.startswith(path)]
        assert len(messages) == 1, f"{kind}: {path} reported {len(messages)} times"
        assert BAD_FILES[kind].message.search(messages[0]), (kind, messages[0])
    common = ("o/a/bad_yaml.md", "o/a/binary.md", "o/a/latin1_body.md", "o/a/jinja.md")
    for path in common:
        assert path in reported
    expected = (*mixed.bad_paths.values(), *common)
    # The app keeping an id another app claims is told of the conflict too.
    unexpected = [
        path
        for path, message in reported.items()
        if not path.startswith(expected) and "keeps it" not in message
    ]
    assert unexpected == [], "problems reported for files that have none"


def test_a_server_over_bad_files_keeps_following_commits(fresh_mixed: MixedTree) -> None:
    mixed = fresh_mixed
    repo = mixed.repo
    repo.write_prompt("o", "a", "late", "late but here\n")
    repo.write("o/a/empty.md", "---\nversion: 1\n---\nfixed\n")
    repo.write("o/a/newly_broken.md", "---\nversion: [\n---\n")
    sha = repo.commit("one more of each: good, fixed, broken")
    mixed.server.wait_for_commit(sha, timeout=ANSWER_TIMEOUT)
    late = _get(mixed.server, "/api/v1/prompts/by-name/o/a/late")
    fixed = _get(mixed.server, "/api/v1/prompts/by-name/o/a/empty")
    status = _status(mixed.server)
    assert late.json()["body"] == "late but here\n"
    assert fixed.json()["body"] == "fixed\n"
    reported = {problem["path"] for problem in status["problems"]}
    assert "o/a/newly_broken.md" in reported
    assert "o/a/empty.md" not in reported


# --- promptory lint on the same files -----------------------------------------------------------


def test_lint_reports_every_bad_front_matter_and_ends(tmp_path: Path, tally: Tally) -> None:
    # lint reads the work tree with the server's parser: the same files must not hang it.
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("o", "a", "good", "I am fine.\n")
    kinds = [kind for kind, bad in BAD_FILES.items() if bad.raw_name is None]
    paths = {kind: BAD_FILES[kind].write(repo) for kind in kinds}
    tally.add("bad repositories: bad files linted", len(kinds))
    result = run_module("promptory", "lint", str(repo.path), timeout=10.0)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 1
    for kind in (
        "YAML alias bomb",
        "YAML alias bomb at the top level",
        "YAML value that holds itself",
    ):
        assert f"{paths[kind]}:" in result.stdout, (kind, result.stdout)
