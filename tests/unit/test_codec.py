"""Codec: decode every message both directions, explain failures, encode replies."""

from __future__ import annotations

import json
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.stratum.codec import (
    ERROR_MESSAGES,
    TRUE_REPLY,
    LineEncoder,
    ShareReply,
    decode_miner_line,
    decode_server_line,
    encode_id,
    encode_notify,
    error_reply,
    error_tail,
    parse_share_reply,
    result_tail,
)
from proxy.stratum.errors import (
    ErrorCode,
    FramingError,
    InvalidParams,
    InvalidRequest,
    NotJson,
    NotStratum,
    PeerError,
    UnknownMethod,
)
from proxy.stratum.messages import (
    MINER_METHODS,
    SERVER_METHODS,
    Authorize,
    AuthorizeParams,
    Configure,
    ConfigureParams,
    EmptyParams,
    ErrorReply,
    ExtranonceSubscribe,
    GetTransactions,
    GetTransactionsParams,
    GetVersion,
    MinerRequest,
    Notify,
    NotifyParams,
    Reconnect,
    ReconnectParams,
    Response,
    ResultReply,
    ServerMessage,
    SetDifficulty,
    SetDifficultyParams,
    SetExtranonce,
    SetExtranonceParams,
    SetVersionMask,
    SetVersionMaskParams,
    ShowMessage,
    ShowMessageParams,
    Submit,
    SubmitParams,
    Subscribe,
    SubscribeParams,
    SuggestDifficulty,
    SuggestDifficultyParams,
    SuggestTarget,
    SuggestTargetParams,
)
from tests.unit.support import FAST, load_vectors

# --------------------------------------------------------------------------- strategies

INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
request_ids = st.one_of(st.none(), INT64, st.text(max_size=12))
text = st.text(max_size=16)
opt_text = st.none() | text
hex_text = st.text(alphabet="0123456789abcdefABCDEF", max_size=16)
difficulty = st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False)
finite = st.floats(allow_nan=False, allow_infinity=False)
config_value = st.one_of(st.none(), st.booleans(), INT64, finite, text)

submit_params = st.builds(
    SubmitParams,
    worker=text,
    job_id=text,
    extranonce2=hex_text,
    ntime=hex_text,
    nonce=hex_text,
    version_bits=st.none() | hex_text,
)
notify_params = st.builds(
    NotifyParams,
    job_id=text,
    prevhash=hex_text,
    coinb1=hex_text,
    coinb2=hex_text,
    merkle_branch=st.lists(hex_text, max_size=4),
    version=hex_text,
    nbits=hex_text,
    ntime=hex_text,
    clean_jobs=st.booleans(),
)

MINER_STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    Submit: st.builds(Submit, id=request_ids, params=submit_params),
    Subscribe: st.builds(
        Subscribe, id=request_ids, params=st.builds(SubscribeParams, user_agent=text, session_id=opt_text)
    ),
    Authorize: st.builds(
        Authorize, id=request_ids, params=st.builds(AuthorizeParams, username=text, password=opt_text)
    ),
    Configure: st.builds(
        Configure,
        id=request_ids,
        params=st.builds(
            ConfigureParams,
            extensions=st.lists(text, max_size=4),
            parameters=st.dictionaries(text, config_value, max_size=4),
        ),
    ),
    SuggestDifficulty: st.builds(
        SuggestDifficulty, id=request_ids, params=st.builds(SuggestDifficultyParams, difficulty=difficulty)
    ),
    SuggestTarget: st.builds(
        SuggestTarget, id=request_ids, params=st.builds(SuggestTargetParams, target=hex_text)
    ),
    ExtranonceSubscribe: st.builds(ExtranonceSubscribe, id=request_ids, params=st.builds(EmptyParams)),
    GetTransactions: st.builds(
        GetTransactions, id=request_ids, params=st.builds(GetTransactionsParams, job_id=opt_text)
    ),
}

