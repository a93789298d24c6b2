"""Decode lines into message Structs and encode replies, sans-IO.

Decoders are built once at import. The happy path is one msgspec call: a tagged union of
every request the peer may send. Only when that fails do we look again, more slowly, to
say precisely what was wrong: not JSON (close), another protocol (close), an unknown
method (error 20, keep going), or a known method with bad params (error 20 naming the
field). A miner may also send responses (to ``client.get_version``); those decode into
:class:`Response`.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec
from msgspec import Raw, Struct, UnsetType

from proxy.stratum.errors import (
    ErrorCode,
    InvalidParams,
    InvalidRequest,
    NotJson,
    NotStratum,
    PeerError,
    RequestId,
    UnknownMethod,
)
from proxy.stratum.messages import (
    MINER_METHODS,
    SERVER_METHODS,
    MinerRequest,
    Notify,
    NotifyParams,
    Response,
    ServerMessage,
)

# --------------------------------------------------------------------------- decoding

_MINER_DECODER: Final[msgspec.json.Decoder[MinerRequest]] = msgspec.json.Decoder(MinerRequest)
_SERVER_DECODER: Final[msgspec.json.Decoder[ServerMessage]] = msgspec.json.Decoder(ServerMessage)
_RESPONSE_DECODER: Final = msgspec.json.Decoder(Response)


class _Envelope(Struct):
    """A permissive view of a JSON-RPC object, used only to explain a failed decode."""

    id: Any = None
    method: Any = None
    result: Raw | UnsetType = msgspec.UNSET
    error: Raw | UnsetType = msgspec.UNSET


_ENVELOPE_DECODER: Final = msgspec.json.Decoder(_Envelope)


def _params_fields(union: Any) -> dict[str, tuple[str, ...]]:
    """Map each method of a tagged union to the names of its positional params."""
    out: dict[str, tuple[str, ...]] = {}
    for cls in union.__args__:
        params_type = next(f.type for f in msgspec.structs.fields(cls) if f.name == "params")
        out[str(cls.__struct_config__.tag)] = tuple(f.name for f in msgspec.structs.fields(params_type))
    return out


_MINER_PARAM_NAMES: Final = _params_fields(MinerRequest)
_SERVER_PARAM_NAMES: Final = _params_fields(ServerMessage)

_HTTP_REQUEST_LINE: Final = re.compile(rb"^(GET|POST|HEAD|PUT|DELETE|OPTIONS|PATCH|TRACE|CONNECT|PRI) \S")
_PATH_INDEX: Final = re.compile(r"^(.*?) - at `\$\.params(?:\[(\d+)\])?(.*)`$")


def decode_miner_line(line: bytes) -> MinerRequest | Response:
    """Decode one line a miner sent.

    Raises :class:`NotJson` / :class:`NotStratum` (close the connection), or another
    :class:`PeerError` carrying the reply to send (keep the connection).
    """
    try:
        return _MINER_DECODER.decode(line)
    except msgspec.ValidationError as exc:
        return _explain(line, exc, MINER_METHODS, _MINER_PARAM_NAMES)
    except msgspec.DecodeError:
        raise not_json(line) from None


def decode_server_line(line: bytes) -> ServerMessage | Response:
    """Decode one line a pool sent (notifications, server requests, responses)."""
    try:
        return _SERVER_DECODER.decode(line)
    except msgspec.ValidationError as exc:
        return _explain(line, exc, SERVER_METHODS, _SERVER_PARAM_NAMES)
    except msgspec.DecodeError:
        raise not_json(line) from None


def not_json(line: bytes) -> NotJson:
    """The error for a line that is not JSON, naming the protocol when we recognise it."""
    if line[:2] == b"\x16\x03":
        return NotStratum("TLS ClientHello")
    if _HTTP_REQUEST_LINE.match(line):
        return NotStratum("HTTP request")
    if line.startswith(b"PROXY "):
        return NotStratum("PROXY protocol header on a listener without proxy_protocol")
    return NotJson("not JSON")


def _explain(
    line: bytes,
    exc: msgspec.ValidationError,
    known: frozenset[str],
    param_names: dict[str, tuple[str, ...]],
) -> Response:
    """Work out what a line that failed the fast decode is: a response, or which error."""
    try:
        env = _ENVELOPE_DECODER.decode(line)
    except msgspec.ValidationError:
        raise InvalidRequest("request must be a JSON object") from None
    request_id = _valid_id(env.id)
    if env.method is None:
        if env.result is msgspec.UNSET and env.error is msgspec.UNSET:
            raise InvalidRequest("missing method", request_id=request_id)
        try:
            return _RESPONSE_DECODER.decode(line)
        except msgspec.ValidationError as resp_exc:
            raise InvalidRequest(f"invalid response: {resp_exc}", request_id=request_id) from None
    if not isinstance(env.method, str):
        raise InvalidRequest("method must be a string", request_id=request_id)
    if env.method not in known:
        raise UnknownMethod(env.method, request_id)
    raise InvalidParams(
        _describe(env.method, str(exc), param_names.get(env.method, ())),
        request_id=request_id,
    )


def _valid_id(raw_id: object) -> RequestId:
    """An id we can echo; anything else (float, list, object) is answered with id null."""
    if (
        raw_id is None
        or isinstance(raw_id, str)
        or (isinstance(raw_id, int) and not isinstance(raw_id, bool))
    ):
        return raw_id
    raise InvalidRequest("id must be an integer, a string or null")


def _describe(method: str, error: str, names: tuple[str, ...]) -> str:
    """Turn msgspec's ``... - at `$.params[2]``` into ``...: extranonce2: ...``."""
    match = _PATH_INDEX.match(error)
    if match is None:
        return f"invalid params for {method}: {error}"
    reason, index, rest = match.groups()
    if index is None:
        where = "params"
    else:
        i = int(index)
        where = names[i] if i < len(names) else f"params[{i}]"
    return f"invalid params for {method}: {where}{rest}: {reason}"


