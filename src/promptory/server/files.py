"""Prompt files: Markdown with YAML front matter, parsed and validated.

A prompt file looks like this::

    ---
    version: 1.2.0
    environment: production
    model: {default: gemini-2.0-flash, temperature: 0.7}
    ---
    Hello {{ user_name }}

Rules of this module:

* A file is bytes from git. It is refused (`PromptFileError`) when it is over `MAX_FILE_BYTES`,
  holds a NUL byte (binary), is not UTF-8, or does not open with a ``---`` line and close its
  front matter with another. The body is everything after the closing line, byte for byte.
* Front matter is read with PyYAML's safe loader (the C one when present). Every known field
  has one type; a wrong type is an error naming the field, the expected type and the line.
  Unknown keys are kept in `FrontMatter.unknown_keys` and otherwise ignored.
* `version` is required and ends up in the ETag, so it is limited to ``[0-9A-Za-z.+-]``. A
  version YAML reads as a number (``1.10``) keeps the text as written (``"1.10"``), not the
  float's repr.
* Names (prompt, org, app, includes) match `NAME_PATTERN`: no ``/``, no leading dot.
* `id` is a UUID, kept in canonical lowercase form. Without one, a prompt's id is
  `prompt_uuid(org, app, name, environment)`, so every replica and every restart agrees.
* Parsing is split so a large repository can be indexed without parsing every file: the store
  reads the few keys it indexes with `scan_index_keys` (a line scan that answers only when it
  is sure, else None) and parses the rest on first use (`PromptText`).
* The body must compile in the shared sandbox (`promptory.rendering.compile_body`); the names
  it includes, imports or extends join the front matter's `includes`.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from .._chat import ChatError, is_chat, split_body
from .._fields import PROMPT_FIELDS, PROMPT_TYPES, ROLES, Field, front_matter_keys
from .._protocol import ENVIRONMENTS
from ..exceptions import RenderError
from ..rendering import compile_body
from .declarations import check_declarations

__all__ = [
    "KNOWN_KEYS",
    "MAX_FILE_BYTES",
    "NAMESPACE",
    "NAME_PATTERN",
    "VERSION_PATTERN",
    "FrontMatter",
    "IndexKeys",
    "PromptFile",
    "PromptFileError",
    "PromptText",
    "app_uuid",
    "canonical_id",
    "is_valid_name",
    "parse_prompt_file",
    "prompt_uuid",
    "resolve_prompt_file",
    "scan_index_keys",
]

#: Files larger than this are refused without being parsed.
MAX_FILE_BYTES = 1024 * 1024

#: The UUIDv5 namespace of promptory ids. Changing it would change every derived id.
NAMESPACE = uuid.UUID("6f1c9c1e-3b0a-5d7e-9a41-2f0d8c7b5e13")
_NAMESPACE_BYTES = NAMESPACE.bytes

#: What a prompt, org or app name looks like: a path segment that cannot climb or hide.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
#: What a version looks like: it is written into the ETag header as is.
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+-]*")

#: The front matter keys the server understands (from the field table, `promptory._fields`);
#: any other key is reported by lint.
KNOWN_KEYS: frozenset[str] = front_matter_keys() | {
    "variables",  # for `promptory lint`: the variables the body may read
}

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The opening line, and the first line after it that closes the front matter.
_OPEN = re.compile(r"\A---[ \t]*\r?\n")
_CLOSE = re.compile(r"^---[ \t]*(?:\r?\n|\Z)", re.MULTILINE)

_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})


class PromptFileError(ValueError):
    """A prompt file that cannot be served.

    Attributes:
        path: the file's path in the repository ("" when parsed without one).
        message: what is wrong, without the path.
        line: the 1-based line of the file the problem is on, when known.
    """

    def __init__(self, message: str, *, path: str = "", line: int | None = None) -> None:
        self.path = path
        self.message = message
        self.line = line
        super().__init__(f"{path}: {message}" if path else message)

    def at(self, path: str) -> PromptFileError:
        """The same error, naming `path`."""
        return PromptFileError(self.message, path=path, line=self.line)


def is_valid_name(name: str) -> bool:
    """True when `name` may be a prompt, org or app name."""
    return NAME_PATTERN.fullmatch(name) is not None


def prompt_uuid(org: str, app: str, name: str, environment: str) -> str:
    """The id of a prompt whose front matter names none: UUIDv5 of org/app/name/environment."""
    # `str(uuid.uuid5(...))` spelled out: indexing computes one per file, and this is half
    # the cost. RFC 9562 section 5.5: SHA-1 of namespace + name, version 5, variant 10.
    digest = bytearray(_sha1(_NAMESPACE_BYTES + f"{org}/{app}/{name}/{environment}".encode()))
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest[:16].hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data, usedforsecurity=False).digest()


def app_uuid(org: str, app: str) -> str:
    """An app's id (the prompt JSON's ``app_id``): UUIDv5 of ``org/app``."""
    return str(uuid.uuid5(NAMESPACE, f"{org}/{app}"))


def canonical_id(value: str) -> str | None:
    """`value` as a canonical lowercase UUID, or None when it is not a UUID."""
    if len(value) > 45:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


# --- the parsed forms -----------------------------------------------------------------------


@dataclass(frozen=True)
class IndexKeys:
    """The front matter values the store indexes by, as written (None when absent)."""

    id: str | None
    name: str | None
    environment: str
    active: bool


@dataclass(frozen=True)
class FrontMatter:
    """A validated front matter, holding only what the file itself says.

    Values the file leaves out are None (or the field's documented default), so the same
    front matter can be shared by every path holding the same bytes.
    """

    id: str | None
    name: str | None
    version: str
    type: str
    role: str | None
    environment: str
    active: bool
    domain: str | None
    description: str | None
    model: dict[str, Any]
    modality: dict[str, Any] | None
    tts: dict[str, Any] | None
    audio: dict[str, Any] | None
    tags: tuple[str, ...]
    includes: tuple[str, ...]
    unknown_keys: tuple[str, ...]
    #: Fields of the table (`promptory._fields`) read by kind, beyond those named above.
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def index_keys(self) -> IndexKeys:
        """The values the store indexes by."""
        return IndexKeys(self.id, self.name, self.environment, self.active)


@dataclass(frozen=True)
class PromptFile:
    """One prompt, fully resolved: defaults filled in from its org, app and path.

    Attributes:
        includes: the front matter's `includes` followed by the names the body includes,
            imports or extends, in order, without duplicates.
        references: only the names the body itself includes, imports or extends (what a
            render has to resolve); None stands for a name computed at run time.
    """

    path: str
    org: str
    app: str
    id: str
    name: str
    version: str
    type: str
    role: str | None
    environment: str
    active: bool
    domain: str | None
    description: str | None
    model: dict[str, Any]
    modality: dict[str, Any] | None
    tts: dict[str, Any] | None
    audio: dict[str, Any] | None
    tags: tuple[str, ...]
    body: str
    includes: tuple[str, ...]
    references: tuple[str | None, ...]
    unknown_keys: tuple[str, ...]
    extra: tuple[tuple[str, Any], ...] = ()


# --- bytes to text --------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise PromptFileError(
            f"file is {len(data):,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes"
        )
    if b"\0" in data:
        raise PromptFileError("file is binary (it holds a NUL byte)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PromptFileError(
            f"file is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            line=line,
        ) from None


def _split(text: str) -> tuple[str, str]:
    """The front matter text and the body."""
    if text.startswith("\ufeff"):
        text = text[1:]
    opening = _OPEN.match(text)
    if opening is None:
        raise PromptFileError("no front matter: a prompt file starts with a '---' line", line=1)
    closing = _CLOSE.search(text, opening.end())
    if closing is None:
        raise PromptFileError(
            "front matter is not closed: add a '---' line after it, before the body", line=1
        )
    return text[opening.end() : closing.start()], text[closing.end() :]


# --- the fast scan --------------------------------------------------------------------------

# A top-level line that is none of: `key:` + space or end, an indented line, a comment, a
# block-sequence item, a blank line. Any such line (a quoted key, `? `, `<<`, `...`, a tab,
# a stray scalar) makes the scan give up.
_ODD_LINE = re.compile(
    r"^(?![A-Za-z_][A-Za-z0-9_-]*:(?:[ \t]|\r?$)|[ #]|-[ \t]|-\r?$|\r?$)", re.MULTILINE
)
# A top-level value opening with a quote, a flow collection, an anchor or a tag.
_OPENER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*:[ \t]+(['\"\[{&!][^\n]*)$", re.MULTILINE)
# The indexed keys, with a flag set when the next line is an indented continuation.
_INDEXED = re.compile(r"^(id|name|environment|active):([^\n]*)(\n[ \t]+[^ \t\r\n])?", re.MULTILINE)
# A plain scalar that cannot start a quoted, flow, anchored or block value.
_PLAIN = re.compile(r"[^\s#'\"\[\]{},&*!|>%@`?:-][^#]*|[-?:][^\s#][^#]*")
_TRAILING_COMMENT = re.compile(r"[ \t]+#.*\Z")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_RESOLVER = Resolver()
_BOOLEANS = {"true": True, "false": False}


class _Unsure(Exception):
    pass


def _scalar(raw: str) -> str:
    """The text of a one-line plain scalar (comment and blanks stripped), or `_Unsure`."""
    value = raw.strip()
    if "#" in value:
        value = _TRAILING_COMMENT.sub("", value)
    if not value or _PLAIN.fullmatch(value) is None or ": " in value or value[-1] == ":":
        raise _Unsure
    return value


def scan_index_keys(front_text: str) -> IndexKeys | None:
    """Read `id`, `name`, `environment` and `active` without a YAML parse.

    Answers only when the front matter's top-level lines are all plain ``key: value`` lines
    (or indented continuations, list items, comments and blanks), no top-level value could
    run on to a later line, and the four keys, where present, hold one-line plain scalars of
    the right type and form. Anything else gives None: the caller then parses the front
    matter with YAML, which also reports what is wrong. Like YAML, a repeated key's last
    value wins.
    """
    if _ODD_LINE.search(front_text) is not None:
        return None
    for opener in _OPENER.finditer(front_text):
        if not _closes_on_line(opener.group(1).rstrip()):
            # A quoted or flow value may run on to later lines, even ones at column zero
            # (PyYAML allows it), and an anchor or tag may stand before one.
            return None
    found: dict[str, str] = {}
    for key, raw, continued in _INDEXED.findall(front_text):
        if continued:
            return None  # a plain scalar continued on the next line
        try:
            found[key] = _scalar(raw)
        except _Unsure:
            return None
    return _index_keys(found)


_DOUBLE_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"(?:[ \t]+#.*)?')
_SINGLE_QUOTED = re.compile(r"'(?:[^']|'')*'(?:[ \t]+#.*)?")


def _closes_on_line(raw: str) -> bool:
    opener = raw[0]
    if opener == '"':
        return _DOUBLE_QUOTED.fullmatch(raw) is not None
    if opener == "'":
        return _SINGLE_QUOTED.fullmatch(raw) is not None
    if opener in "[{":
        body = raw.split(" #", 1)[0].rstrip()
        closer = "]" if opener == "[" else "}"
        return (
            body.endswith(closer)
            and body.count(opener) == body.count(closer)
            and '"' not in body
            and "'" not in body
        )
    return False  # an anchor or a tag


# The words YAML 1.1 reads as booleans or null, lowercased: the only plain scalars that
# start with a letter and are not strings.
_YAML_WORDS = frozenset({"yes", "no", "true", "false", "on", "off", "null"})


def _reads_as_string(value: str) -> bool:
    """Whether YAML reads the plain scalar `value` (a valid name) as a string."""
    if value[0].isalpha() and value.lower() not in _YAML_WORDS:
        return True
    tag: str = _RESOLVER.resolve(ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return tag == _STR_TAG


def _index_keys(found: Mapping[str, str]) -> IndexKeys | None:
    """The keys from their scalar texts, or None when YAML would read one differently
    (`name: 123` is a number, `active: yes` a boolean of YAML 1.1) or it is invalid."""
    id_ = found.get("id")
    if id_ is not None and _CANONICAL_UUID.fullmatch(id_) is None:
        return None
    name = found.get("name")
    if name is not None and (not is_valid_name(name) or not _reads_as_string(name)):
        return None
    environment = found.get("environment", "development")
    if environment not in ENVIRONMENTS:
        return None
    active = _BOOLEANS.get(found.get("active", "true"))
    if active is None:
        return None
    return IndexKeys(id_, name, environment, active)


# --- the full parse -------------------------------------------------------------------------


def _refuse_aliases(root: Node) -> None:
    """Refuse a front matter that uses a node twice (an alias): aliases let a few lines
    expand to billions of values, or to a value that holds itself."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            line = node.start_mark.line + 2
            raise PromptFileError(
                f"front matter on line {line} uses an alias ('*'); anchors and aliases are "
                "not allowed",
                line=line,
            )
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)