SERVER_STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    SetDifficulty: st.builds(
        SetDifficulty, id=request_ids, params=st.builds(SetDifficultyParams, difficulty=difficulty)
    ),
    Notify: st.builds(Notify, id=request_ids, params=notify_params),
    SetVersionMask: st.builds(
        SetVersionMask, id=request_ids, params=st.builds(SetVersionMaskParams, mask=hex_text)
    ),
    SetExtranonce: st.builds(
        SetExtranonce,
        id=request_ids,
        params=st.builds(SetExtranonceParams, extranonce1=hex_text, extranonce2_size=st.integers(0, 16)),
    ),
    Reconnect: st.builds(
        Reconnect,
        id=request_ids,
        params=st.builds(
            ReconnectParams,
            host=opt_text,
            port=st.one_of(st.none(), st.integers(0, 65535), text),
            wait=st.none() | finite,
        ),
    ),
    ShowMessage: st.builds(ShowMessage, id=request_ids, params=st.builds(ShowMessageParams, message=text)),
    GetVersion: st.builds(GetVersion, id=request_ids, params=st.builds(EmptyParams)),
}

json_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), INT64, finite, text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
responses = st.builds(
    Response,
    id=request_ids,
    result=json_values.map(lambda v: msgspec.Raw(msgspec.json.encode(v))),
    error=json_values.map(lambda v: msgspec.Raw(msgspec.json.encode(v))),
    reject_reason=opt_text,
)


def _line(message: object) -> bytes:
    encoded = LineEncoder().encode(message)
    assert encoded.endswith(b"\n")
    assert encoded.count(b"\n") == 1
    return encoded[:-1]


def test_strategies_cover_every_message() -> None:
    # The unions are the source of truth: a new message without a strategy fails here.
    assert set(MINER_STRATEGIES) == set(get_args(MinerRequest))
    assert set(SERVER_STRATEGIES) == set(get_args(ServerMessage))
    assert {str(c.__struct_config__.tag) for c in MINER_STRATEGIES} == MINER_METHODS
    assert {str(c.__struct_config__.tag) for c in SERVER_STRATEGIES} == SERVER_METHODS


@FAST
@given(st.one_of(*MINER_STRATEGIES.values()))
def test_miner_requests_round_trip(message: Any) -> None:
    decoded = decode_miner_line(_line(message))
    assert type(decoded) is type(message)
    assert decoded == message


@FAST
@given(st.one_of(*SERVER_STRATEGIES.values()))
def test_server_messages_round_trip(message: Any) -> None:
    decoded = decode_server_line(_line(message))
    assert type(decoded) is type(message)
    assert decoded == message


@FAST
@given(responses)
def test_responses_round_trip_both_directions(message: Response) -> None:
    line = msgspec.json.encode(message)
    for decode in (decode_miner_line, decode_server_line):
        decoded = decode(line)
        assert isinstance(decoded, Response)
        assert decoded.id == message.id
        assert msgspec.json.decode(decoded.result) == msgspec.json.decode(message.result)
        assert msgspec.json.decode(decoded.error) == msgspec.json.decode(message.error)
        assert decoded.reject_reason == message.reject_reason


@FAST
@given(notify_params)
def test_encode_notify_round_trip(params: NotifyParams) -> None:
    line = encode_notify(params)
    assert line.endswith(b"\n")
    decoded = decode_server_line(line.rstrip(b"\n"))
    assert isinstance(decoded, Notify)
    assert decoded.params == params
    assert decoded.id is None
    assert json.loads(line)["method"] == "mining.notify"


def test_submit_with_and_without_version_bits() -> None:
    five = decode_miner_line(b'{"id":4,"method":"mining.submit","params":["w","1","00","6b05","0a"]}')
    six = decode_miner_line(b'{"id":4,"method":"mining.submit","params":["w","1","00","6b05","0a","2000"]}')
    assert isinstance(five, Submit)
    assert isinstance(six, Submit)
    assert five.params.version_bits is None
    assert six.params.version_bits == "2000"


def test_extra_trailing_params_ignored() -> None:
    # GMiner sends host and port after the session id.
    msg = decode_miner_line(b'{"id":1,"method":"mining.subscribe","params":["gminer/3",null,"pool",3333]}')
    assert msg == Subscribe(id=1, params=SubscribeParams(user_agent="gminer/3", session_id=None))


