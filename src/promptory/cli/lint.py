"""``promptory lint PATH``: check a prompt repository's files before they are committed.

It reads the working tree (so it fits a pre-commit hook) with the server's own parser and
layout, so a file it passes is a file the server serves. Checks:

- front matter: YAML, field types, names, versions (errors, with the line);
- the body: Jinja syntax (errors, with the file's line);
- duplicates: ids, and (name, environment) within an app (errors);
- includes: a dynamic include, an include of another app, of a missing prompt, a cycle,
  nesting deeper than the server renders (errors);
- variables: with a ``variables:`` list (or mapping) in the front matter, a variable the body
  reads but does not declare is an error, one declared but never read a warning;
- unknown front-matter keys and symlinks (warnings: the server ignores the key, skips the
  link).

Output is ``path:line: severity: message``, one per line; the exit status is 1 when there is
an error (or, with ``--strict``, a warning), else 0.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import RenderError
from ._common import MissingExtra, Subcommands, fail, import_extra

__all__ = ["Finding", "add_lint", "cmd_lint", "lint_tree"]

_PROMOTION = ("production", "staging", "development")


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: where, how bad, what."""

    path: str
    line: int
    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity}: {self.message}"


@dataclass(eq=False)
class _Prompt:
    path: str
    id: str
    org: str
    app: str
    name: str
    environment: str
    active: bool
    references: tuple[str | None, ...]
    body_line: int
    variables_used: tuple[str, ...]
    declared: tuple[str, ...] | None
    declared_line: int
    links: list[tuple[str, _Prompt]] = field(default_factory=list)


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


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    for directory, subdirs, names in os.walk(root, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(names):
            if name.endswith(".md"):
                full = Path(directory) / name
                yield full.relative_to(root).as_posix(), full


def lint_tree(root: Path, *, org: str | None = None, app: str | None = None) -> list[Finding]:
    """Every problem in the prompt files under `root`, sorted by file and line."""
    files = import_extra("promptory.server.files")
    store = import_extra("promptory.server.store")
    render = import_extra("promptory.server.render")
    rendering = import_extra("promptory.rendering")
    yaml = import_extra("yaml")
    layout = store.Layout(org, app)
    findings: list[Finding] = []
    prompts: list[_Prompt] = []

    for relative, full in _files(root):
        place = layout.place(relative)
        if place is None:
            continue
        if full.is_symlink():
            findings.append(Finding(relative, 1, "warning", "a symlink: the server skips it"))
            continue
        try:
            data = full.read_bytes()
            text = files.PromptText(data)
            parsed = files.resolve_prompt_file(text, path=relative, org=place[0], app=place[1])
        except files.PromptFileError as exc:
            findings.append(Finding(relative, exc.line or 1, "error", exc.message))
            continue
        except OSError as exc:
            findings.append(Finding(relative, 1, "error", f"cannot read: {exc}"))
            continue
        for key in parsed.unknown_keys:
            findings.append(
                Finding(
                    relative,
                    _key_line(text.front_text, key),
                    "warning",
                    f"unknown front-matter key {key!r} (the server ignores it)",
                )
            )
        try:
            used = rendering.compile_body(parsed.body).info.variables
        except RenderError as exc:  # a body the server would not serve either
            findings.append(
                Finding(relative, text.front_text.count("\n") + 3, "error", exc.message)
            )
            continue
        prompts.append(
            _Prompt(
                path=relative,
                id=parsed.id,
                org=parsed.org,
                app=parsed.app,
                name=parsed.name,
                environment=parsed.environment,
                active=parsed.active,
                references=parsed.references,
                body_line=text.front_text.count("\n") + 3,
                variables_used=used,
                declared=_declared_variables(text.front_text, yaml),
                declared_line=_key_line(text.front_text, "variables"),
            )
        )

    findings.extend(_duplicates(prompts))
    findings.extend(_includes(prompts, render.MAX_INCLUDE_DEPTH))
    findings.extend(_variables(prompts))
    return sorted(set(findings))


def _duplicates(prompts: list[_Prompt]) -> Iterator[Finding]:
    by_id: dict[str, _Prompt] = {}
    by_name: dict[tuple[str, str, str, str], _Prompt] = {}
    for prompt in prompts:
        first = by_id.setdefault(prompt.id, prompt)
        if first is not prompt:
            yield Finding(prompt.path, 1, "error", f"duplicate id: {first.path} has it too")
        key = (prompt.org, prompt.app, prompt.name, prompt.environment)
        first = by_name.setdefault(key, prompt)
        if first is not prompt:
            yield Finding(
                prompt.path,
                1,
                "error",
                f"duplicate prompt {prompt.name!r} in {prompt.environment}: {first.path} "
                "has the same name and environment",
            )


def _resolve(prompts: list[_Prompt], parent: _Prompt, name: str) -> _Prompt | None:
    variants = {
        p.environment: p
        for p in prompts
        if (p.org, p.app, p.name) == (parent.org, parent.app, name) and p.active
    }
    if parent.environment in variants:
        return variants[parent.environment]
    return next((variants[env] for env in _PROMOTION if env in variants), None)


def _includes(prompts: list[_Prompt], max_depth: int) -> Iterator[Finding]:
    for prompt in prompts:
        for reference in prompt.references:
            if reference is None:
                yield Finding(
                    prompt.path,
                    prompt.body_line,
                    "error",
                    "an include whose name is computed at render time; write the prompt "
                    "name in quotes",
                )
            elif "/" in reference or ".." in reference:
                yield Finding(
                    prompt.path,
                    prompt.body_line,
                    "error",
                    f"includes {reference!r}: an include names a prompt of the same app "
                    f"({prompt.org}/{prompt.app}), without '/' or '..'",
                )
            else:
                target = _resolve(prompts, prompt, reference)
                if target is None:
                    yield Finding(
                        prompt.path,
                        prompt.body_line,
                        "error",
                        f"includes {reference!r}, which is not a prompt of "
                        f"{prompt.org}/{prompt.app}",
                    )
                else:
                    prompt.links.append((reference, target))

    reported: set[frozenset[str]] = set()

    def walk(node: _Prompt, chain: list[_Prompt]) -> Iterator[Finding]:
        for _, child in node.links:
            if child in chain:
                cycle = chain[chain.index(child) :]
                members = frozenset(p.path for p in cycle)
                if members not in reported:
                    reported.add(members)
                    names = " -> ".join(p.name for p in (*cycle, child))
                    yield Finding(
                        cycle[0].path, cycle[0].body_line, "error", f"include cycle: {names}"
                    )
                continue
            if len(chain) > max_depth:
                yield Finding(
                    chain[0].path,
                    chain[0].body_line,
                    "error",
                    f"includes nest deeper than {max_depth} levels: "
                    + " -> ".join(p.name for p in (*chain, child)),
                )
                continue
            yield from walk(child, [*chain, child])

    for prompt in prompts:
        yield from walk(prompt, [prompt])


def _variables(prompts: list[_Prompt]) -> Iterator[Finding]:
    for prompt in prompts:
        if prompt.declared is None:
            continue
        used = set(prompt.variables_used)
        for _, child in prompt.links:  # an included prompt reads the same variables
            used.update(child.variables_used)
        undeclared = sorted(used - set(prompt.declared))
        unused = sorted(set(prompt.declared) - used)
        if undeclared:
            yield Finding(
                prompt.path,
                prompt.declared_line,
                "error",
                f"the body reads undeclared variable{'s' if len(undeclared) > 1 else ''} "
                f"{', '.join(undeclared)} (add to 'variables')",
            )
        if unused:
            yield Finding(
                prompt.path,
                prompt.declared_line,
                "warning",
                f"declared variable{'s' if len(unused) > 1 else ''} {', '.join(unused)} never read",
            )


def cmd_lint(args: argparse.Namespace) -> int:
    """Lint a prompt repository's working tree."""
    root = Path(args.path)
    if not root.is_dir():
        return fail(f"{root} is not a directory", 2)
    try:
        findings = lint_tree(root, org=args.org, app=args.app)
    except MissingExtra as exc:
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
        description="Check the prompt files of a repository's working tree the way the "
        "server reads them. Prints PATH:LINE: SEVERITY: MESSAGE; exits 1 on errors.",
    )
    lint.add_argument("path", metavar="PATH", help="the prompt repository (or any folder)")
    lint.add_argument("--org", help="single-app repository: its org (with --app)")
    lint.add_argument("--app", help="single-app repository: its app (with --org)")
    lint.add_argument("--strict", action="store_true", help="warnings fail too")
    lint.set_defaults(handler=cmd_lint)
