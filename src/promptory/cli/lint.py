"""``promptory lint PATH``: check a prompt repository's files before they are committed.

Lint indexes the files with the server's own index (`promptory.server.store.index_files`)
and checks includes with the server's own planner (`promptory.server.includes`), so its
verdicts are those ``GET /api/v1/status`` gives once the files are committed: the same
files skipped, the same duplicates and id conflicts, the same include errors, with the same
messages. It reads the working tree (``--staged``: what is staged in the git index, what a
commit would hold). Every problem the server reports is an error, but for a file that keeps
an id another app also claims (served, nothing fails), which is a warning.

Lint adds only its own checks:

- variables: with ``inputs:`` or a ``variables:`` list (or mapping) in the front matter, a
  variable the body (or a prompt it includes) reads but does not declare is an error, one
  declared but never read a warning (the list a chat template's history loop reads needs no
  declaration);
- unknown front-matter keys (warnings: the server ignores them);
- a file name ending in ``.dev``, ``.staging``, ``.production`` (and the like) without a
  ``name:``: the file name never sets the environment (a warning);
- a ``*.md`` that is not a regular file (a FIFO, socket or device) is never opened, and is
  reported (a warning: git cannot commit it).

Output is ``path:line: severity: message``, one per line, control characters escaped; the
exit status is 1 when there is an error (or, with ``--strict``, a warning), else 0.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._chat import split_body
from .._controls import escape_controls
from ._common import MissingExtra, Subcommands, fail, import_extra

__all__ = ["Finding", "add_lint", "cmd_lint", "lint_tree"]

# Suffixes of a file stem that look like an environment but are part of the name.
_ENVIRONMENT_SUFFIXES = {
    "dev": "development",
    "development": "development",
    "stage": "staging",
    "staging": "staging",
    "prod": "production",
    "production": "production",
}
_MODE_LINK = 0o120000
_MODE_REGULAR = frozenset({0o100644, 0o100755})


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: where, how bad, what."""

    path: str
    line: int
    severity: str
    message: str

    def __str__(self) -> str:
        # Paths and messages are repository text: a control character is shown escaped.
        return escape_controls(f"{self.path}:{self.line}: {self.severity}: {self.message}")


def _key_line(front_text: str, key: str) -> int:
    """The file line of a top-level front-matter key (the front matter starts on line 2)."""
    match = re.search(rf"^{re.escape(key)}\s*:", front_text, re.MULTILINE)
    return 2 + front_text.count("\n", 0, match.start()) if match else 1


def _declared_variables(front_text: str, yaml: Any) -> tuple[str, ...] | None:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(front_text, Loader=loader)
    except yaml.YAMLError:
        return None  # the parser reports it
    declared = data.get("variables") if isinstance(data, dict) else None
    if isinstance(declared, dict):
        return tuple(str(k) for k in declared)
    if isinstance(declared, list):
        return tuple(str(v) for v in declared)
    return None


# --- the files ------------------------------------------------------------------------------


