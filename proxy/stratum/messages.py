"""msgspec Structs for every Stratum V1 message the proxy speaks, both directions.

Requests and notifications are tagged by their ``method`` field, so one decoder per
direction turns a line into the right Struct in a single pass. Positional params are
``array_like`` Structs: a field name doubles as the documentation of the position, and
missing optional trailing params take their defaults while extra trailing params (GMiner
sends host and port after the subscribe session id) are ignored.

Hex fields stay ``str`` here: the codec does framing and shape, :mod:`proxy.mining` gives
the strings meaning (and checks their length and alphabet as part of share validation).
"""

from __future__ import annotations

from typing import Annotated, TypeAlias

import msgspec
from msgspec import Meta, Struct

from proxy.stratum.errors import RequestId

Difficulty: TypeAlias = Annotated[float, Meta(gt=0.0)]
"""A share difficulty: a positive float (far below 1 is legal: CPU miners run at 0.001)."""

ConfigValue: TypeAlias = str | int | float | bool | None
"""A value in the ``mining.configure`` extension map."""


# --------------------------------------------------------------------------- params


class SubmitParams(Struct, array_like=True, gc=False):
    """``mining.submit`` params; ``version_bits`` is present once version rolling is granted."""

    worker: str
    job_id: str
    extranonce2: str
    ntime: str
    nonce: str
    version_bits: str | None = None


class SubscribeParams(Struct, array_like=True):
    """``mining.subscribe`` params: user agent and an optional session id to resume."""

    user_agent: str = ""
    session_id: str | None = None


class AuthorizeParams(Struct, array_like=True):
    """``mining.authorize`` params; some firmware omits the password."""

    username: str
    password: str | None = None


class ConfigureParams(Struct, array_like=True):
    """``mining.configure`` (BIP310) params: requested extensions and their parameters."""

    extensions: list[str]
    parameters: dict[str, ConfigValue] = {}


class SuggestDifficultyParams(Struct, array_like=True):
    """``mining.suggest_difficulty`` params."""

    difficulty: Difficulty


class SuggestTargetParams(Struct, array_like=True):
    """``mining.suggest_target`` params: a 256-bit target as 64 hex digits."""

    target: str


class GetTransactionsParams(Struct, array_like=True):
    """``mining.get_transactions`` params (bfgminer sends one for every job)."""

    job_id: str | None = None


class EmptyParams(Struct, array_like=True):
    """Params of a method that takes none; anything sent is ignored."""


class SetDifficultyParams(Struct, array_like=True):
    """``mining.set_difficulty`` params."""

    difficulty: Difficulty


class NotifyParams(Struct, array_like=True, gc=False):
    """``mining.notify`` params, exactly as the pool sent them (hex strings)."""

    job_id: str
    prevhash: str
    coinb1: str
    coinb2: str
    merkle_branch: list[str]
    version: str
    nbits: str
    ntime: str
    clean_jobs: bool


class SetVersionMaskParams(Struct, array_like=True):
    """``mining.set_version_mask`` params."""

    mask: str


class SetExtranonceParams(Struct, array_like=True):
    """``mining.set_extranonce`` params."""

    extranonce1: str
    extranonce2_size: int


class ReconnectParams(Struct, array_like=True):
    """``client.reconnect`` params; all optional, and ckpool sends the port as a string."""

    host: str | None = None
    port: int | str | None = None
    wait: float | None = None


class ShowMessageParams(Struct, array_like=True):
    """``client.show_message`` params."""

    message: str


# --------------------------------------------------------------------------- miner -> server


class _Request(Struct, tag_field="method", kw_only=True):
    """Base of requests: ``id`` is echoed verbatim in the reply."""

    id: RequestId = None


class Submit(_Request, tag="mining.submit", gc=False):
    """``mining.submit``: the hot path."""

    params: SubmitParams


class Subscribe(_Request, tag="mining.subscribe"):
    """``mining.subscribe``."""

    params: SubscribeParams = msgspec.field(default_factory=SubscribeParams)


class Authorize(_Request, tag="mining.authorize"):
    """``mining.authorize``."""

    params: AuthorizeParams


class Configure(_Request, tag="mining.configure"):
    """``mining.configure`` (BIP310 extensions: version-rolling, minimum-difficulty, ...)."""

    params: ConfigureParams


