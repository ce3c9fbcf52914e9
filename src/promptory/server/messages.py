"""The messages of a render answer: what the render endpoint adds after ``model``.

A render job of a chat body answers the text of each message template (`render.render_job`);
this module joins them into ``rendered_body`` exactly as `Prompt.render` does, and builds
``messages`` as `Prompt.to_messages` does, so a local render and a server render agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .. import _chat
from .._inputs import InputsError, parse_inputs, with_defaults
from .render import RenderJob, message_templates

__all__ = ["rendered_answer", "with_input_defaults"]


def with_input_defaults(
    data: Mapping[str, Any], variables: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """`variables` with the defaults of the prompt's declared ``inputs`` filled in, as
    `Prompt.render` does (the inputs were checked when the file was indexed)."""
    try:
        specs = parse_inputs(data.get("inputs"))
    except InputsError:
        return variables
    return with_defaults(specs, variables)


def rendered_answer(
    job: RenderJob,
    body: str,
    role: str | None,
    result: str,
    variables: Mapping[str, Any] | None,
) -> tuple[str, list[dict[str, Any]]]:
    """``(rendered_body, messages)`` from what the worker answered for `job`.

    Raises:
        ChatError: the history list in `variables` is not a list of messages.
    """
    if not job.parts:
        return result, [{"role": role or "system", "content": result}]
    texts = json.loads(result)
    parts = message_templates(body)
    return _chat.join_rendered(parts, texts), _chat.build_messages(parts, texts, variables, role)
