"""Newline framing with a hard cap on line length (sans-IO).

The framer turns arbitrary chunks of bytes into complete lines. It never buffers more than
``max_line`` bytes of an unfinished line: once a line grows past the cap the framer drops
what it has, reports one :class:`LineTooLong` in the line's place and discards input until
the next newline, where it resynchronises. A peer that never sends a newline therefore
costs at most ``max_line`` bytes of memory.
"""

from __future__ import annotations

from proxy.stratum.errors import LineTooLong

DEFAULT_MAX_LINE = 16 * 1024
"""16 KiB: a mining.notify with a 12-deep branch and a fat coinbase is about 2 KiB, so this
leaves room for any honest pool while bounding what one connection can make us hold."""


class LineFramer:
    """Split a byte stream into lines; ``\\r\\n`` is tolerated and empty lines are skipped."""

    __slots__ = ("_discarding", "_partial", "max_line")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self.max_line = max_line
        self._partial = b""
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished line currently held (always <= ``max_line``)."""
        return len(self._partial)

    def feed(self, data: bytes) -> list[bytes | LineTooLong]:
        """Consume ``data``; return the complete lines in order.

        An over-long line appears as a :class:`LineTooLong` instance at its place in the
        list (returned, not raised, so lines after it in the same chunk are not lost).
        """
        parts = data.split(b"\n")
        tail = parts.pop()  # bytes after the last newline: an unfinished line
        out: list[bytes | LineTooLong] = []
        if parts:
            first = parts[0]
            if self._discarding:
                # The rest of an over-long line we already reported: drop it.
                self._discarding = False
                parts[0] = b""
            elif self._partial:
                parts[0] = self._partial + first
            self._partial = b""
            for line in parts:
                self._emit(line, out)
        self._hold(tail, out)
        return out

    def _emit(self, line: bytes, out: list[bytes | LineTooLong]) -> None:
        # The cap counts a trailing \r, as _hold does for a partial line: otherwise a line of
        # exactly max_line bytes plus \r\n would pass whole and fail when split before \n.
        if len(line) > self.max_line:
            out.append(self._too_long())
            return
        if line[-1:] == b"\r":
            line = line[:-1]
        if line and not line.isspace():
            out.append(line)

    def _hold(self, tail: bytes, out: list[bytes | LineTooLong]) -> None:
        if self._discarding or not tail:
            return
        partial = self._partial + tail if self._partial else tail
        if len(partial) > self.max_line:
            self._partial = b""
            self._discarding = True
            out.append(self._too_long())
        else:
            self._partial = partial

    def _too_long(self) -> LineTooLong:
        return LineTooLong(f"line longer than {self.max_line} bytes")