def _load(front_text: str) -> tuple[dict[str, Any], dict[str, int], dict[str, str]]:
    """The front matter as a dict, each key's file line, and numbers' text as written."""
    loader = _Loader(front_text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_aliases(node)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        where = f" on line {line}" if line is not None else ""
        raise PromptFileError(
            f"invalid YAML in front matter{where}: {problem}", line=line
        ) from None
    except yaml.YAMLError as exc:
        raise PromptFileError(f"invalid YAML in front matter: {exc}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}, {}, {}
    if not isinstance(data, dict) or not isinstance(node, MappingNode):
        raise PromptFileError("front matter must be a mapping of keys to values", line=2)
    lines: dict[str, int] = {}
    texts: dict[str, str] = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode):
            lines[key_node.value] = key_node.start_mark.line + 2
            if isinstance(value_node, ScalarNode) and value_node.tag in _NUMBER_TAGS:
                texts[key_node.value] = value_node.value
    return data, lines, texts


class _Fields:
    """Reads typed fields out of a loaded front matter, naming field and line on errors."""

    def __init__(self, data: dict[str, Any], lines: dict[str, int]) -> None:
        self.data = data
        self.lines = lines

    def fail(self, key: str, message: str) -> PromptFileError:
        line = self.lines.get(key)
        where = f" (line {line})" if line is not None else ""
        return PromptFileError(f"field '{key}'{where}: {message}", line=line)

    def string(self, key: str, *, choices: tuple[str, ...] = ()) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {_yaml_type(value)}")
        if choices and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def name(self, key: str) -> str | None:
        value = self.string(key)
        if value is not None and not is_valid_name(value):
            raise self.fail(
                key, f"{value!r} is not a valid name (letters, digits, '_', '.', '-'; no '/')"
            )
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {_yaml_type(value)}")
        return value

    def mapping(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping, not {_yaml_type(value)}")
        try:
            result: dict[str, Any] = _jsonable(value, key)
        except _NotJSON as exc:
            raise self.fail(key, str(exc)) from None
        return result

    def objects(self, key: str) -> tuple[dict[str, Any], ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(key, f"must be a list of mappings, not {_yaml_type(value)}")
        try:
            return tuple(_jsonable(item, f"{key}[{i}]") for i, item in enumerate(value))
        except _NotJSON as exc:
            raise self.fail(key, str(exc)) from None

    def names(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"must be a list of strings, not {_yaml_type(value)}")
        return tuple(value)


def _yaml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return "a list"
        return "a list holding non-strings"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date"
    return type(value).__name__


class _NotJSON(Exception):
    pass


def _jsonable(value: Any, where: str) -> Any:
    """`value` with dates written as ISO strings.

    Raises:
        _NotJSON: a value JSON cannot hold (a non-finite float, a set, bytes, a non-string
            key), with a message saying where it is.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise _NotJSON(f"{where} is {value}, which JSON cannot hold")
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotJSON(f"key {key!r} in {where} must be a string (quote it)")
            result[key] = _jsonable(item, f"{where}.{key}")
        return result
    raise _NotJSON(f"{where} holds {type(value).__name__}, which JSON cannot hold")


def parse_front_matter(front_text: str) -> FrontMatter:
    """Validate a front matter text (the lines between the two ``---`` lines).

    Raises:
        PromptFileError: invalid YAML (naming the line), a wrong type (naming the field, the
            expected type and the line), a missing or malformed version, a bad name or id.
    """
    data, lines, texts = _load(front_text)
    fields = _Fields(data, lines)

    raw_version = data.get("version")
    if raw_version is None:
        raise PromptFileError("field 'version' is required (e.g. version: 1.0.0)", line=2)
    if isinstance(raw_version, bool) or not isinstance(raw_version, (str, int, float)):
        raise fields.fail("version", f"must be a string, not {_yaml_type(raw_version)}")
    version = raw_version if isinstance(raw_version, str) else texts.get("version", "")
    if VERSION_PATTERN.fullmatch(version) is None:
        raise fields.fail(
            "version", f"{version!r} is not a valid version (letters, digits, '.', '+', '-')"
        )

    raw_id = fields.string("id")
    prompt_id = None
    if raw_id is not None:
        prompt_id = canonical_id(raw_id)
        if prompt_id is None:
            raise fields.fail("id", f"{raw_id!r} is not a UUID")

    includes = fields.names("includes")
    for include in includes:
        if not is_valid_name(include):
            raise fields.fail("includes", f"{include!r} is not a prompt name (no '/' or '..')")

    extra = tuple((spec.name, _read_by_kind(fields, spec)) for spec in _GENERIC_FIELDS)
    for key, message in check_declarations(dict(extra)):
        raise fields.fail(key, message)

    return FrontMatter(
        id=prompt_id,
        name=fields.name("name"),
        version=version,
        type=fields.string("type", choices=PROMPT_TYPES) or "chat",
        role=fields.string("role", choices=ROLES),
        environment=fields.string("environment", choices=ENVIRONMENTS) or "development",
        active=fields.boolean("active", True),
        domain=fields.string("domain"),
        description=fields.string("description"),
        model=fields.mapping("model") or {},
        modality=fields.mapping("modality"),
        tts=fields.mapping("tts"),
        audio=fields.mapping("audio"),
        tags=fields.names("tags"),
        includes=includes,
        unknown_keys=tuple(str(key) for key in data if key not in KNOWN_KEYS),
        extra=extra,
    )


#: Front-matter fields of the table that no code above names: read by their kind alone.
_GENERIC_FIELDS = tuple(
    spec
    for spec in PROMPT_FIELDS
    if spec.source == "front" and spec.name not in {f.name for f in dataclass_fields(FrontMatter)}
)


def _read_by_kind(fields: _Fields, spec: Field) -> Any:
    if spec.kind == "str":
        return fields.string(spec.name, choices=spec.choices)
    if spec.kind == "bool":
        return fields.boolean(spec.name, bool(spec.default))
    if spec.kind == "object":
        return fields.mapping(spec.name)
    if spec.kind == "object_list":
        return fields.objects(spec.name)
    return fields.names(spec.name)


# --- one file's text, parsed on demand -------------------------------------------------------


class PromptText:
    """The text of one prompt file, split at once and parsed on first use.

    Shared by every path (and every snapshot) holding the same bytes, so a file is parsed
    once per content. Errors are remembered and raised again, without the path: callers add
    it with `PromptFileError.at`.

    Attributes:
        front_text: the front matter lines, as written.
        body: the template, byte-exact.
        keys: the indexed keys from `scan_index_keys`, or from a full parse when the scan was
            unsure (only then is `front_matter()` already done).
    """

    __slots__ = ("_front", "_lock", "_references", "body", "front_text", "keys")

    def __init__(self, data: bytes) -> None:
        """Decode and split `data`.

        Raises:
            PromptFileError: too large, binary, not UTF-8, no front matter, or (when the scan
                is unsure) a front matter that does not validate.
        """
        self.front_text, self.body = _split(_decode(data))
        self._front: FrontMatter | PromptFileError | None = None
        self._references: tuple[str | None, ...] | PromptFileError | None = None
        self._lock = threading.Lock()
        keys = scan_index_keys(self.front_text)
        if keys is None:
            keys = self.front_matter().index_keys
        self.keys = keys

    def front_matter(self) -> FrontMatter:
        """The validated front matter (parsed once)."""
        front = self._front
        if front is None:
            try:
                front = parse_front_matter(self.front_text)
            except PromptFileError as exc:
                front = exc
            except Exception as exc:  # a file must never take the index down with it
                front = PromptFileError(
                    f"front matter could not be read ({type(exc).__name__}: {exc})"
                )
            self._front = front
        if isinstance(front, PromptFileError):
            # A fresh traceback each time: re-raising the kept instance would grow it.
            raise front.with_traceback(None)
        return front

    def references(self) -> tuple[str | None, ...]:
        """The names the body includes, imports or extends (compiled once)."""
        references = self._references
        if references is None:
            # compile_body keeps a bounded cache of its own; the lock only keeps two
            # threads from compiling the same large body at the same time.
            with self._lock:
                references = self._references
                if references is None:
                    try:
                        references = compile_body(self.body).references
                        self._check_messages()
                    except RenderError as exc:
                        references = self._syntax_error(exc)
                    except PromptFileError as exc:
                        references = exc
                    self._references = references
        if isinstance(references, PromptFileError):
            raise references.with_traceback(None)
        return references

    def _check_messages(self) -> None:
        """Each message template of a chat body must compile on its own (a Jinja block may
        not span a role line)."""
        first_line = self.front_text.count("\n") + 3  # the body's first line in the file
        try:
            parts = split_body(self.body)
        except ChatError as exc:
            raise PromptFileError(str(exc), line=first_line) from None
        if not is_chat(parts):
            return
        for part in parts:
            try:
                compile_body(part.source)
            except RenderError as error:
                cause = error.__cause__
                inner = getattr(cause, "lineno", None) or 1
                line = first_line + part.line - 1 + inner - 1
                message = getattr(cause, "message", None) or error.message
                raise PromptFileError(
                    f"message template on line {line} is not valid on its own ({message}); "
                    "a Jinja block must open and close between two role lines",
                    line=line,
                ) from None

    def _syntax_error(self, error: RenderError) -> PromptFileError:
        cause = error.__cause__
        if not isinstance(cause, TemplateSyntaxError) or cause.lineno is None:
            return PromptFileError(f"body is not a valid template: {error.message}")
        # The body starts after the front matter and its two '---' lines.
        line = cause.lineno + self.front_text.count("\n") + 2
        return PromptFileError(f"template syntax error on line {line}: {cause.message}", line=line)

    def resolve(self, *, path: str, org: str, app: str, stem: str) -> PromptFile:
        """The whole prompt, defaults filled in (see `resolve_prompt_file`)."""
        try:
            front = self.front_matter()
            references = self.references()
        except PromptFileError as exc:
            raise exc.at(path) from None
        name = front.name or stem
        if not is_valid_name(name):
            raise PromptFileError(
                f"file name {stem!r} is not a valid prompt name; rename the file or set "
                "'name' in the front matter",
                path=path,
            )
        environment = front.environment
        includes = list(front.includes)
        for reference in references:
            if reference is not None and reference not in includes:
                includes.append(reference)
        return PromptFile(
            path=path,
            org=org,
            app=app,
            id=front.id or prompt_uuid(org, app, name, environment),
            name=name,
            version=front.version,
            type=front.type,
            role=front.role,
            environment=environment,
            active=front.active,
            domain=front.domain,
            description=front.description,
            model=front.model,
            modality=front.modality,
            tts=front.tts,
            audio=front.audio,
            tags=front.tags,
            body=self.body,
            includes=tuple(includes),
            references=references,
            unknown_keys=front.unknown_keys,
            extra=front.extra,
        )


def resolve_prompt_file(text: PromptText, *, path: str, org: str, app: str) -> PromptFile:
    """Resolve a prompt file at `path` of `org`/`app`: name from the file stem unless the
    front matter gives one, id derived unless given.

    Raises:
        PromptFileError: the front matter or body is invalid, or the name is not valid.
    """
    stem = path.rsplit("/", 1)[-1].removesuffix(".md")
    return text.resolve(path=path, org=org, app=app, stem=stem)


def parse_prompt_file(path: str, data: bytes, *, org: str, app: str) -> PromptFile:
    """Parse and validate one prompt file's bytes, as the server would serve it.

    Raises:
        PromptFileError: anything that keeps the file from being served; the error names
            `path` and, when it can, the line.
    """
    try:
        text = PromptText(data)
    except PromptFileError as exc:
        raise exc.at(path) from None
    return resolve_prompt_file(text, path=path, org=org, app=app)
