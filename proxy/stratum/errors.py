"""Stratum error codes and the peer-error hierarchy.

A *peer error* is something the other side did wrong. It carries the JSON-RPC error that
should be sent back (code and message) and the request id to answer, so the IO layer never
has to invent wording. Errors the proxy itself causes are ordinary Python exceptions and
are never turned into replies.

Following h11, peer errors split in two: a :class:`PeerError` leaves the connection usable
(answer and carry on, counting it against the peer's error budget); a :class:`FramingError`
means the byte stream is not Stratum at all and the caller closes the connection.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeAlias

RequestId: TypeAlias = int | str | None
"""A JSON-RPC id as the peer sent it: echoed back verbatim, never assumed unique."""


class ErrorCode(IntEnum):
    """Stratum V1 error codes (slush's list, used by every pool; see docs/protocol.md)."""

    OTHER = 20
    JOB_NOT_FOUND = 21
    DUPLICATE = 22
    LOW_DIFFICULTY = 23
    UNAUTHORIZED = 24
    NOT_SUBSCRIBED = 25


class PeerError(Exception):
    """The peer sent something wrong; answer it with ``code``/``message`` and keep going."""

    def __init__(self, message: str, *, code: int = ErrorCode.OTHER, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = int(code)
        self.request_id = request_id


class UnknownMethod(PeerError):
    """A well-formed request for a method the proxy does not implement (error 20)."""

    def __init__(self, method: str, request_id: RequestId) -> None:
        super().__init__("Unknown method", request_id=request_id)
        self.method = method


class InvalidParams(PeerError):
    """A known method with params of the wrong shape; the message names the field."""


class InvalidRequest(PeerError):
    """Valid JSON that is not a JSON-RPC request or response object."""


class FramingError(PeerError):
    """The byte stream is not newline-delimited JSON; callers close the connection."""


class LineTooLong(PeerError):
    """A line exceeded the framer's cap. The framer has already resynchronised at the next
    newline, so the connection stays usable; the line itself is lost."""


class NotJson(FramingError):
    """A line that is not JSON at all."""


class NotStratum(NotJson):
    """A line recognised as another protocol: a TLS ClientHello or an HTTP request line.

    bfgminer opens every plain ``stratum+tcp`` connection with a ClientHello and falls back
    to plain Stratum only when the server closes on it, so closing at once is the correct
    and friendly answer."""

    def __init__(self, protocol: str) -> None:
        super().__init__(f"not Stratum: {protocol}")
        self.protocol = protocol
