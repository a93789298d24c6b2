"""LineFramer: newline framing with a hard cap, sans-IO."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.stratum.errors import LineTooLong, PeerError
from proxy.stratum.framing import DEFAULT_MAX_LINE, LineFramer
from tests.unit.support import FAST

FRAMING = settings(FAST, max_examples=300)

TOO_LONG = "<too long>"


def _norm(items: list[bytes | LineTooLong]) -> list[bytes | str]:
    """Framer output with each LineTooLong replaced by a marker, for comparisons."""
    return [TOO_LONG if isinstance(item, LineTooLong) else item for item in items]


def _feed_all(framer: LineFramer, chunks: list[bytes]) -> list[bytes | str]:
    out: list[bytes | str] = []
    for chunk in chunks:
        out.extend(_norm(framer.feed(chunk)))
    return out


def test_default_cap() -> None:
    framer = LineFramer()
    assert framer.max_line == DEFAULT_MAX_LINE == 16 * 1024
    assert framer.buffered == 0


def test_rejects_non_positive_cap() -> None:
    with pytest.raises(ValueError, match="positive"):
        LineFramer(0)


def test_crlf_and_lf() -> None:
    framer = LineFramer()
    assert framer.feed(b'{"a":1}\r\n{"b":2}\n') == [b'{"a":1}', b'{"b":2}']
    assert framer.buffered == 0


def test_only_one_trailing_cr_is_removed() -> None:
    assert LineFramer().feed(b"x\r\r\n") == [b"x\r"]


def test_empty_and_whitespace_lines_ignored() -> None:
    framer = LineFramer()
    assert framer.feed(b"\n\n\r\n   \n\t \r\nreal\n \n") == [b"real"]


def test_line_split_across_chunks() -> None:
    framer = LineFramer()
    assert framer.feed(b'{"id"') == []
    assert framer.buffered == 5
    assert framer.feed(b":1,") == []
    assert framer.buffered == 8
    assert framer.feed(b'"x":2}\n{"id":') == [b'{"id":1,"x":2}']
    assert framer.buffered == 6
    assert framer.feed(b"3}\n") == [b'{"id":3}']
    assert framer.buffered == 0


def test_cr_and_lf_in_different_chunks() -> None:
    framer = LineFramer()
    assert framer.feed(b"abc\r") == []
    assert framer.feed(b"\ndef") == [b"abc"]
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [b"def"]


def test_byte_at_a_time() -> None:
    framer = LineFramer()
    out: list[bytes | LineTooLong] = []
    for b in b"one\r\ntwo\n\nthree\n":
        out.extend(framer.feed(bytes([b])))
    assert out == [b"one", b"two", b"three"]


def test_line_at_cap_passes() -> None:
    framer = LineFramer(max_line=10)
    assert framer.feed(b"x" * 10 + b"\n") == [b"x" * 10]
    assert framer.feed(b"y" * 10) == []
    assert framer.buffered == 10
    assert framer.feed(b"\n") == [b"y" * 10]


def test_over_long_line_in_one_chunk_resynchronises() -> None:
    framer = LineFramer(max_line=10)
    out = framer.feed(b"short\n" + b"x" * 11 + b"\nafter\nnext\n")
    assert len(out) == 4
    assert out[0] == b"short"
    too_long = out[1]
    assert isinstance(too_long, LineTooLong)
    assert isinstance(too_long, PeerError)
    assert "10" in too_long.message
    assert out[2:] == [b"after", b"next"]
    assert framer.buffered == 0


def test_over_long_partial_reported_once_and_discarded() -> None:
    framer = LineFramer(max_line=10)
    first = framer.feed(b"x" * 11)
    assert len(first) == 1
    assert isinstance(first[0], LineTooLong)
    assert framer.buffered == 0
    # More of the same line: nothing reported, nothing held.
    assert framer.feed(b"y" * 100) == []
    assert framer.feed(b"z" * 5) == []
    assert framer.buffered == 0
    # The newline ends the discarded line; the next line comes out whole.
    assert framer.feed(b"zz\nok\npart") == [b"ok"]
    assert framer.buffered == 4
    assert framer.feed(b"ial\n") == [b"partial"]


def test_partial_grows_past_cap_over_two_chunks() -> None:
    framer = LineFramer(max_line=10)
    assert framer.feed(b"x" * 10) == []
    out = framer.feed(b"x")
    assert len(out) == 1
    assert isinstance(out[0], LineTooLong)
    assert framer.feed(b"\nfine\n") == [b"fine"]


def test_partial_completed_past_cap() -> None:
    framer = LineFramer(max_line=10)
    assert framer.feed(b"x" * 6) == []
    out = framer.feed(b"x" * 6 + b"\nok\n")
    assert _norm(out) == [TOO_LONG, b"ok"]


def test_crlf_at_cap_same_whole_or_split() -> None:
    # Ten bytes plus \r\n: the answer must not depend on where the stream was split.
    whole = _norm(LineFramer(max_line=10).feed(b"x" * 10 + b"\r\n"))
    split = _feed_all(LineFramer(max_line=10), [b"x" * 10 + b"\r", b"\n"])
    assert whole == split


def test_too_long_whitespace_line_still_reported() -> None:
    framer = LineFramer(max_line=4)
    assert _norm(framer.feed(b" " * 9 + b"\nx\n")) == [TOO_LONG, b"x"]


@FRAMING
@given(
    chunks=st.lists(st.binary(max_size=80), max_size=20),
    max_line=st.integers(min_value=1, max_value=40),
)
def test_framer_never_raises_and_bounds_memory(chunks: list[bytes], max_line: int) -> None:
    framer = LineFramer(max_line=max_line)
    for chunk in chunks:
        out = framer.feed(chunk)
        assert framer.buffered <= max_line
        for item in out:
            if isinstance(item, LineTooLong):
                continue
            assert isinstance(item, bytes)
            assert item
            assert not item.isspace()
            assert b"\n" not in item
            assert len(item) <= max_line


_line_bytes = st.binary(max_size=10).map(lambda b: b.replace(b"\n", b""))


@FRAMING
@given(
    lines=st.lists(st.tuples(_line_bytes, st.booleans()), max_size=15),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=12),
    max_line=st.integers(min_value=1, max_value=9),
)
def test_split_points_do_not_change_output(
    lines: list[tuple[bytes, bool]], cuts: list[int], max_line: int
) -> None:
    stream = b"".join(line + (b"\r\n" if crlf else b"\n") for line, crlf in lines)
    whole = _norm(LineFramer(max_line=max_line).feed(stream))
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert b"".join(chunks) == stream
    assert _feed_all(LineFramer(max_line=max_line), chunks) == whole
    # And the whole-stream output is what the lines say it should be.
    expected: list[bytes | str] = []
    for line, crlf in lines:
        raw = line + b"\r" if crlf else line
        if len(raw) > max_line:
            expected.append(TOO_LONG)
        else:
            content = raw[:-1] if raw.endswith(b"\r") else raw
            if content and not content.isspace():
                expected.append(content)
    assert whole == expected


@FRAMING
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=10))
def test_split_points_do_not_change_output_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    whole = _norm(LineFramer(max_line=8).feed(data))
    assert _feed_all(LineFramer(max_line=8), chunks) == whole
