"""`PromptRecord`: one prompt file of a snapshot, indexed at once, served from bytes made once.

Rules of this module:

* A record is created from the keys a fast scan read (`PromptText.keys`); the full parse, the
  body check, the last-change lookup and the JSON serialization happen together on the
  first request that needs them (`PromptRecord.served`), and their result is kept on the
  record: every later request sends the same bytes with the same ETag.
* A record belongs to every snapshot whose file at that path has the same bytes and the same
  last change, so an incremental re-index keeps unchanged records, prepared or not.
* The JSON keys follow `promptory.prompt.PROMPT_JSON_KEYS`. The ETag is
  ``"<version>-<16 hex of SHA-256 of the JSON bytes>"``: it changes exactly when the bytes
  change.
* Preparing twice from two threads gives the same result; the last assignment wins, so no
  lock is needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

from .._controls import escape_controls
from .._fields import PROMPT_FIELDS, PROMPT_JSON_KEYS, wire_value
from .files import PromptFile, PromptFileError, PromptText, app_uuid, prompt_uuid
from .history import LastChange

__all__ = ["PromptHeaders", "PromptRecord", "ServedPrompt", "dump_json"]

logger = logging.getLogger("promptory.server")


def dump_json(value: Any) -> bytes:
    """JSON bytes as the server sends them: UTF-8, compact."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only an ASCII escape can carry it
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class PromptHeaders(NamedTuple):
    """The raw headers of a served prompt under one cache policy, made once per record."""

    #: The quoted ETag, as sent.
    etag: bytes
    #: The headers of the 200: content type and length, ETag, Cache-Control.
    ok: list[tuple[bytes, bytes]]
    #: The headers of the 304 standing for it: the ETag and Cache-Control of the 200.
    not_modified: list[tuple[bytes, bytes]]


@dataclass(frozen=True, eq=False)
class ServedPrompt:
    """A valid prompt, ready to send.

    Attributes:
        file: the parsed file.
        data: the prompt JSON object (read it, do not change it).
        json: `data` serialized; what a GET answers.
        etag: the quoted strong ETag of `json`.
        meta: `data` without ``body``, for the render endpoint.
    """

    file: PromptFile
    data: dict[str, Any]
    json: bytes
    etag: str
    meta: dict[str, Any]


class PromptRecord:
    """One prompt file: where it is, what it is indexed by, and its served form once made.

    Attributes:
        path: the file's path in the repository.
        org, app: where the layout puts it.
        id, name, environment, active: the indexed keys, defaults filled in.
        text: the file's text, shared with every record of the same bytes.
        blob_id: the git blob id (hex) of the file.
    """

    __slots__ = (
        "_history",
        "_served",
        "active",
        "app",
        "blob_id",
        "environment",
        "headers",
        "id",
        "name",
        "org",
        "path",
        "stem",
        "text",
    )

    def __init__(
        self,
        *,
        path: str,
        org: str,
        app: str,
        stem: str,
        text: PromptText,
        blob_id: str,
        history: LastChange,
    ) -> None:
        keys = text.keys
        self.path = path
        self.org = org
        self.app = app
        self.stem = stem
        self.text = text
        self.blob_id = blob_id
        self.name = keys.name or stem
        self.environment = keys.environment
        self.active = keys.active
        self.id = keys.id or prompt_uuid(org, app, self.name, self.environment)
        self._history = history
        self._served: ServedPrompt | PromptFileError | None = None
        #: Response headers made from this record's ETag, by cache policy (kept by the app).
        self.headers: dict[bytes, PromptHeaders] = {}

    def __repr__(self) -> str:
        return f"<PromptRecord {self.path} id={self.id}>"

    @property
    def qualified_name(self) -> str:
        """``org/app/name``."""
        return f"{self.org}/{self.app}/{self.name}"

    @property
    def prepared(self) -> bool:
        """True once `served()` or `parse()` has run (valid or not): lookups are then free of
        parsing."""
        return self._served is not None

    def parse(self) -> bool:
        """Parse, check and serialize the file unless done already (see `served`); whether
        it can be served."""
        try:
            self.served()
        except PromptFileError:
            return False
        return True

    @property
    def ready(self) -> ServedPrompt | None:
        """The served form if prepared and valid, else None; never does any work."""
        served = self._served
        return served if isinstance(served, ServedPrompt) else None

    def served(self) -> ServedPrompt:
        """The served form: parsed, checked and serialized on first call.

        Raises:
            PromptFileError: the file cannot be served; the error names the path.
        """
        served = self._served
        if served is None:
            try:
                served = self._prepare()
            except PromptFileError as exc:
                served = exc
            self._served = served
        if isinstance(served, PromptFileError):
            # A fresh traceback each time: re-raising the kept instance would grow it.
            raise served.with_traceback(None)
        return served

    def _prepare(self) -> ServedPrompt:
        file = self.text.resolve(path=self.path, org=self.org, app=self.app, stem=self.stem)
        if (file.id, file.name, file.environment, file.active) != (
            self.id,
            self.name,
            self.environment,
            self.active,
        ):
            # The fast scan and YAML disagree: serving either would be a guess.
            logger.error(
                "front matter of %s read two ways; not serving it", escape_controls(self.path)
            )
            raise PromptFileError(
                "front matter could not be read unambiguously (id, name, environment or "
                "active); write them as plain 'key: value' lines",
                path=self.path,
            )
        change = self._history.last_change(self.path)
        # In the field table's order (`promptory._fields`); what the file does not hold
        # the server computes, and a field of the table read generically is in `extra`.
        computed = {
            "app_id": app_uuid(file.org, file.app),
            # What the existing server sends for a file without one; its SDKs type it str.
            "role": file.role or "system",
            "git_sha": change.sha,
            "updated_at": change.time,
        }
        extra = dict(file.extra)
        data = {
            spec.name: wire_value(
                spec,
                computed[spec.name]
                if spec.name in computed
                else getattr(file, spec.name, extra.get(spec.name)),
            )
            for spec in PROMPT_FIELDS
        }
        assert tuple(data) == PROMPT_JSON_KEYS
        body = dump_json(data)
        digest = hashlib.sha256(body).hexdigest()[:16]
        meta = {key: value for key, value in data.items() if key != "body"}
        return ServedPrompt(
            file=file, data=data, json=body, etag=f'"{file.version}-{digest}"', meta=meta
        )
