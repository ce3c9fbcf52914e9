"""Making commits in a prompt repository with pygit2 — no git command line needed.

Used by ``promptory demo`` to build its repository from the example prompts shipped in the
package and to land a change while the server runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path

import pygit2

__all__ = ["commit_files", "example_prompts", "init_repository"]

_SIGNATURE_NAME = "promptory"
_SIGNATURE_EMAIL = "promptory@localhost"


def init_repository(path: Path) -> pygit2.Repository:
    """A new, empty, non-bare repository at `path` with `main` as its branch."""
    path.mkdir(parents=True, exist_ok=True)
    return pygit2.init_repository(str(path), bare=False, initial_head="main")


def commit_files(repo: pygit2.Repository, changes: Mapping[str, bytes], message: str) -> str:
    """Write `changes` (relative path -> bytes) into the work tree, commit them on HEAD,
    and return the new commit's sha."""
    workdir = Path(repo.workdir)
    for relative, data in changes.items():
        target = workdir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        repo.index.add(relative)
    repo.index.write()
    tree = repo.index.write_tree()
    signature = pygit2.Signature(_SIGNATURE_NAME, _SIGNATURE_EMAIL, int(time.time()), 0)
    parents = [] if repo.head_is_unborn else [repo.head.target]
    oid = repo.create_commit("HEAD", signature, signature, message, tree, parents)
    return str(oid)


def example_prompts() -> dict[str, bytes]:
    """The example prompt files shipped in ``promptory/examples``, by relative path."""
    root = files("promptory").joinpath("examples")
    found: dict[str, bytes] = {}

    def walk(node: object, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):  # type: ignore[attr-defined]
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".md"):
                found[f"{prefix}{child.name}"] = child.read_bytes()

    walk(root, "")
    return found
