"""Prompt snapshots: a file of prompts to serve when the server cannot be reached.

`promptory pull` writes one; `PromptClient(..., fallback="prompts.json")` reads it. The file
is JSON::

    {"format": "promptory-snapshot", "version": 1, "created_at": "2026-11-24T21:46:51Z",
     "source": "https://prompts.example.com", "prompts": [<prompt JSON as the API sends it>]}

Loading checks every prompt the way a server answer is checked; a bad file is refused at
construction with a message naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .exceptions import InvalidArgumentError, MalformedResponseError
from .prompt import ENVIRONMENTS, Prompt

__all__ = ["SNAPSHOT_FORMAT", "Snapshot", "write_snapshot"]

SNAPSHOT_FORMAT = "promptory-snapshot"


class Snapshot:
    """Prompts read from a snapshot file, found by id or by qualified name."""

    def __init__(self, prompts: Iterable[Prompt], *, source: str | None = None) -> None:
        self.source = source
        self._by_id: dict[str, Prompt] = {}
        self._by_name: dict[tuple[str, str, str], dict[str, Prompt]] = {}
        for prompt in prompts:
            prompt = replace(prompt, is_fallback=True)
            self._by_id[prompt.id] = prompt
            variants = self._by_name.setdefault((prompt.org, prompt.app, prompt.name), {})
            variants[prompt.environment] = prompt

    def __len__(self) -> int:
        return len(self._by_id)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Snapshot:
        """Read a snapshot file.

        Raises:
            InvalidArgumentError: the file is missing, not JSON, not a snapshot, or holds a
                prompt that is not valid; the message names the file and the problem.
        """
        where = os.fspath(path)
        try:
            data = json.loads(Path(where).read_text(encoding="utf-8"))
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
        """The prompt with this id, or None."""
        return self._by_id.get(prompt_id)

    def find_name(self, org: str, app: str, name: str, environment: str | None) -> Prompt | None:
        """The prompt with this qualified name: in `environment` when given, else the most
        promoted one (production, then staging, then development), as the server picks."""
        variants = self._by_name.get((org, app, name))
        if not variants:
            return None
        if environment is not None:
            return variants.get(environment)
        for candidate in reversed(ENVIRONMENTS):
            if candidate in variants and variants[candidate].active:
                return variants[candidate]
        return None


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
