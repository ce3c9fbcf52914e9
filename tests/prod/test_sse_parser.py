"""The SDK's sans-IO event-stream parser, line by line as the WHATWG spec reads them."""

from __future__ import annotations

import pytest

from promptory._sse import Event, EventParser, LineSplitter, LineTooLong


def parse(text: str, parser: EventParser | None = None) -> list[Event]:
    parser = parser or EventParser()
    events = []
    for line in text.splitlines():
        event = parser.feed(line)
        if event is not None:
            events.append(event)
    return events


def test_fields_make_one_event_at_the_blank_line() -> None:
    assert parse('event: commit\nid: abc\ndata: {"x": 1}\n\n') == [
        Event("commit", '{"x": 1}', "abc")
    ]


def test_data_lines_join_with_newlines_and_one_leading_space_is_dropped() -> None:
    assert parse("data:  two spaces\ndata:none\n\n") == [Event("message", " two spaces\nnone", "")]


def test_comments_are_heartbeats_and_dispatch_nothing() -> None:
    assert parse(": ping\n\n: ping\n\n") == []


def test_an_event_without_data_is_not_dispatched_but_its_id_is_kept() -> None:
    parser = EventParser()
    assert parse("event: hello\nid: first\n\n", parser) == []
    assert parser.last_event_id == "first"
    assert parse("data: x\n\n", parser) == [Event("message", "x", "first")]


def test_an_id_holding_nul_is_ignored() -> None:
    parser = EventParser()
    parse("id: good\ndata: x\n\nid: ba\0d\ndata: y\n\n", parser)
    assert parser.last_event_id == "good"


def test_retry_takes_digits_only() -> None:
    parser = EventParser()
    parse("retry: 1500\n\nretry: soon\n\n", parser)
    assert parser.retry == 1500


def test_an_oversized_event_is_dropped_and_the_next_one_parsed() -> None:
    parser = EventParser(max_data=10)
    events = parse("data: " + "x" * 50 + "\ndata: more\n\ndata: ok\n\n", parser)
    assert events == [Event("message", "ok", "")]


def test_unknown_fields_and_lines_without_colon_are_ignored() -> None:
    assert parse("bogus: 1\nnocolon\ndata: x\n\n") == [Event("message", "x", "")]


def test_retry_takes_ascii_digits_only_and_a_bounded_count() -> None:
    parser = EventParser()
    for value in ("\u00b2", "\u0663", "-1", "1e3", "9" * 5000, ""):
        assert parser.feed(f"retry: {value}") is None
    assert parser.retry is None
    parser.feed("retry: 2500")
    assert parser.retry == 2500


def test_lines_split_on_every_ending_even_across_chunks() -> None:
    lines = LineSplitter()
    assert lines.feed(b"a\r") == ["a"]
    assert lines.feed(b"\nb\n\nc\rd") == ["b", "", "c"]
    assert lines.feed(b"\xff\n") == ["d\ufffd"]


def test_a_line_past_the_bound_ends_the_stream_without_keeping_it() -> None:
    lines = LineSplitter(max_line=10)
    assert lines.feed(b"data: " + b"x" * 3) == []
    with pytest.raises(LineTooLong):
        lines.feed(b"y" * 1000)
    assert len(lines._buffer) <= 10
