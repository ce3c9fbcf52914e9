"""Include verdicts for a whole snapshot: which served prompts can never render.

`render.plan` resolves one prompt's includes before it renders. `check_includes` answers the
same question for every prompt of a snapshot at once, with the planner's own resolution and
messages, so ``GET /api/v1/status`` and ``promptory lint`` report exactly the error a render
would answer: a missing prompt, a computed name, a cycle, nesting deeper than
`render.MAX_INCLUDE_DEPTH`. Each include is resolved once, whatever the shape of the graph.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .records import PromptRecord
from .render import MAX_INCLUDE_DEPTH, IncludeError, _too_deep
from .render import _resolve as resolve_include
from .store import Problem, Snapshot

__all__ = ["IncludeCheck", "IncludeError", "check_includes", "include_problems", "resolve_include"]


@dataclass
class IncludeCheck:
    """What `check_includes` found.

    Attributes:
        errors: the error `plan` would raise, by the path of each prompt that has one.
        visits: includes resolved: once per include of each prompt, whatever the graph.
    """

    errors: dict[str, IncludeError] = field(default_factory=dict)
    visits: int = 0


def check_includes(snapshot: Snapshot, records: Iterable[PromptRecord]) -> IncludeCheck:
    """The include error of each of `records` (served prompts of `snapshot`) that has one.

    One depth-first pass over the include graph, without recursion: each prompt's result
    (its include height, or its error) is found once and reused by every prompt including
    it, so the work is linear in the size of the graph. Errors are those `plan` raises: a
    prompt including a prompt whose includes fail fails with the same error.
    """
    check = IncludeCheck()
    done: dict[PromptRecord, int | IncludeError] = {}
    deepest: dict[PromptRecord, PromptRecord] = {}
    height: dict[PromptRecord, int] = {}
    for root in records:
        if root in done:
            continue
        stack: list[tuple[PromptRecord, Iterator[str | None]]] = [
            (root, iter(root.served().file.references))
        ]
        on_stack = {root: 0}
        while stack:
            node, references = stack[-1]
            pushed = False
            if node not in done:
                for reference in references:
                    check.visits += 1
                    try:
                        child = resolve_include(snapshot, node, reference)
                    except IncludeError as exc:
                        done[node] = exc
                        break
                    if child in on_stack:
                        cycle = [entry[0] for entry in stack[on_stack[child] :]]
                        names = " -> ".join(r.name for r in (*cycle, child))
                        done[node] = IncludeError(f"include cycle: {names}")
                        break
                    result = done.get(child)
                    if result is None:
                        on_stack[child] = len(stack)
                        stack.append((child, iter(child.served().file.references)))
                        pushed = True
                        break
                    if isinstance(result, IncludeError):
                        done[node] = result
                        break
                    if result + 1 > height.get(node, 0):
                        height[node] = result + 1
                        deepest[node] = child
            if pushed:
                continue
            result = done.setdefault(node, height.get(node, 0))
            stack.pop()
            del on_stack[node]
            if stack:
                parent = stack[-1][0]
                if isinstance(result, IncludeError):
                    done.setdefault(parent, result)
                elif result + 1 > height.get(parent, 0):
                    height[parent] = result + 1
                    deepest[parent] = node
    for record, result in done.items():
        if isinstance(result, IncludeError):
            check.errors[record.path] = result
        elif result > MAX_INCLUDE_DEPTH:
            chain = [record]
            while chain[-1] in deepest and len(chain) <= MAX_INCLUDE_DEPTH + 1:
                chain.append(deepest[chain[-1]])
            check.errors[record.path] = _too_deep(chain)
    return check


_CHECKS: weakref.WeakKeyDictionary[Snapshot, IncludeCheck] = weakref.WeakKeyDictionary()
_CHECKS_LOCK = threading.Lock()


def include_problems(
    snapshot: Snapshot, allow: Callable[[str, str], bool] | None = None
) -> list[Problem]:
    """The served prompts of `snapshot` that cannot render for their includes, as problems
    (checked once per snapshot). `allow(org, app)` keeps only a key's scope."""
    with _CHECKS_LOCK:
        check = _CHECKS.get(snapshot)
    if check is None:
        check = check_includes(snapshot, snapshot.prompts())
        with _CHECKS_LOCK:
            _CHECKS[snapshot] = check
    problems = []
    for record in snapshot.prompts(allow=allow):
        error = check.errors.get(record.path)
        if error is not None:
            line = record.text.front_text.count("\n") + 3
            problems.append(Problem(record.path, error.message, line=line, served=True))
    return problems
