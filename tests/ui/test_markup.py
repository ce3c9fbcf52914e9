"""Escaped, marked-up bodies and diffs; the kept rows of an app's page, bounded."""

from __future__ import annotations

from pathlib import Path

from promptory.server.store import PromptStore
from promptory.server.ui.markup import PromptRows, body_lines, diff_lines, error_line
from support.gitrepo import PromptRepo


def test_body_lines_escape_text_and_mark_each_jinja_construct() -> None:
    lines = body_lines("<b>{{ x }}</b>\n{% if a\n%}y{# note #}\n")
    assert lines == [
        '&lt;b&gt;<span class="jv">{{ x }}</span>&lt;/b&gt;',
        '<span class="jt">{% if a</span>',
        '<span class="jt">%}</span>y<span class="jc">{# note #}</span>',
    ]


def test_body_lines_of_an_unclosed_tag_and_a_body_without_final_newline() -> None:
    assert body_lines("a {{ b") == ['a <span class="jv">{{ b</span>']
    assert body_lines("") == [""]


def test_diff_lines_are_classified() -> None:
    diff = "--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new\n same\n"
    assert [css for css, _ in diff_lines(diff)] == ["file", "file", "hunk", "del", "add", "ctx"]


def test_error_line_reads_the_line_a_render_error_names() -> None:
    assert error_line("prompt x: render failed on line 12: boom") == 12
    assert error_line("no line here") is None


def test_prompt_rows_are_kept_per_version_and_the_cache_is_bounded(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    for index in range(5):
        repo.write_prompt("o", "a", f"p{index}", tags=["<t>"])
    repo.commit()
    records = PromptStore(str(repo.path), prepare_in_background=False).snapshot.prompts()
    rows = PromptRows(max_rows=3)
    html = rows.table(records)
    assert html.count("<tr>") == 5
    assert "&lt;t&gt;" in html and "<t>" not in html
    assert len(rows._rows) <= 3
    assert rows.row(records[-1]) is rows.row(records[-1])  # kept
