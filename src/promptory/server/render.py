"""Server-side rendering: prompt bodies with their includes resolved from the snapshot.

Rules of this module:

* ``{% include "name" %}`` (and ``import``, ``extends``) name another prompt of the same org
  and app. It resolves to the variant in the including prompt's environment if there is an
  active one, else to the most promoted active variant. A name with ``/`` or ``..``, or any
  name that is not a valid prompt name, is refused: an include never reaches another app.
* Before anything renders, the whole include graph is resolved (`plan`): a missing prompt, a
  name computed at render time, a cycle (reported as ``a -> b -> a``) or nesting deeper
  than `MAX_INCLUDE_DEPTH` is an `IncludeError`, and nothing is rendered.
* A plan becomes a `RenderJob`: plain data (the bodies by template name, the include links,
  the prompt's label) that a render worker — another process, see `renderpool` — renders
  without the snapshot (`render_job`).
* Templates are compiled once and kept by the environment's cache under a name holding the
  blob id (``org/app/environment/name@blob``): a changed file is a new name, so nothing is
  ever served from a stale compile. The job of the render in progress travels in a context
  variable, which `join_path` and the loader read.
* Rendering itself is `promptory.rendering.render_template`: the same sandbox, settings and
  limits as every other render.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2 import BaseLoader, Environment, TemplateNotFound, TemplateSyntaxError

from .. import _chat
from ..exceptions import RenderError
from ..rendering import PromptEnvironment, render_template
from .files import is_valid_name
from .records import PromptRecord
from .store import Snapshot

__all__ = [
    "IncludeError",
    "IncludePlan",
    "MAX_INCLUDE_DEPTH",
    "RenderJob",
    "Renderer",
    "message_templates",
    "plan",
    "render_job",
]

#: How deep includes may nest below the prompt being rendered.
MAX_INCLUDE_DEPTH = 10


class IncludeError(Exception):
    """An include that cannot be resolved; the message says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def template_name(record: PromptRecord) -> str:
    """The name a record's body is compiled and cached under."""
    return f"{record.org}/{record.app}/{record.environment}/{record.name}@{record.blob_id}"


@dataclass
class IncludePlan:
    """A render's include graph, resolved.

    Attributes:
        root: the template name of the prompt being rendered.
        templates: every template the render may load, by template name.
        links: (including template name, name as written) -> included template name.
    """

    root: str
    templates: dict[str, PromptRecord] = field(default_factory=dict)
    links: dict[tuple[str, str], str] = field(default_factory=dict)

    def job(self, label: str) -> RenderJob:
        """The plan as plain data a render worker can take. A chat body (see `_chat`) is
        also split into its message templates, each a template of the job (``root#i``)
        with the root's include links."""
        sources = {name: record.text.body for name, record in self.templates.items()}
        links = dict(self.links)
        split = message_templates(self.templates[self.root].text.body)
        parts: tuple[str, ...] = ()
        if _chat.is_chat(split):
            parts = tuple(f"{self.root}#{index}" for index in range(len(split)))
            for name, part in zip(parts, split, strict=True):
                sources[name] = part.source
            for (parent, written), target in self.links.items():
                if parent == self.root:
                    links.update({(name, written): target for name in parts})
        return RenderJob(self.root, sources, links, label, parts)


@functools.lru_cache(maxsize=64)
def message_templates(body: str) -> tuple[_chat.MessageTemplate, ...]:
    """`body` split into message templates, kept for the 64 bodies seen last (a body that is
    not a chat template is kept as itself; a chat body as its parts: at most 64 MiB)."""
    try:
        return _chat.split_body(body)
    except _chat.ChatError:  # refused when indexed; a plain body here renders as one text
        return (_chat.MessageTemplate(None, "", body),)


@dataclass(frozen=True)
class RenderJob:
    """What a render needs, as plain (picklable) data.

    Attributes:
        root: the template name of the prompt being rendered.
        sources: the body of every template the render may load, by template name.
        links: (including template name, name as written) -> included template name.
        label: the prompt's ``org/app/name``, for error messages.
        parts: for a chat body, the template names of its message templates, in order; the
            worker then renders each and answers their texts as a JSON list of strings.
    """

    root: str
    sources: dict[str, str]
    links: dict[tuple[str, str], str]
    label: str
    parts: tuple[str, ...] = ()


def _resolve(snapshot: Snapshot, parent: PromptRecord, name: str | None) -> PromptRecord:
    if name is None:
        raise IncludeError(
            f"prompt {parent.qualified_name} includes a template whose name is computed at "
            "render time; only a prompt name written in quotes can be resolved"
        )
    if "/" in name or ".." in name or not is_valid_name(name):
        raise IncludeError(
            f"prompt {parent.qualified_name} includes {name!r}, which is not a prompt name: "
            f"an include names a prompt of the same app ({parent.org}/{parent.app}), "
            "without '/' or '..'"
        )
    found = snapshot.find_by_name(parent.org, parent.app, name, parent.environment)
    if found is None:
        found = snapshot.find_by_name(parent.org, parent.app, name)
    if found is None:
        raise IncludeError(
            f"prompt {parent.qualified_name} includes {name!r}, which is not an active "
            f"prompt of {parent.org}/{parent.app}"
        )
    return found


