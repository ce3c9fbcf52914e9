"""Figure 2: `prompt.render(variables)` of a cached prompt.

Ours: the 4 KB support prompt fetched through `PromptClient` (so it is the very object the
cache holds), rendered once to compile it, then ``prompt.render(variables)`` — the SDK's
sandboxed render with its limits. Baseline: ``jinja2.Template(body,
keep_trailing_newline=True)`` made once, then ``template.render(**variables)``: plain Jinja2
with no compilation per call. The two strings are checked equal before timing.
Target: at most 1.2x.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from time import perf_counter_ns

import jinja2

from promptory import PromptClient

from .bodies import SUPPORT_BODY, support_variables
from .measure import Figure, calibrate, interleave, per_op
from .servers import thread_server
from .session import Session

__all__ = ["run"]


def run(session: Session) -> list[Figure]:
    """Figure 2."""
    with (
        thread_server(session.small_repo(), session.api_key) as server,
        PromptClient(server.url, server.api_key) as client,
    ):
        prompt = client.get_by_name("myorg", "myapp", "support")
        assert client.get_by_name("myorg", "myapp", "support") is prompt  # from the cache
    assert prompt.body == SUPPORT_BODY
    variables = support_variables()
    template = jinja2.Template(SUPPORT_BODY, keep_trailing_newline=True)
    expected = template.render(**variables)
    rendered = prompt.render(variables)
    assert rendered == expected, "the SDK and plain Jinja2 render the body differently"

    def ours_run(n: int) -> int:
        render = prompt.render
        started = perf_counter_ns()
        for _ in repeat(None, n):
            render(variables)
        return perf_counter_ns() - started

    def base_run(n: int) -> int:
        render: Callable[..., str] = template.render
        started = perf_counter_ns()
        for _ in repeat(None, n):
            render(**variables)
        return perf_counter_ns() - started

    session.log("render: prompt.render vs precompiled jinja2.Template.render")
    n = calibrate(base_run)
    ours, base = interleave(per_op(ours_run, n), per_op(base_run, n))
    return [
        Figure.from_samples(
            "render.cached",
            "prompt.render() of a cached 4 KB prompt",
            "µs/op",
            [v / 1000 for v in ours],
            [v / 1000 for v in base],
            baseline_label="precompiled jinja2.Template.render, same body and variables",
            op="<=",
            target=1.2,
            notes=[
                f"body {len(SUPPORT_BODY.encode()):,} B, output {len(expected):,} chars; "
                f"{n:,} renders per sample; outputs checked equal"
            ],
            extra={"renders_per_sample": n, "body_bytes": len(SUPPORT_BODY.encode())},
        )
    ]