def test_missing_params_take_defaults() -> None:
    assert decode_miner_line(b'{"id":1,"method":"mining.subscribe"}') == Subscribe(id=1)
    assert decode_miner_line(b'{"id":1,"method":"mining.subscribe","params":[]}') == Subscribe(id=1)
    assert decode_miner_line(b'{"id":"x","method":"mining.extranonce.subscribe","params":[]}') == (
        ExtranonceSubscribe(id="x")
    )
    reconnect = decode_server_line(b'{"id":null,"method":"client.reconnect","params":["h","3333",5]}')
    assert reconnect == Reconnect(params=ReconnectParams(host="h", port="3333", wait=5.0))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("request_id", [7, "abc", None, 2**64 - 1])
def test_unknown_method(request_id: int | str | None) -> None:
    line = json.dumps({"id": request_id, "method": "mining.foo", "params": []}).encode()
    with pytest.raises(UnknownMethod) as info:
        decode_miner_line(line)
    err = info.value
    assert err.code == 20
    assert err.message == "Unknown method"
    assert err.request_id == request_id
    assert err.method == "mining.foo"


def test_server_method_from_miner_is_unknown() -> None:
    with pytest.raises(UnknownMethod) as info:
        decode_miner_line(b'{"id":3,"method":"mining.notify","params":[]}')
    assert info.value.request_id == 3
    with pytest.raises(UnknownMethod):
        decode_server_line(b'{"id":3,"method":"mining.submit","params":["w","j","e","t","n"]}')


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b'{"id":4,"method":"mining.submit","params":["w","j",5,"t","n"]}', "extranonce2"),
        (b'{"id":4,"method":"mining.submit","params":["w","j","e","t",null]}', "nonce"),
        (b'{"id":4,"method":"mining.submit","params":["w","j"]}', "params"),
        (b'{"id":4,"method":"mining.submit","params":{"worker":"w"}}', "params"),
        (b'{"id":4,"method":"mining.authorize","params":[5,"x"]}', "username"),
        (b'{"id":4,"method":"mining.suggest_difficulty","params":[0]}', "difficulty"),
        (b'{"id":4,"method":"mining.suggest_difficulty","params":[-3]}', "difficulty"),
        (b'{"id":4,"method":"mining.configure","params":["version-rolling"]}', "extensions"),
    ],
)
def test_invalid_params_names_field(line: bytes, field: str) -> None:
    with pytest.raises(InvalidParams) as info:
        decode_miner_line(line)
    err = info.value
    assert err.code == 20
    assert err.request_id == 4
    method = json.loads(line)["method"]
    assert err.message.startswith(f"invalid params for {method}: {field}")
    assert not isinstance(err, FramingError)


def test_invalid_server_params_names_field() -> None:
    with pytest.raises(InvalidParams) as info:
        decode_server_line(b'{"id":null,"method":"mining.set_difficulty","params":[0]}')
    assert "difficulty" in info.value.message
    with pytest.raises(InvalidParams) as info:
        decode_server_line(
            b'{"id":null,"method":"mining.notify","params":["a","b","c","d",[],"v","n","t","yes"]}'
        )
    assert "clean_jobs" in info.value.message


@pytest.mark.parametrize("line", [b"hello", b"{", b'{"id":1,', b"\xff\xfe", b"nul"])
def test_not_json(line: bytes) -> None:
    for decode in (decode_miner_line, decode_server_line):
        with pytest.raises(NotJson) as info:
            decode(line)
        assert isinstance(info.value, FramingError)
        assert isinstance(info.value, PeerError)
        assert not isinstance(info.value, NotStratum)


@pytest.mark.parametrize(
    ("line", "protocol"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "TLS ClientHello"),
        (b"\x16\x03\x03\x00\x10", "TLS ClientHello"),
        (b"GET / HTTP/1.1", "HTTP request"),
        (b"POST /rpc HTTP/1.0", "HTTP request"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", "PROXY protocol header on a listener without proxy_protocol"),
    ],
)
def test_not_stratum(line: bytes, protocol: str) -> None:
    with pytest.raises(NotStratum) as info:
        decode_miner_line(line)
    assert info.value.protocol == protocol
    assert isinstance(info.value, NotJson)
    assert isinstance(info.value, FramingError)