def plan(snapshot: Snapshot, root: PromptRecord) -> IncludePlan:
    """Resolve every include reachable from `root`.

    Raises:
        IncludeError: a missing or refused include, a cycle, or nesting too deep.
    """
    result = IncludePlan(template_name(root))
    heights: dict[str, int] = {}

    def visit(record: PromptRecord, chain: list[PromptRecord]) -> int:
        """The include height below `record`, which sits at depth ``len(chain) - 1``."""
        name = template_name(record)
        result.templates[name] = record
        height = 0
        for reference in record.served().file.references:
            child = _resolve(snapshot, record, reference)
            if any(child is ancestor for ancestor in chain):
                start = next(i for i, ancestor in enumerate(chain) if ancestor is child)
                cycle = " -> ".join(r.name for r in (*chain[start:], child))
                raise IncludeError(f"include cycle: {cycle}")
            child_name = template_name(child)
            assert reference is not None
            result.links[(name, reference)] = child_name
            depth = len(chain)  # the child's depth: the root is at 0
            if depth > MAX_INCLUDE_DEPTH:
                raise _too_deep([*chain, child])
            child_height = heights.get(child_name)
            if child_height is None:
                child_height = visit(child, [*chain, child])
            elif depth + child_height > MAX_INCLUDE_DEPTH:
                # Met before at a shallower depth: its subtree is known, and too deep here.
                raise _too_deep([*chain, child])
            height = max(height, child_height + 1)
        heights[name] = height
        return height

    visit(root, [root])
    return result


def _too_deep(chain: list[PromptRecord]) -> IncludeError:
    path = " -> ".join(record.name for record in chain)
    return IncludeError(f"includes nest deeper than {MAX_INCLUDE_DEPTH} levels: {path} -> ...")


_JOB: ContextVar[RenderJob | None] = ContextVar("promptory_render_job", default=None)


class _PlanLoader(BaseLoader):
    """Loads the bodies the current render's job holds, and nothing else."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Any]:
        current = _JOB.get()
        source = current.sources.get(template) if current is not None else None
        if source is None:
            raise TemplateNotFound(template)
        return source, template, _always_fresh


def _always_fresh() -> bool:
    return True  # names carry the blob id: a template under a name never changes


class _IncludeEnvironment(PromptEnvironment):
    """The shared sandbox, with includes resolved through the current render's plan."""

    def join_path(self, template: str, parent: str) -> str:
        current = _JOB.get()
        if current is None:
            return template
        return current.links.get((parent, template), template)


class Renderer:
    """Renders prompts of a snapshot with their includes (thread-safe; one per server).

    Args:
        cache_size: how many compiled templates to keep.
    """

    def __init__(self, cache_size: int = 2000) -> None:
        self.environment = _IncludeEnvironment(loader=_PlanLoader(), cache_size=cache_size)

    def render(
        self, snapshot: Snapshot, record: PromptRecord, variables: Mapping[str, Any] | None
    ) -> str:
        """Render `record` (a served prompt of `snapshot`) with `variables`, in this thread.

        Raises:
            IncludeError: the includes cannot be resolved.
            RenderError: the template failed (sandbox, limits, runtime error).
        """
        return self.run(plan(snapshot, record).job(record.qualified_name), variables)

    def run(self, job: RenderJob, variables: Mapping[str, Any] | None) -> str:
        """Render a planned `job` with `variables`.

        Raises:
            RenderError: the template failed (sandbox, limits, runtime error).
        """
        return self._run(job, job.root, variables)

    def run_parts(self, job: RenderJob, variables: Mapping[str, Any] | None) -> list[str]:
        """Render each message template of a chat `job`, in order.

        Raises:
            RenderError: a template failed (sandbox, limits, runtime error).
        """
        return [self._run(job, part, variables) for part in job.parts]

    def _run(self, job: RenderJob, name: str, variables: Mapping[str, Any] | None) -> str:
        label = job.label
        token = _JOB.set(job)
        try:
            try:
                template = self.environment.get_template(name)
            except TemplateSyntaxError as exc:  # checked when indexed; kept for safety
                raise RenderError(
                    f"prompt {label}: template syntax error on line {exc.lineno}: {exc.message}",
                    code="TEMPLATE_SYNTAX_ERROR",
                    prompt=label,
                ) from exc
            return render_template(template, variables, label=label)
        finally:
            _JOB.reset(token)


# The renderer of a worker process (or of the worker threads), made on first use.
_WORKER_RENDERER: Renderer | None = None


def render_job(job: RenderJob, variables: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Render `job` in a render worker: ``(True, text)``, or ``(False, message)`` when the
    template failed. Plain data both ways: an exception need not survive pickling."""
    global _WORKER_RENDERER
    renderer = _WORKER_RENDERER
    if renderer is None:
        renderer = _WORKER_RENDERER = Renderer()
    try:
        if job.parts:
            return True, json.dumps(renderer.run_parts(job, variables))
        return True, renderer.run(job, variables)
    except RenderError as exc:
        return False, exc.message
