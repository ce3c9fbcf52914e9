"""The decision modules are sans-IO in fact: neither they nor anything of ours they import
imports httpx, httpcore or asyncio, so every rule in them can be driven with no network and
no event loop. Read from their syntax trees, following our own imports transitively (the
package's ``__init__`` re-exports the clients, so importing would prove nothing)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import promptory

SRC = Path(promptory.__file__).parent
BLOCKED = {"httpx", "httpcore", "asyncio", "anyio", "h11", "h2", "socket"}

SANS_IO = [
    "promptory._protocol",
    "promptory._fields",
    "promptory._options",
    "promptory._wire",
    "promptory._cache",
    "promptory._fetch",
    "promptory._core",
    "promptory.prompt",
    "promptory.snapshot",
]


def _path(module: str) -> Path:
    parts = module.split(".")[1:]
    candidate = SRC.joinpath(*parts).with_suffix(".py")
    return candidate if candidate.exists() else SRC.joinpath(*parts, "__init__.py")


def _imports(module: str) -> set[str]:
    """The modules `module` imports, relative imports resolved."""
    tree = ast.parse(_path(module).read_text(encoding="utf-8"))
    package = module.rsplit(".", 1)[0] if _path(module).name != "__init__.py" else module
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.add(target)
            # `from . import rendering` names a module, not an attribute.
            for alias in node.names:
                if _path(f"{target}.{alias.name}").exists() and target.startswith("promptory"):
                    found.add(f"{target}.{alias.name}")
    return found


def _closure(module: str) -> dict[str, str]:
    """Every module reached from `module` through our own imports: name -> who imports it."""
    seen: dict[str, str] = {module: "(root)"}
    queue = [module]
    while queue:
        current = queue.pop()
        for name in _imports(current):
            if name in seen:
                continue
            seen[name] = current
            if name.startswith("promptory.") and _path(name).exists():
                queue.append(name)
    return seen


@pytest.mark.parametrize("module", SANS_IO)
def test_a_decision_module_imports_neither_httpx_nor_asyncio(module: str) -> None:
    reached = _closure(module)
    offending = {name: via for name, via in reached.items() if name.split(".")[0] in BLOCKED}
    assert offending == {}, f"{module} reaches I/O modules (module: imported by): {offending}"


def test_the_check_sees_an_import_of_httpx() -> None:
    # The transport is where httpx belongs: the check must see it there.
    assert "httpx" in _closure("promptory._transport")