# --------------------------------------------------------------------------- encoding


class LineEncoder:
    """Compact JSON plus newline, encoded through one reused buffer.

    ``encode_into`` grows the buffer once and then reuses it, and appending the newline
    in place saves the copy a ``encode(msg) + b"\\n"`` would make. The result is returned as
    immutable ``bytes`` because transports may keep a reference to what they are given
    until the socket drains, so handing them the shared buffer would corrupt queued writes.
    """

    __slots__ = ("_buf", "_encoder")

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._buf = bytearray(512)

    def encode(self, message: object) -> bytes:
        """Encode ``message`` (a Struct or plain data) as one line."""
        buf = self._buf
        self._encoder.encode_into(message, buf)
        buf.extend(b"\n")
        return bytes(buf)


_ID_ENCODER: Final = msgspec.json.Encoder()
_SMALL_INT_IDS: Final = tuple(b"%d" % i for i in range(256))


def encode_id(request_id: RequestId) -> bytes:
    """A request id as JSON, exactly as the peer sent it."""
    if type(request_id) is int and 0 <= request_id < 256:
        return _SMALL_INT_IDS[request_id]
    return _ID_ENCODER.encode(request_id)


class ReplyTail:
    """The constant part of a reply after the id, pre-encoded once (hot path)."""

    __slots__ = ("tail",)

    def __init__(self, tail: bytes) -> None:
        self.tail = tail

    def reply(self, request_id: RequestId) -> bytes:
        """The whole reply line for ``request_id``: one allocation."""
        return b"".join((b'{"id":', encode_id(request_id), self.tail))


def result_tail(result: object) -> ReplyTail:
    """A reply tail for a successful ``result``."""
    return ReplyTail(b',"result":' + msgspec.json.encode(result) + b',"error":null}\n')


def error_tail(code: int, message: str) -> ReplyTail:
    """A reply tail for an error ``[code, message, null]``."""
    body = msgspec.json.encode([int(code), message, None])
    return ReplyTail(b',"result":null,"error":' + body + b"}\n")


TRUE_REPLY: Final = result_tail(True)
"""``{"id":N,"result":true,"error":null}``: accepted shares and most acknowledgements."""


def error_reply(error: PeerError) -> bytes:
    """The reply line for a peer error."""
    return error_tail(error.code, error.message).reply(error.request_id)


def encode_notify(params: NotifyParams) -> bytes:
    """One ``mining.notify`` line, encoded once and written to every miner that shares it."""
    return msgspec.json.encode(Notify(params=params)) + b"\n"


# --------------------------------------------------------------------------- upstream verdicts


class ShareReply(Struct, frozen=True):
    """A pool's verdict on a share, whatever shape the pool used to say it."""

    accepted: bool
    code: int | None = None
    message: str = ""


_ERROR_VALUE_DECODER: Final = msgspec.json.Decoder(Any)


def parse_share_reply(response: Response) -> ShareReply:
    """Read a pool's reply to ``mining.submit`` in every shape seen in the wild.

    ``[code, msg, traceback]`` (slush spec), a bare string (``"Stale"``), a JSON-RPC 2.0
    ``{"code", "message"}`` object, or ``result: false`` with ``reject-reason`` (older
    ckpool). Anything that is not an explicit ``true`` without an error is a rejection.
    """
    error = _ERROR_VALUE_DECODER.decode(response.error)
    result = bytes(response.result).strip()
    if error is None and result == b"true":
        return ShareReply(True)
    code, message = _error_fields(error)
    if not message:
        message = response.reject_reason or "rejected"
    return ShareReply(False, code, message)


def _error_fields(error: object) -> tuple[int | None, str]:
    """Code and message from any error shape; code None when the pool gave none."""
    if isinstance(error, list) and error:
        code = error[0] if isinstance(error[0], int) and not isinstance(error[0], bool) else None
        message = str(error[1]) if len(error) > 1 and error[1] is not None else ""
        return code, message
    if isinstance(error, str):
        return None, error
    if isinstance(error, dict):
        code = error.get("code")
        return (code if isinstance(code, int) and not isinstance(code, bool) else None), str(
            error.get("message") or ""
        )
    return None, ""


ERROR_MESSAGES: Final = {
    ErrorCode.OTHER: "Other/Unknown",
    ErrorCode.JOB_NOT_FOUND: "Job not found",
    ErrorCode.DUPLICATE: "Duplicate share",
    ErrorCode.LOW_DIFFICULTY: "Low difficulty share",
    ErrorCode.UNAUTHORIZED: "Unauthorized worker",
    ErrorCode.NOT_SUBSCRIBED: "Not subscribed",
}
"""The customary message for each code (slush's wording, which miners display)."""
