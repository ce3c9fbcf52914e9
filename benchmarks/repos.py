"""Prompt repositories for the benchmarks, written straight into git objects with pygit2.

No work tree and no index: a commit's tree is built bottom-up with tree builders, which
makes a 10,000-file repository in a second or two, and a one-file commit rebuilds only the
trees on that file's path. Commits carry a fixed signature, so no git configuration is
needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pygit2
import yaml

from .bodies import SUPPORT_BODY, SUPPORT_FRONT_MATTER

__all__ = [
    "commit_file",
    "create_repo",
    "example_files",
    "prompt_text",
    "small_repo",
]

_MODE_TREE = 0o040000
_MODE_BLOB = 0o100644
_START = 1_790_000_000


def prompt_text(front_matter: Mapping[str, Any], body: str) -> bytes:
    """A prompt file: YAML front matter between ``---`` lines, then the body."""
    header = yaml.safe_dump(dict(front_matter), sort_keys=False, default_flow_style=False)
    return f"---\n{header}---\n{body}".encode()


def example_files() -> dict[str, bytes]:
    """The example prompts shipped in the package, by their path in a repository."""
    root = resources.files("promptory") / "examples"
    files: dict[str, bytes] = {}
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        for item in folder.iterdir():
            if item.is_dir():
                stack.append((item, f"{prefix}{item.name}/"))
            elif item.name.endswith(".md"):
                files[prefix + item.name] = item.read_bytes()
    return files


def _signature(count: int) -> pygit2.Signature:
    return pygit2.Signature("Bench Author", "bench@example.com", _START + 60 * count, 0)


def _write_tree(repo: pygit2.Repository, tree: Mapping[str, Any]) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    for name in sorted(tree):
        value = tree[name]
        if isinstance(value, dict):
            builder.insert(name, _write_tree(repo, value), _MODE_TREE)
        else:
            builder.insert(name, repo.create_blob(value), _MODE_BLOB)
    return builder.write()


def create_repo(path: Path, files: Mapping[str, bytes]) -> pygit2.Repository:
    """A new repository at `path` whose one commit (on ``main``) holds `files`."""
    repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
    tree: dict[str, Any] = {}
    for file_path, data in files.items():
        *folders, name = file_path.split("/")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[name] = data
    signature = _signature(0)
    repo.create_commit("HEAD", signature, signature, "prompts", _write_tree(repo, tree), [])
    return repo


def commit_file(repo: pygit2.Repository, path: str, data: bytes, message: str) -> str:
    """Commit `data` at `path` on top of HEAD (rebuilding only the trees on its path);
    returns the new commit's hex id."""
    head = repo.head.peel(pygit2.Commit)
    parts = path.split("/")

    def rebuilt(tree: pygit2.Tree | None, depth: int) -> pygit2.Oid:
        builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
        name = parts[depth]
        if depth == len(parts) - 1:
            builder.insert(name, repo.create_blob(data), _MODE_BLOB)
        else:
            child = None
            if tree is not None and name in tree:
                found = repo[tree[name].id]
                assert isinstance(found, pygit2.Tree), f"{name} is not a folder"
                child = found
            builder.insert(name, rebuilt(child, depth + 1), _MODE_TREE)
        return builder.write()

    signature = pygit2.Signature("Bench Author", "bench@example.com", head.commit_time + 60, 0)
    oid = repo.create_commit(
        "HEAD", signature, signature, message, rebuilt(head.tree, 0), [head.id]
    )
    return str(oid)


def small_repo(path: Path) -> pygit2.Repository:
    """The shipped examples plus ``myorg/myapp/support`` (the 4 KB support prompt)."""
    files = example_files()
    files["myorg/myapp/support.md"] = prompt_text(SUPPORT_FRONT_MATTER, SUPPORT_BODY)
    return create_repo(path, files)
