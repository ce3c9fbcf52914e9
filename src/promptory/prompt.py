"""`Prompt`: one prompt as the server describes it, with its sandboxed `render()`.

A `Prompt` is immutable and its dicts and lists are read-only (see `_frozen`), because the
cache hands the same object to every caller. Building one from a server answer
(`Prompt.from_api`) checks every field's type, so a bad answer fails here, before it can reach
the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from . import _chat, _inputs, _openai, rendering
from ._fields import (
    PROMPT_FIELDS,
    PROMPT_JSON_KEYS,
    PROMPT_TYPES,
    ROLES,
    answer_problem,
    json_type,
)
from ._frozen import FrozenDict, FrozenList, freeze
from ._protocol import ENVIRONMENTS
from .exceptions import (
    InvalidInputError,
    MalformedResponseError,
    RenderError,
    UndefinedVariableError,
)

__all__ = ["ENVIRONMENTS", "PROMPT_JSON_KEYS", "PROMPT_TYPES", "ROLES", "Prompt"]

# The field table lives in `_fields` (shared with the server); re-exported here, where
# callers have always found them.
_ATTRIBUTES: tuple[str, ...] = ()  # filled below, once `Prompt` exists


@dataclass(frozen=True, kw_only=True, slots=True, eq=True)
class Prompt:
    """A prompt fetched from a Promptory server.

    Every dict and list it holds is read-only: the cache shares one `Prompt` between all
    callers. Take a mutable copy with `dict(prompt.model)` or `list(prompt.tags)`.
    """

    id: str
    """The prompt's UUID."""
    name: str
    """The prompt's name, unique per app and environment, e.g. ``meditation_script_relax``."""
    version: str = ""
    """Semantic version from the front matter."""
    org: str = ""
    """Organization name."""
    app: str = ""
    """Application name."""
    domain: str | None = None
    """Domain category, e.g. ``meditation``."""
    description: str | None = None
    """Human-readable description."""
    type: str = ""
    """``chat``, ``completion``, ``tts`` or ``transcription``."""
    role: str | None = None
    """LLM message role: ``system``, ``user`` or ``assistant``."""
    model: dict[str, Any] = field(default_factory=FrozenDict)
    """Model configuration as written in the front matter (``default``, ``temperature``...)."""
    modality: dict[str, Any] | None = None
    """Input and output modality configuration."""
    tts: dict[str, Any] | None = None
    """Text-to-speech provider, voice and settings."""
    audio: dict[str, Any] | None = None
    """Audio generation configuration."""
    environment: str = ""
    """``development``, ``staging`` or ``production``."""
    active: bool = True
    """Whether the prompt is active."""
    tags: list[str] = field(default_factory=FrozenList)
    """Tags for filtering."""
    body: str
    """The raw Jinja2 template."""
    includes: list[str] = field(default_factory=FrozenList)
    """Names of the prompts this one includes (resolved by server-side rendering)."""
    meta: dict[str, Any] = field(default_factory=FrozenDict)
    """The server's whole answer for this prompt, as a read-only dict."""
    git_sha: str | None = None
    """The commit that last changed the prompt's file."""
    updated_at: str | None = None
    """When that commit was made."""
    inputs: dict[str, Any] = field(default_factory=FrozenDict)
    """Typed inputs by variable name (``type``, ``required``, ``default``, ``description``,
    ``sample``), as written in the front matter."""
    tools: list[dict[str, Any]] = field(default_factory=FrozenList)
    """Function tools the model may call, as written (OpenAI's shape, or without its
    ``{type: function, function: ...}`` wrapper)."""
    response_format: dict[str, Any] | None = None
    """The answer's shape: a JSON Schema or OpenAI's ``response_format`` object, as written."""
    is_fallback: bool = False
    """True when this prompt came from a fallback (a snapshot file or a default given to the
    call) because the server could not be reached, rather than from the server or its cache."""
    _compiled: rendering.CompiledTemplate | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # Set by the snapshot that holds this prompt and the ones it includes: renders it with
    # its includes resolved from there (README, "When the server is down").
    _include_renderer: Callable[[Prompt, Mapping[str, Any] | None], str] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _parts: tuple[tuple[_chat.MessageTemplate, rendering.CompiledTemplate], ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _specs: tuple[_inputs.InputSpec, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Freeze what a caller passed in; answers from `from_api` arrive frozen already.
        for name in (
            "model",
            "modality",
            "tts",
            "audio",
            "tags",
            "includes",
            "meta",
            "inputs",
            "tools",
            "response_format",
        ):
            value = getattr(self, name)
            if value is not None and type(value) not in (FrozenDict, FrozenList):
                object.__setattr__(self, name, freeze(value))

    def __hash__(self) -> int:
        return hash((self.id, self.version, self.environment, self.git_sha, self.body))

    def __reduce__(self) -> tuple[Any, ...]:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        return (_unpickle, (values,))

    @classmethod
    def from_api(cls, data: Any) -> Prompt:
        """Build a `Prompt` from a server's JSON answer, checking every known field.

        Unknown keys are kept in `meta`; missing optional ones get empty values.

        Raises:
            MalformedResponseError: the answer is not a JSON object, lacks `id`, `name` or
                `body`, or has a field of the wrong type; the message names it.
        """
        if not isinstance(data, dict):
            raise _malformed(f"expected a JSON object, got {json_type(data)}", None)
        problem = answer_problem(data)
        if problem is not None:
            label = data.get("id") if isinstance(data.get("id"), str) else None
            raise _malformed(problem, label)
        frozen: FrozenDict = freeze(data)
        values: dict[str, Any] = {}
        for spec in PROMPT_FIELDS:
            if spec.name not in _ATTRIBUTES:
                continue  # a field without an attribute of its own: in `meta` only
            value = frozen.get(spec.name)
            if value is None and not spec.nullable:
                value = _empty(spec.default)
            values[spec.name] = value
        return cls(meta=frozen, **values)

    @property
    def qualified_name(self) -> str:
        """``org/app/name``, or just the name when the org or app is unknown."""
        if self.org and self.app:
            return f"{self.org}/{self.app}/{self.name}"
        return self.name

    @property
    def variables(self) -> tuple[str, ...]:
        """The top-level variables the template reads, sorted (found from its syntax tree)."""
        return self.compiled().info.variables

    def compiled(self) -> rendering.CompiledTemplate:
        """The body compiled in the sandbox; done once per prompt, then reused."""
        compiled = self._compiled
        if compiled is None:
            compiled = rendering.compile_body(self.body, label=self.qualified_name)
            object.__setattr__(self, "_compiled", compiled)
        return compiled

    def render(self, variables: Mapping[str, Any] | None = None, *, strict: bool = False) -> str:
        """Render the template locally in the sandbox.

        Args:
            variables: the values the template reads, by name.
            strict: raise `UndefinedVariableError` naming every variable the template needs
                that `variables` lacks, instead of rendering missing ones as empty. Uses
                guarded by ``is defined`` or ``| default(...)`` do not count as needed.

        Raises:
            RenderError: the template failed (syntax, sandbox, limits, or it includes other
                prompts, which only `client.render()` can resolve).
        """
        compiled = self._compiled or self.compiled()
        variables = self._prepare(variables, strict)
        parts = self.message_templates()
        if parts:
            return _chat.join_rendered(
                [part for part, _ in parts], self._render_parts(parts, variables, strict)
            )
        if strict:
            return self._render_strict(compiled, variables)
        try:
            return rendering.render_template(
                compiled.template, variables, label=self.qualified_name
            )
        except RenderError as exc:
            if exc.code == "INCLUDE_NEEDS_SERVER":
                if self._include_renderer is not None:
                    return self._include_renderer(self, variables)
                raise self._include_error(exc) from exc
            raise

    def input_specs(self) -> tuple[_inputs.InputSpec, ...]:
        """The declared `inputs`, read once.

        Raises:
            RenderError: the declaration is not valid (the server refuses such files, so
                only a prompt built by hand can hold one).
        """
        specs = self._specs
        if specs is None:
            try:
                specs = _inputs.parse_inputs(self.inputs)
            except _inputs.InputsError as exc:
                label = self.qualified_name
                raise RenderError(
                    f"prompt {label}: inputs: {exc}", code="RENDER_ERROR", prompt=label
                ) from exc
            object.__setattr__(self, "_specs", specs)
        return specs

    def _prepare(
        self, variables: Mapping[str, Any] | None, strict: bool
    ) -> Mapping[str, Any] | None:
        """`variables` with input defaults filled in; in strict mode, checked against the
        inputs and the template (one error naming every problem)."""
        specs = self._specs if self._specs is not None else self.input_specs()
        if not specs and not strict:
            return variables
        variables = _inputs.with_defaults(specs, variables)
        if not strict:
            return variables
        missing, wrong = _inputs.input_problems(specs, variables)
        given = variables or {}
        for name in (self._compiled or self.compiled()).info.required:
            if name not in given and name not in missing:
                missing.append(name)
        if missing or wrong:
            label = self.qualified_name
            problems = []
            if missing:
                plural = "s" if len(missing) > 1 else ""
                problems.append(f"missing variable{plural} {', '.join(missing)}")
            problems.extend(f"{name}: {problem}" for name, problem in wrong.items())
            message = f"prompt {label}: {'; '.join(problems)}"
            if wrong:
                raise InvalidInputError(message, missing=missing, invalid=wrong, prompt=label)
            raise UndefinedVariableError(message, missing=missing, prompt=label)
        return variables

    def message_templates(
        self,
    ) -> tuple[tuple[_chat.MessageTemplate, rendering.CompiledTemplate], ...]:
        """The body's message templates, each compiled (split and compiled once); empty
        when the body is not a chat template (no role line, no history loop).

        Raises:
            RenderError: a message template is not valid on its own (a Jinja block that
                spans a role line), or the body holds too many role lines.
        """
        parts = self._parts
        if parts is None:
            try:
                split = _chat.split_body(self.body)
            except _chat.ChatError as exc:
                raise RenderError(
                    f"prompt {self.qualified_name}: {exc}",
                    code="TEMPLATE_SYNTAX_ERROR",
                    prompt=self.qualified_name,
                ) from exc
            parts = ()
            if _chat.is_chat(split):
                parts = tuple(
                    (part, rendering.compile_body(part.source, label=self.qualified_name))
                    for part in split
                )
            object.__setattr__(self, "_parts", parts)
        return parts

    def _render_parts(
        self,
        parts: tuple[tuple[_chat.MessageTemplate, rendering.CompiledTemplate], ...],
        variables: Mapping[str, Any] | None,
        strict: bool,
    ) -> list[str]:
        texts = []
        for _, compiled in parts:
            template = compiled.strict_template if strict else compiled.template
            try:
                texts.append(
                    rendering.render_template(template, variables, label=self.qualified_name)
                )
            except RenderError as exc:
                if exc.code == "INCLUDE_NEEDS_SERVER":
                    raise self._include_error(exc) from exc
                raise
        return texts

    def _render_strict(
        self, compiled: rendering.CompiledTemplate, variables: Mapping[str, Any] | None
    ) -> str:
        return rendering.render_template(
            compiled.strict_template, variables, label=self.qualified_name
        )

    def _include_error(self, cause: RenderError) -> RenderError:
        return RenderError(
            f"prompt {self.qualified_name} includes other prompts "
            f"({', '.join(self.includes) or 'see its body'}); a local render cannot resolve "
            "them: use client.render(prompt.id, variables) to render it on the server",
            code="INCLUDE_NEEDS_SERVER",
            prompt=self.qualified_name,
        )

    def needs_server_render(self) -> bool:
        """True when the body includes, imports or extends other prompts."""
        return bool(self.includes) or bool(self.compiled().references)

    def to_messages(
        self,
        variables: Mapping[str, Any] | None = None,
        history: Sequence[Mapping[str, Any]] | None = None,
        *,
        strict: bool = False,
    ) -> list[dict[str, Any]]:
        """Render into chat messages, OpenAI style: ``[{"role": ..., "content": ...}]``.

        A chat template gives one message per role line (see "Chat prompts" in the README),
        each rendered on its own. A body without role lines gives one message with the
        prompt's role (``system`` when it has none) and the whole render as content.

        Args:
            variables: the values the template reads, by name.
            history: earlier messages of the conversation (each with ``role`` and
                ``content``). They fill the body's history loop; a body without one gets
                them after its leading system messages.
            strict: as for `render`.

        The list and its dicts are new on every call and belong to the caller.

        Raises:
            RenderError: the template failed, or `history` is not a list of messages.
        """
        parts = self.message_templates()
        label = self.qualified_name
        placeholder = next((p.history for p, _ in parts if p.history is not None), None)
        if history is not None and placeholder is not None:
            variables = {**(variables or {}), placeholder: history}
        try:
            if parts:
                variables = self._prepare(variables, strict)
                texts = self._render_parts(parts, variables, strict)
                messages = _chat.build_messages(
                    [part for part, _ in parts], texts, variables, self.role
                )
            else:
                content = self.render(variables, strict=strict)
                messages = [{"role": self.role or "system", "content": content}]
            if history is not None and placeholder is None:
                earlier = _chat.history_messages(history, "history")
                at = 0
                while at < len(messages) and messages[at]["role"] == "system":
                    at += 1
                messages[at:at] = earlier
        except _chat.ChatError as exc:
            raise RenderError(f"prompt {label}: {exc}", code="RENDER_ERROR", prompt=label) from exc
        return messages

    def to_openai(
        self,
        variables: Mapping[str, Any] | None = None,
        history: Sequence[Mapping[str, Any]] | None = None,
        *,
        strict: bool = False,
    ) -> dict[str, Any]:
        """The keyword arguments of an OpenAI chat completions call for this prompt:
        ``client.chat.completions.create(**prompt.to_openai(variables))``.

        Holds ``model``, ``messages`` (from `to_messages`), the model settings the front
        matter gives (``temperature``, ``max_tokens``, ``top_p``, ``stop``...), ``tools``
        and ``response_format``; see "Chat prompts" in the README for the mapping. Every
        value is a new plain dict or list.
        """
        messages = self.to_messages(variables, history, strict=strict)
        return _openai.openai_kwargs(
            name=self.name,
            model=self.model,
            tools=self.tools,
            response_format=self.response_format,
            messages=messages,
        )


_ATTRIBUTES = tuple(f.name for f in fields(Prompt) if f.init)


def _empty(default: Any) -> Any:
    """A field's default as a `Prompt` holds it: read-only containers."""
    if isinstance(default, dict):
        return FrozenDict()
    if isinstance(default, (list, tuple)):
        return FrozenList()
    return default


def _unpickle(values: dict[str, Any]) -> Prompt:
    return Prompt(**values)


def _malformed(problem: str, label: str | None) -> MalformedResponseError:
    return MalformedResponseError(
        f"malformed prompt from the server: {problem}",
        code="MALFORMED_RESPONSE",
        prompt=label,
    )