@pytest.mark.parametrize("line", [b"[1,2,3]", b"[]", b"42", b'"mining.submit"', b"null", b"true"])
def test_not_an_object_is_invalid_request(line: bytes) -> None:
    for decode in (decode_miner_line, decode_server_line):
        with pytest.raises(InvalidRequest) as info:
            decode(line)
        assert not isinstance(info.value, FramingError)
        assert info.value.code == 20
        assert info.value.request_id is None


@pytest.mark.parametrize(
    "line",
    [
        b'{"id":1.5,"method":"mining.subscribe","params":[]}',
        b'{"id":1.0,"method":"mining.subscribe","params":[]}',
        b'{"id":true,"method":"mining.subscribe","params":[]}',
        b'{"id":[1],"method":"mining.subscribe","params":[]}',
        b'{"id":{"a":1},"method":"mining.submit","params":[]}',
    ],
)
def test_bad_id_is_invalid_request(line: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_miner_line(line)
    assert info.value.request_id is None
    assert "id" in info.value.message


def test_missing_or_bad_method() -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_miner_line(b'{"id":9}')
    assert info.value.request_id == 9
    assert "method" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        decode_miner_line(b'{"id":9,"method":5,"params":[]}')
    assert info.value.request_id == 9


def test_invalid_response_shape() -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_server_line(b'{"id":3,"result":true,"error":null,"reject-reason":5}')
    assert info.value.request_id == 3


def test_miner_response_to_get_version() -> None:
    msg = decode_miner_line(b'{"id":5,"result":"cgminer/4.11","error":null}')
    assert isinstance(msg, Response)
    assert msg.id == 5
    assert msgspec.json.decode(msg.result) == "cgminer/4.11"
    assert msgspec.json.decode(msg.error) is None
    assert msg.reject_reason is None


def test_response_with_only_error() -> None:
    msg = decode_server_line(b'{"id":2,"error":[24,"Unauthorized worker",null]}')
    assert isinstance(msg, Response)
    assert bytes(msg.result) == b"null"


# --------------------------------------------------------------------------- reply encoding


def test_true_reply_exact_bytes() -> None:
    assert TRUE_REPLY.reply(4) == b'{"id":4,"result":true,"error":null}\n'
    assert TRUE_REPLY.reply("auth") == b'{"id":"auth","result":true,"error":null}\n'
    assert TRUE_REPLY.reply(None) == b'{"id":null,"result":true,"error":null}\n'


@pytest.mark.parametrize(
    "request_id",
    [0, 1, 255, 256, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**64 - 1, -(2**63), "", "xnsub", 'q"uo\\te', "ü"],
)
def test_ids_echoed_exactly(request_id: int | str) -> None:
    line = TRUE_REPLY.reply(request_id)
    assert line.endswith(b"\n")
    assert json.loads(line) == {"id": request_id, "result": True, "error": None}
    assert encode_id(request_id) == json.dumps(request_id, ensure_ascii=False, separators=(",", ":")).encode()
    # And the reply decodes back through our own decoder with the same id.
    decoded = decode_server_line(line.rstrip(b"\n"))
    assert isinstance(decoded, Response)
    assert decoded.id == request_id


@FAST
@given(request_ids)
def test_encode_id_matches_msgspec(request_id: int | str | None) -> None:
    assert encode_id(request_id) == msgspec.json.encode(request_id)


def test_error_reply_shape() -> None:
    err = PeerError("Duplicate share", code=ErrorCode.DUPLICATE, request_id=9)
    assert error_reply(err) == b'{"id":9,"result":null,"error":[22,"Duplicate share",null]}\n'
    unknown = UnknownMethod("mining.foo", "abc")
    assert error_reply(unknown) == b'{"id":"abc","result":null,"error":[20,"Unknown method",null]}\n'
    assert error_tail(23, 'say "hi"').reply(1) == b'{"id":1,"result":null,"error":[23,"say \\"hi\\"",null]}\n'


def test_result_tail() -> None:
    assert result_tail([]).reply("txlist1") == b'{"id":"txlist1","result":[],"error":null}\n'
    assert result_tail({"version-rolling": True}).reply(0) == (
        b'{"id":0,"result":{"version-rolling":true},"error":null}\n'
    )


def test_line_encoder_returns_independent_bytes() -> None:
    encoder = LineEncoder()
    first = encoder.encode(ResultReply(id=1, result=[1, 2, 3]))
    second = encoder.encode(ErrorReply(id="x", error=(21, "Job not found", None)))
    assert first == b'{"id":1,"result":[1,2,3],"error":null}\n'
    assert second == b'{"id":"x","error":[21,"Job not found",null],"result":null}\n'
    assert json.loads(second) == {"id": "x", "result": None, "error": [21, "Job not found", None]}
    # A long message grows the buffer; earlier results are not affected.
    big = encoder.encode(ShowMessage(params=ShowMessageParams(message="m" * 2000)))
    assert len(big) > 2000
    assert first == b'{"id":1,"result":[1,2,3],"error":null}\n'


def test_error_messages_cover_every_code() -> None:
    assert set(ERROR_MESSAGES) == set(ErrorCode)
    assert ERROR_MESSAGES[ErrorCode.JOB_NOT_FOUND] == "Job not found"


# --------------------------------------------------------------------------- upstream verdicts

# Expected verdicts of tests/data/stratum_vectors.json -> upstream_reply_shapes, by JSON text.
EXPECTED_REPLY_SHAPES: dict[str, ShareReply] = {
    '{"reject-reason":"Above target 2","result":false,"error":null,"id":8}': ShareReply(
        False, None, "Above target 2"
    ),
    '{"id":4,"result":null,"error":[21,"Job not found",""]}': ShareReply(False, 21, "Job not found"),
    '{"result":false,"error":"Stale","id":618}': ShareReply(False, None, "Stale"),
    '{"id":10,"result":null,"error":[21,"Job not found",null]}': ShareReply(False, 21, "Job not found"),
}


def test_upstream_reply_shapes_from_vectors() -> None:
    shapes: list[dict[str, str]] = load_vectors()["upstream_reply_shapes"]
    assert {s["json"] for s in shapes} == set(EXPECTED_REPLY_SHAPES)
    for shape in shapes:
        response = decode_server_line(shape["json"].encode())
        assert isinstance(response, Response)
        assert shape["meaning"].startswith("reject")
        verdict = parse_share_reply(response)
        assert verdict == EXPECTED_REPLY_SHAPES[shape["json"]], shape


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"id":1,"result":true,"error":null}', ShareReply(True)),
        (b'{"id":1,"result":true}', ShareReply(True)),
        (
            b'{"jsonrpc":"2.0","id":1,"error":{"code":23,"message":"Low difficulty share"}}',
            ShareReply(False, 23, "Low difficulty share"),
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"result":null,"error":{"message":"nope"}}',
            ShareReply(False, None, "nope"),
        ),
        (b'{"id":1,"result":false,"error":null}', ShareReply(False, None, "rejected")),
        (b'{"id":1,"result":null,"error":null}', ShareReply(False, None, "rejected")),
        (
            b'{"id":1,"result":true,"error":[22,"Duplicate share",null]}',
            ShareReply(False, 22, "Duplicate share"),
        ),
        (b'{"id":1,"result":false,"error":[true,"weird"]}', ShareReply(False, None, "weird")),
        (b'{"id":1,"result":false,"error":[23]}', ShareReply(False, 23, "rejected")),
        (
            b'{"id":1,"result":false,"error":[],"reject-reason":"Above target"}',
            ShareReply(False, None, "Above target"),
        ),
    ],
)
def test_parse_share_reply(line: bytes, expected: ShareReply) -> None:
    response = decode_server_line(line)
    assert isinstance(response, Response)
    assert parse_share_reply(response) == expected