def _read_regular(full: Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of a regular file, never blocking on anything else (a FIFO
    swapped in after the directory was listed is refused, not opened for reading)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(full, flags)
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise OSError(0, "not a regular file")
        return stream.read(limit + 1)


def _work_tree(root: Path, store: Any, limit: int, odd: list[Finding]) -> Iterator[Any]:
    """The ``*.md`` files under `root` as `TreeFile`s; other kinds of file go to `odd`."""
    for directory, subdirs, names in os.walk(root, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(names):
            if not name.endswith(".md"):
                continue
            full = Path(directory) / name
            relative = full.relative_to(root).as_posix()
            try:
                info = os.lstat(full)
            except OSError:
                continue  # gone since the listing
            if stat.S_ISLNK(info.st_mode):
                kind = "symlink"
            elif stat.S_ISREG(info.st_mode):
                kind = "file"
            else:
                odd.append(
                    Finding(
                        relative,
                        1,
                        "warning",
                        "not a regular file (a FIFO, socket or device): not read, and git "
                        "cannot commit it",
                    )
                )
                continue
            yield store.TreeFile(
                path=relative,
                kind=kind,
                blob_id=f"worktree:{relative}",
                size=_constant(info.st_size),
                load=_loader(full, limit),
            )


def _constant(value: int) -> Callable[[], int]:
    return lambda: value


def _loader(full: Path, limit: int) -> Callable[[], bytes]:
    return lambda: _read_regular(full, limit)


def _staged(repo: Any, prefix: str, store: Any) -> Iterator[Any]:
    """The files staged in `repo`'s index under `prefix`, as `TreeFile`s."""
    odb = repo.odb
    for entry in repo.index:
        path: str = entry.path
        if not path.startswith(prefix):
            continue
        if entry.mode == _MODE_LINK:
            kind = "symlink"
        elif entry.mode in _MODE_REGULAR:
            kind = "file"
        else:
            continue  # a submodule
        oid = entry.id
        yield store.TreeFile(
            path=path[len(prefix) :],
            kind=kind,
            blob_id=str(oid),
            size=_header_size(odb, oid),
            load=_blob(repo, oid),
        )


def _header_size(odb: Any, oid: Any) -> Callable[[], int]:
    objects = import_extra("promptory.server.objects")
    return lambda: int(objects.object_size(odb, oid))


def _blob(repo: Any, oid: Any) -> Callable[[], bytes]:
    return lambda: bytes(repo[oid].data)


def _repository(root: Path, pygit2: Any) -> tuple[Any, str] | None:
    """The git repository holding `root`, and where `root` is in it (``""`` or ``"p/"``)."""
    found = pygit2.discover_repository(str(root))
    if found is None:
        return None
    repo = pygit2.Repository(found)
    if repo.workdir is None:
        return None
    inside = root.resolve().relative_to(Path(repo.workdir).resolve()).as_posix()
    return repo, "" if inside == "." else inside + "/"


# --- the checks -----------------------------------------------------------------------------


def lint_tree(
    root: Path, *, org: str | None = None, app: str | None = None, staged: bool = False
) -> list[Finding]:
    """Every problem in the prompt files under `root` (its working tree, or with `staged`
    what its git index holds), sorted by file and line."""
    store = import_extra("promptory.server.store")
    includes = import_extra("promptory.server.includes")
    claims = import_extra("promptory.server.claims")
    files_module = import_extra("promptory.server.files")
    pygit2 = import_extra("pygit2")
    findings: list[Finding] = []

    found = _repository(root, pygit2)
    if staged:
        if found is None:
            raise LintError(f"{root} is not in a git repository: --staged reads its index")
        files = list(_staged(found[0], found[1], store))
    else:
        files = list(_work_tree(root, store, files_module.MAX_FILE_BYTES, findings))

    holder = None
    if found is not None and not found[0].head_is_unborn:
        # Who keeps an id several apps claim: the longest claim up to HEAD, as the server
        # decides once these files are committed on top of it.
        history = claims.ClaimHistory(found[0], threading.RLock(), prefix=found[1])
        head = found[0].head.peel(pygit2.Commit)

        def holder(prompt_id: str, places: list[tuple[str, str]]) -> tuple[str, str] | None:
            return history.holder(head, prompt_id, places)  # type: ignore[no-any-return]

    snapshot = store.index_files(files, org=org, app=app, holder=holder)
    for problem in snapshot.problems() + includes.include_problems(snapshot):
        findings.append(Finding(problem.path, problem.line or 1, problem.severity, problem.message))
    findings.extend(_own_checks(snapshot, includes))
    return sorted(set(findings))


def _own_checks(snapshot: Any, includes: Any) -> Iterator[Finding]:
    """What lint checks beyond the server: variables, unknown keys, file names."""
    rendering = import_extra("promptory.rendering")
    yaml = import_extra("yaml")
    for record in snapshot.prompts():
        file = record.served().file
        front_text = record.text.front_text
        for key in file.unknown_keys:
            yield Finding(
                record.path,
                _key_line(front_text, key),
                "warning",
                f"unknown front-matter key {key!r} (the server ignores it)",
            )
        suffix = record.stem.rpartition(".")[2] if "." in record.stem else ""
        if record.text.keys.name is None and suffix.lower() in _ENVIRONMENT_SUFFIXES:
            base = record.stem.rpartition(".")[0]
            environment = _ENVIRONMENT_SUFFIXES[suffix.lower()]
            yield Finding(
                record.path,
                1,
                "warning",
                f"this file is the prompt {record.stem!r}: a file name never sets the "
                f"environment. For the {environment} variant of {base!r}, add "
                f"'name: {base}' and 'environment: {environment}' to its front matter",
            )
        declared = _declared_variables(front_text, yaml)
        inputs = dict(file.extra).get("inputs") or {}
        if inputs:
            declared = (*(declared or ()), *inputs)
        if declared is None:
            continue
        used = set(rendering.compile_body(file.body).info.variables)
        for reference in file.references:  # an included prompt reads the same variables
            try:
                child = includes.resolve_include(snapshot, record, reference)
            except includes.IncludeError:
                continue  # reported with the includes
            used.update(rendering.compile_body(child.text.body).info.variables)
        line = _key_line(front_text, "variables" if "variables" in front_text else "inputs")
        # The history loop's list is the conversation, not an input to declare.
        history = {part.history for part in split_body(file.body) if part.history}
        undeclared = sorted(used - set(declared) - history)
        unused = sorted(set(declared) - used)
        if undeclared:
            yield Finding(
                record.path,
                line,
                "error",
                f"the body reads undeclared variable{'s' if len(undeclared) > 1 else ''} "
                f"{', '.join(undeclared)} (add to 'inputs' or 'variables')",
            )
        if unused:
            yield Finding(
                record.path,
                line,
                "warning",
                f"declared variable{'s' if len(unused) > 1 else ''} {', '.join(unused)} never read",
            )


class LintError(Exception):
    """Lint cannot run as asked (the message says why)."""


def cmd_lint(args: argparse.Namespace) -> int:
    """Lint a prompt repository's working tree (or its staged files)."""
    root = Path(args.path)
    if not root.is_dir():
        return fail(f"{root} is not a directory", 2)
    try:
        findings = lint_tree(root, org=args.org, app=args.app, staged=args.staged)
    except MissingExtra as exc:
        return fail(str(exc), 2)
    except LintError as exc:
        return fail(str(exc), 2)
    for finding in findings:
        print(finding)
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    print(
        f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning"
        f"{'s' if warnings != 1 else ''}",
        file=sys.stderr,
    )
    return 1 if errors or (args.strict and warnings) else 0


def add_lint(commands: Subcommands[argparse.ArgumentParser]) -> None:
    """Register lint."""
    lint = commands.add_parser(
        "lint",
        help="check prompt files (front matter, duplicates, includes, syntax, variables)",
        description="Check the prompt files of a repository's working tree (or, with "
        "--staged, its git index) the way the server reads them. Prints "
        "PATH:LINE: SEVERITY: MESSAGE; exits 1 on errors.",
    )
    lint.add_argument(
        "path", metavar="PATH", nargs="?", default=".", help="the prompt tree (default: .)"
    )
    lint.add_argument("--org", help="single-app repository: its org (with --app)")
    lint.add_argument("--app", help="single-app repository: its app (with --org)")
    lint.add_argument("--strict", action="store_true", help="warnings fail too")
    lint.add_argument(
        "--staged",
        action="store_true",
        help="check what is staged in the git index (what a commit would hold), not the "
        "working tree",
    )
    lint.set_defaults(handler=cmd_lint)