class SuggestDifficulty(_Request, tag="mining.suggest_difficulty"):
    """``mining.suggest_difficulty`` (miners send it before authorize too)."""

    params: SuggestDifficultyParams


class SuggestTarget(_Request, tag="mining.suggest_target"):
    """``mining.suggest_target``."""

    params: SuggestTargetParams


class ExtranonceSubscribe(_Request, tag="mining.extranonce.subscribe"):
    """``mining.extranonce.subscribe``: the miner can follow ``mining.set_extranonce``."""

    params: EmptyParams = msgspec.field(default_factory=EmptyParams)


class GetTransactions(_Request, tag="mining.get_transactions"):
    """``mining.get_transactions``: answered with ``[]``, never fatal."""

    params: GetTransactionsParams = msgspec.field(default_factory=GetTransactionsParams)


MinerRequest: TypeAlias = (
    Submit
    | Subscribe
    | Authorize
    | Configure
    | SuggestDifficulty
    | SuggestTarget
    | ExtranonceSubscribe
    | GetTransactions
)
"""Every request a miner may send."""

MINER_METHODS: frozenset[str] = frozenset(
    str(cls.__struct_config__.tag)
    for cls in (
        Submit,
        Subscribe,
        Authorize,
        Configure,
        SuggestDifficulty,
        SuggestTarget,
        ExtranonceSubscribe,
        GetTransactions,
    )
)


# --------------------------------------------------------------------------- server -> miner


class _Notification(Struct, tag_field="method", kw_only=True):
    """Base of notifications: ``id`` is null on the wire (tolerated when a pool sets one)."""

    id: RequestId = None


class SetDifficulty(_Notification, tag="mining.set_difficulty"):
    """``mining.set_difficulty``: applies to the next job the miner receives."""

    params: SetDifficultyParams


class Notify(_Notification, tag="mining.notify"):
    """``mining.notify``: a job."""

    params: NotifyParams


class SetVersionMask(_Notification, tag="mining.set_version_mask"):
    """``mining.set_version_mask`` (BIP310): valid at once."""

    params: SetVersionMaskParams


class SetExtranonce(_Notification, tag="mining.set_extranonce"):
    """``mining.set_extranonce``: only to miners that sent ``mining.extranonce.subscribe``."""

    params: SetExtranonceParams


class Reconnect(_Notification, tag="client.reconnect"):
    """``client.reconnect``: go to host:port (or reconnect here) after ``wait`` seconds."""

    params: ReconnectParams = msgspec.field(default_factory=ReconnectParams)


class ShowMessage(_Notification, tag="client.show_message"):
    """``client.show_message``: text for a human."""

    params: ShowMessageParams


class GetVersion(Struct, tag_field="method", tag="client.get_version", kw_only=True):
    """``client.get_version``: a request from server to client (it has an id)."""

    id: RequestId = None
    params: EmptyParams = msgspec.field(default_factory=EmptyParams)


ServerMessage: TypeAlias = (
    SetDifficulty | Notify | SetVersionMask | SetExtranonce | Reconnect | ShowMessage | GetVersion
)
"""Every notification or request a server (pool or proxy) sends to its client."""

SERVER_METHODS: frozenset[str] = frozenset(
    str(cls.__struct_config__.tag)
    for cls in (SetDifficulty, Notify, SetVersionMask, SetExtranonce, Reconnect, ShowMessage, GetVersion)
)


# --------------------------------------------------------------------------- responses


class Response(Struct, omit_defaults=False):
    """A reply to a request, either direction.

    ``result`` and ``error`` stay raw: what they mean depends on the request they answer
    (a subscribe result is a nested array, a submit result a bool). ``reject_reason`` is the
    older ckpool way of saying why a share was refused.
    """

    id: RequestId = None
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: msgspec.Raw = msgspec.Raw(b"null")
    reject_reason: str | None = msgspec.field(default=None, name="reject-reason")


class ErrorReply(Struct, omit_defaults=False):
    """An error reply as the proxy sends it: ``result`` null, ``error`` ``[code, msg, null]``."""

    id: RequestId
    error: tuple[int, str, None]
    result: None = None


class ResultReply(Struct, omit_defaults=False):
    """A success reply as the proxy sends it, for any JSON-able result."""

    id: RequestId
    result: object
    error: None = None
