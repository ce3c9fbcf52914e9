"""Prompt snapshots: a file of prompts to serve when the server cannot be reached.

`promptory pull` writes one; `PromptClient(..., fallback="prompts.json")` reads it. The file
is JSON::

    {"format": "promptory-snapshot", "version": 1, "created_at": "2026-11-24T21:46:51Z",
     "source": "https://prompts.example.com", "prompts": [<prompt JSON as the API sends it>]}

Loading checks every prompt the way a server answer is checked; a bad file is refused at
construction with a message naming the file and what is wrong with it.

The fallback answers as the server would: an inactive prompt is never served (the server
answers 404 for it), a by-name lookup without an environment picks the most promoted active
variant, and a prompt that includes others renders locally from the snapshot, its includes
resolved as the server resolves them (`PromptSnapshot.render`).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, TemplateNotFound

from . import rendering
from ._protocol import PROMOTION_ORDER
from ._wire import decode_json
from .exceptions import InvalidArgumentError, MalformedResponseError, RenderError
from .prompt import Prompt

__all__ = ["MAX_INCLUDE_DEPTH", "SNAPSHOT_FORMAT", "PromptSnapshot", "write_snapshot"]

SNAPSHOT_FORMAT = "promptory-snapshot"
#: How deep includes may nest below the prompt rendered, as on the server.
MAX_INCLUDE_DEPTH = 10


class PromptSnapshot:
    """Prompts read from a snapshot file, found by id or by qualified name."""

    def __init__(self, prompts: Iterable[Prompt], *, source: str | None = None) -> None:
        self.source = source
        self._by_id: dict[str, Prompt] = {}
        self._by_name: dict[tuple[str, str, str], dict[str, Prompt]] = {}
        for prompt in prompts:
            prompt = replace(prompt, is_fallback=True)
            # Its includes are in this snapshot: `prompt.render()` and `to_messages()`
            # resolve them from here.
            object.__setattr__(prompt, "_include_renderer", self.render)
            self._by_id[prompt.id] = prompt
            variants = self._by_name.setdefault((prompt.org, prompt.app, prompt.name), {})
            variants[prompt.environment] = prompt

    def __len__(self) -> int:
        return len(self._by_id)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PromptSnapshot:
        """Read a snapshot file.

        Raises:
            InvalidArgumentError: the file is missing, not JSON, not a snapshot, or holds a
                prompt that is not valid; the message names the file and the problem.
        """
        where = os.fspath(path)
        try:
            data = decode_json(Path(where).read_bytes())
        except FileNotFoundError:
            raise InvalidArgumentError(f"fallback snapshot {where!r} does not exist") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"fallback snapshot {where!r} could not be read as JSON: {exc}"
            ) from exc
        if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
            raise InvalidArgumentError(
                f"fallback snapshot {where!r} is not a promptory snapshot "
                f'(expected "format": "{SNAPSHOT_FORMAT}"; write one with `promptory pull`)'
            )
        items = data.get("prompts")
        if not isinstance(items, list):
            raise InvalidArgumentError(f'fallback snapshot {where!r} has no "prompts" list')
        prompts = []
        for index, item in enumerate(items):
            try:
                prompts.append(Prompt.from_api(item))
            except MalformedResponseError as exc:
                raise InvalidArgumentError(
                    f"fallback snapshot {where!r}, prompt #{index}: {exc.message}"
                ) from exc
        source = data.get("source")
        return cls(prompts, source=source if isinstance(source, str) else None)

    def find_id(self, prompt_id: str) -> Prompt | None:
        """The active prompt with this id (compared as a UUID when it is one), or None."""
        prompt = self._by_id.get(prompt_id)
        if prompt is None:
            try:
                prompt = self._by_id.get(str(uuid.UUID(prompt_id)))
            except ValueError:
                return None
        return prompt if prompt is not None and prompt.active else None

    def find_name(self, org: str, app: str, name: str, environment: str | None) -> Prompt | None:
        """The prompt with this qualified name: in `environment` when given, else the most
        promoted one (production, then staging, then development), as the server picks."""
        variants = self._by_name.get((org, app, name))
        if not variants:
            return None
        if environment is not None:
            prompt = variants.get(environment)
            return prompt if prompt is not None and prompt.active else None
        for candidate in PROMOTION_ORDER:
            if candidate in variants and variants[candidate].active:
                return variants[candidate]
        return None

    def render(self, prompt: Prompt, variables: Mapping[str, Any] | None) -> str:
        """Render `prompt` locally, its includes taken from this snapshot as the server
        takes them from its store: the variant in the prompt's environment when active,
        else the most promoted active one, of the same org and app.

        Raises:
            RenderError: an include the snapshot lacks, a cycle, nesting deeper than
                `MAX_INCLUDE_DEPTH`, or the template's own failure.
        """
        label = prompt.qualified_name
        resolved = self._plan(prompt, label)
        env = rendering.PromptEnvironment(loader=_PlannedLoader(resolved))
        template = env.from_string(prompt.body)
        return rendering.render_template(template, variables, label=label)

    def _plan(self, root: Prompt, label: str) -> dict[str, str]:
        """Every body the render of `root` may include, by name, after checking the include
        graph: no missing prompt, no computed name, no cycle, at most `MAX_INCLUDE_DEPTH`
        deep. Each prompt is visited once, so the walk is linear in the graph's size."""
        bodies: dict[str, str] = {}
        done: set[str] = set()

        def fail(problem: str) -> RenderError:
            return RenderError(f"prompt {label}: {problem}", code="INCLUDE_ERROR", prompt=label)

        # An explicit stack of (prompt, path of names to it), so no recursion.
        stack: list[tuple[Prompt, tuple[str, ...]]] = [(root, (root.name,))]
        while stack:
            parent, path = stack.pop()
            if len(path) > MAX_INCLUDE_DEPTH + 1:
                raise fail(f"includes nest deeper than {MAX_INCLUDE_DEPTH} levels")
            for name in parent.compiled().references:
                if name is None:
                    raise fail("includes a template whose name is computed at render time")
                if name in path:
                    raise fail(f"include cycle {' -> '.join((*path, name))}")
                if "/" in name or ".." in name:
                    raise fail(f"includes {name!r}, which is not a prompt name")
                found = self._include(root, name)
                if found is None:
                    raise fail(
                        f"includes {name!r}, which the snapshot does not hold as an active prompt"
                    )
                bodies[name] = found.body
                if name not in done:
                    done.add(name)
                    stack.append((found, (*path, name)))
        return bodies

    def _include(self, parent: Prompt, name: str) -> Prompt | None:
        variants = self._by_name.get((parent.org, parent.app, name), {})
        own = variants.get(parent.environment)
        if own is not None and own.active:
            return own
        for candidate in PROMOTION_ORDER:
            found = variants.get(candidate)
            if found is not None and found.active:
                return found
        return None


class _PlannedLoader(BaseLoader):
    """Serves the bodies a checked include plan holds, and nothing else."""

    def __init__(self, bodies: dict[str, str]) -> None:
        self.bodies = bodies

    def get_source(self, environment: Any, template: str) -> tuple[str, str, None]:
        body = self.bodies.get(template)
        if body is None:  # pragma: no cover - the plan holds every name the bodies write
            raise TemplateNotFound(template)
        return body, template, lambda: True  # type: ignore[return-value]


def write_snapshot(
    path: str | os.PathLike[str], prompts: Iterable[Mapping[str, Any]], *, source: str | None
) -> int:
    """Write prompts (as the API sends them) to a snapshot file, atomically; return the count.

    The file is written next to its final place and renamed over it, so a reader never sees
    half a snapshot.
    """
    items = [dict(p) for p in prompts]
    document = {
        "format": SNAPSHOT_FORMAT,
        "version": 1,
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": source,
        "prompts": items,
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".promptory-", suffix=".json", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=1)
            handle.write("\n")
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return len(items)
