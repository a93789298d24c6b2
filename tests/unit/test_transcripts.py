"""Recorded sessions of real miners (tests/data/*.jsonl, r0-*.txt) replayed through the codec
and, for the sessions with recorded share verdicts, through the pool side: jobs, extranonce,
difficulty and ShareValidator must reproduce every recorded hash and verdict.

The recording pool logged, per share, ``ok``, ``hash`` (the display form: byte-reversed
hex of the header hash), ``err`` and ``sdiff`` (the share's difficulty rounded to 6
decimals, 0.0 for rejected shares).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest

from proxy.mining.hashing import display_hash, prevhash_from_stratum
from proxy.mining.job import Job, JobBook, JobIds
from proxy.mining.share import ShareValidator, Verdict
from proxy.mining.target import share_difficulty, target_from_difficulty
from proxy.stratum.codec import decode_miner_line, decode_server_line
from proxy.stratum.errors import NotJson, NotStratum, PeerError, RequestId
from proxy.stratum.messages import (
    Authorize,
    Configure,
    MinerRequest,
    Notify,
    NotifyParams,
    Response,
    ServerMessage,
    SetDifficulty,
    SetExtranonce,
    SetVersionMask,
    Submit,
    SubmitParams,
    Subscribe,
)
from tests.unit.support import DATA_DIR, read_transcript, transcript_paths

IN_DIRS = frozenset({"in", "miner->proxy"})
OUT_DIRS = frozenset({"out", "proxy->miner"})

TRANSCRIPTS = transcript_paths()

# Lines a miner sent that must fail to decode, per file, with the error they must raise.
EXPECTED_UNDECODABLE: dict[str, list[type[PeerError]]] = {
    "d4-bfgminer-5.5.0.jsonl": [NotStratum],  # the TLS ClientHello bfgminer opens with
}


def _wire(line: str) -> bytes:
    """A recorded line as the bytes that were on the wire (the recorder stored UTF-8 text)."""
    return line.encode("utf-8")


def test_all_transcripts_present() -> None:
    names = {p.name for p in TRANSCRIPTS}
    assert len(names) == 10
    for prefix in ("d1", "d2", "d3", "d4", "d5", "r1", "x1", "x2", "x3-", "x3b"):
        assert any(n.startswith(prefix) for n in names), prefix


# --------------------------------------------------------------------------- decode every line


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.name)
def test_every_miner_line_decodes_or_raises_documented_error(path: Path) -> None:
    records = read_transcript(path)
    lines = [_wire(r["line"]) for r in records if r["dir"] in IN_DIRS]
    decoded: list[MinerRequest | Response] = []
    failures: list[PeerError] = []
    for line in lines:
        try:
            decoded.append(decode_miner_line(line))
        except PeerError as exc:
            failures.append(exc)
    expected_failures = EXPECTED_UNDECODABLE.get(path.name, [])
    assert [type(f) for f in failures] == expected_failures
    assert len(decoded) == len(lines) - len(expected_failures)
    assert len(decoded) >= 3
    assert all(isinstance(m, (*get_args(MinerRequest), Response)) for m in decoded)
    assert any(isinstance(m, Subscribe) for m in decoded)


def test_bfgminer_tls_hello_is_not_stratum() -> None:
    records = read_transcript(DATA_DIR / "d4-bfgminer-5.5.0.jsonl")
    first_in = next(i for i, r in enumerate(records) if r["dir"] == "in")
    line = _wire(records[first_in]["line"])
    assert line[:3] == b"\x16\x03\x01"
    with pytest.raises(NotStratum) as info:
        decode_miner_line(line)
    assert info.value.protocol == "TLS ClientHello"
    # The recording server closed the connection on it; bfgminer then reconnected in plain.
    assert records[first_in + 1]["event"] == "bad_json"
    assert records[first_in + 2]["event"] == "disconnect"
    assert records[first_in + 3]["event"] == "connect"


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.name)
def test_every_server_line_decodes(path: Path) -> None:
    lines = [_wire(r["line"]) for r in read_transcript(path) if r["dir"] in OUT_DIRS]
    decoded = [decode_server_line(line) for line in lines]
    assert len(decoded) == len(lines) >= 3
    assert any(isinstance(m, Notify) for m in decoded)
    assert any(isinstance(m, SetDifficulty) for m in decoded)
    assert any(isinstance(m, Response) for m in decoded)


def test_r0_ckpool_probe_decodes() -> None:
    path = next(DATA_DIR.glob("r0-*.txt"))
    miner: list[MinerRequest | Response] = []
    server: list[ServerMessage | Response] = []
    truncated: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith(">> "):
            miner.append(decode_miner_line(_wire(raw[3:])))
        elif raw.startswith("<< "):
            try:
                server.append(decode_server_line(_wire(raw[3:])))
            except NotJson:
                # The probe logged long lines cut short: the notify is incomplete JSON.
                assert not raw.endswith("}")
                truncated.append(raw)
    assert [type(m).__name__ for m in miner] == [
        "Configure",
        "Subscribe",
        "ExtranonceSubscribe",
        "Authorize",
        "SuggestDifficulty",
    ]
    assert [type(m).__name__ for m in server] == ["Response", "Response", "SetDifficulty", "Response"]
    assert len(truncated) == 1
    assert '"mining.notify"' not in truncated[0]
    assert truncated[0].startswith('<< {"params":["6b05344300000001",')
    configure = server[0]
    assert isinstance(configure, Response)
    assert msgspec.json.decode(configure.result) == {
        "version-rolling": True,
        "version-rolling.mask": "1fffe000",
    }
    subscribe = server[1]
    assert isinstance(subscribe, Response)
    assert msgspec.json.decode(subscribe.result) == [[["mining.notify", "6b053444"]], "4434056b", 8]
    set_difficulty = server[2]
    assert isinstance(set_difficulty, SetDifficulty)
    assert set_difficulty.params.difficulty == 1_000_000


# --------------------------------------------------------------------------- pool-side replay


@dataclass
class ReplayedShare:
    """One mining.submit as the replayed pool judged it, with what was recorded for it."""

    params: SubmitParams
    verdict: Verdict
    hash_int: int | None
    job: Job | None
    extranonce1: bytes
    event: dict[str, Any] | None = None
    reply: Response | None = None


@dataclass
class PoolReplay:
    """The pool side of one connection, rebuilt from what the pool sent and the miner asked.

    Jobs come from each mining.notify; extranonce1/extranonce2_size from the subscribe
    result and mining.set_extranonce; the version mask from the configure result or
    mining.set_version_mask; a mining.set_difficulty applies to the next job (miners keep it
    as ``next_diff``), so it is recorded with ``from_seq`` = the next job's sequence number.
    """

    ids: JobIds = field(default_factory=JobIds)
    book: JobBook = field(init=False)
    validator: ShareValidator | None = None
    requests: dict[RequestId, MinerRequest] = field(default_factory=dict)
    version_mask: int = 0
    seq: int = 0
    shares: list[ReplayedShare] = field(default_factory=list)
    notifies: list[NotifyParams] = field(default_factory=list)
    difficulties: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.book = JobBook(self.ids)

    @property
    def v(self) -> ShareValidator:
        assert self.validator is not None, "share before the subscribe result"
        return self.validator

    def record(self, record: dict[str, Any]) -> None:
        if record["dir"] in IN_DIRS:
            try:
                message = decode_miner_line(_wire(record["line"]))
            except PeerError:
                return
            self.from_miner(message)
        elif record["dir"] in OUT_DIRS:
            self.from_server(decode_server_line(_wire(record["line"])))
        elif record.get("event") == "share":
            share = self.shares[-1]
            assert share.event is None, "two share events for one submit"
            share.event = record

    def from_miner(self, message: MinerRequest | Response) -> None:
        if isinstance(message, Response):
            return
        self.requests[message.id] = message
        if isinstance(message, Submit):
            p = message.params
            verdict = self.v.check(p.worker, p.job_id, p.extranonce2, p.ntime, p.nonce, p.version_bits)
            hashed = verdict.accepted or verdict is Verdict.LOW_DIFFICULTY
            self.shares.append(
                ReplayedShare(
                    params=p,
                    verdict=verdict,
                    hash_int=self.v.hash_int if hashed else None,
                    job=self.v.job,
                    extranonce1=self.v.extranonce1,
                )
            )

    def from_server(self, message: ServerMessage | Response) -> None:
        if isinstance(message, Response):
            self._reply(message)
        elif isinstance(message, SetDifficulty):
            self.difficulties.append(message.params.difficulty)
            self.v.set_difficulty(message.params.difficulty, from_seq=self.seq + 1)
        elif isinstance(message, SetExtranonce):
            self.v.set_extranonce(
                self.book, bytes.fromhex(message.params.extranonce1), message.params.extranonce2_size
            )
        elif isinstance(message, SetVersionMask):
            self.version_mask = int(message.params.mask, 16)
            if self.validator is not None:
                self.validator.version_mask = self.version_mask
        elif isinstance(message, Notify):
            p = message.params
            self.notifies.append(p)
            self.seq += 1
            self.book.add(Job.from_fields(p, seq=self.seq, created=0.0))

    def _reply(self, response: Response) -> None:
        request = self.requests.pop(response.id, None)
        result = msgspec.json.decode(response.result)
        if isinstance(request, Subscribe):
            _subscriptions, extranonce1, size = result
            # Stratum's difficulty is 1 until the pool says otherwise.
            self.validator = ShareValidator(
                self.book,
                extranonce1=bytes.fromhex(extranonce1),
                extranonce2_size=size,
                difficulty=1.0,
                version_mask=self.version_mask,
            )
        elif isinstance(request, Authorize):
            if result is True:
                self.v.workers.add(request.params.username)
        elif isinstance(request, Configure):
            if result.get("version-rolling") is True:
                self.version_mask = int(result["version-rolling.mask"], 16)
                if self.validator is not None:
                    self.validator.version_mask = self.version_mask
        elif isinstance(request, Submit):
            self.shares[-1].reply = response


def replay(path: Path) -> list[PoolReplay]:
    """One PoolReplay per connection of a transcript, in order."""
    by_conn: dict[int, PoolReplay] = {}
    for record in read_transcript(path):
        conn = record.get("conn", 0)
        if conn == 0:
            continue
        by_conn.setdefault(conn, PoolReplay()).record(record)
    return list(by_conn.values())


# Shares recorded per transcript (accepted, rejected): the replay must judge every one.
RECORDED_SHARES: dict[str, tuple[int, int]] = {
    "d1-minerd-2.5.1.jsonl": (24, 0),
    "d2-cpuminer-multi-1.3.7.jsonl": (22, 0),
    "d3-cpuminer-opt-26.1.jsonl": (25, 0),
    "d4-bfgminer-5.5.0.jsonl": (3, 0),
    "x1-cpuminer-opt-set_extranonce.jsonl": (27, 0),
    "x2-bfgminer-set_extranonce.jsonl": (9, 0),
    "x3-cpuminer-multi-set_extranonce.jsonl": (17, 0),
    "x3b-cpuminer-multi-set_extranonce-samejobid.jsonl": (6, 10),
}


def _all_shares(path: Path) -> list[ReplayedShare]:
    return [s for conn in replay(path) for s in conn.shares]


@pytest.mark.parametrize("name", sorted(RECORDED_SHARES))
def test_replay_reproduces_every_recorded_share(name: str) -> None:
    path = DATA_DIR / name
    shares = _all_shares(path)
    recorded = [r for r in read_transcript(path) if r.get("event") == "share"]
    assert len(shares) == len(recorded) == sum(RECORDED_SHARES[name])
    accepted = rejected = 0
    for i, share in enumerate(shares):
        event = share.event
        assert event is not None, i
        assert share.hash_int is not None, (i, share.verdict)
        internal = share.hash_int.to_bytes(32, "little")
        # The recorded hash is the display form (byte-reversed), not the internal order.
        assert display_hash(internal) == event["hash"], i
        assert internal.hex() != event["hash"]
        if event["ok"]:
            accepted += 1
            assert event["err"] is None
            # A fake pool's network target (nbits 1d00ffff) is far above these CPU shares.
            assert share.verdict is Verdict.ACCEPTED, i
            assert round(share_difficulty(share.hash_int), 6) == event["sdiff"], i
        else:
            rejected += 1
            assert share.verdict is Verdict.LOW_DIFFICULTY, i
            assert event["err"] == [share.verdict.error_code, share.verdict.error_message, None]
            assert event["sdiff"] == 0.0
        # The reply on the wire says the same.
        assert share.reply is not None, i
        assert msgspec.json.decode(share.reply.result) is event["ok"]
        assert msgspec.json.decode(share.reply.error) == event["err"]
    assert (accepted, rejected) == RECORDED_SHARES[name]


@pytest.mark.parametrize("name", sorted(RECORDED_SHARES))
def test_replay_difficulty_in_force(name: str) -> None:
    (conn,) = [c for c in replay(DATA_DIR / name) if c.shares]
    # One set_difficulty, sent before the first job: every share is judged at it.
    (difficulty,) = conn.difficulties
    listening = read_transcript(DATA_DIR / name)[0]
    assert listening["event"] == "listening"
    assert listening["diff"] == difficulty
    target = target_from_difficulty(difficulty)
    for share in conn.shares:
        assert share.job is not None
        assert share.job.seq >= 1
        assert share.hash_int is not None
        assert (share.hash_int <= target) is share.verdict.accepted


@pytest.mark.parametrize(
    "name",
    [
        "x1-cpuminer-opt-set_extranonce.jsonl",
        "x2-bfgminer-set_extranonce.jsonl",
        "x3-cpuminer-multi-set_extranonce.jsonl",
        "x3b-cpuminer-multi-set_extranonce-samejobid.jsonl",
    ],
)
def test_replay_set_extranonce_switches_extranonce1(name: str) -> None:
    shares = _all_shares(DATA_DIR / name)
    used = [s.extranonce1.hex() for s in shares]
    assert used[0] == "a0000001"
    assert used[-1] == "b0000001"
    switch = used.index("b0000001")
    assert set(used[:switch]) == {"a0000001"}
    assert set(used[switch:]) == {"b0000001"}


def _rejudge(conn: PoolReplay, share: ReplayedShare, extranonce1: bytes) -> Verdict:
    """Judge a recorded share again, on the same job, as if hashed with ``extranonce1``."""
    assert share.job is not None
    book = JobBook(JobIds())
    book.add(share.job.alias(share.job.job_id, share.job.seq))
    judge = ShareValidator(
        book,
        extranonce1=extranonce1,
        extranonce2_size=len(share.params.extranonce2) // 2,
        difficulty=conn.difficulties[-1],
    )
    judge.workers.add(share.params.worker)
    p = share.params
    return judge.check(p.worker, p.job_id, p.extranonce2, p.ntime, p.nonce, p.version_bits)


def test_x3b_cpuminer_multi_keeps_old_extranonce1_when_job_id_repeats() -> None:
    # The pool sent set_extranonce(b0000001) then a notify re-using job id "1" with the same
    # fields. cpuminer-multi only rebuilds its coinbase for a new job id, so it kept hashing
    # with a0000001; the recording pool (like ShareValidator) judged with b0000001 and every
    # such share came out low difficulty. Judged with the old extranonce1 they are all good
    # shares: that is exactly what the miner hashed.
    (conn,) = replay(DATA_DIR / "x3b-cpuminer-multi-set_extranonce-samejobid.jsonl")
    assert [n.job_id for n in conn.notifies] == ["1", "1"]
    first, second = conn.notifies
    assert msgspec.structs.replace(second, clean_jobs=first.clean_jobs) == first
    rejected = [s for s in conn.shares if s.verdict is Verdict.LOW_DIFFICULTY]
    assert len(rejected) == 10
    for share in rejected:
        assert share.extranonce1 == bytes.fromhex("b0000001")
        assert _rejudge(conn, share, bytes.fromhex("a0000001")) is Verdict.ACCEPTED
    # Shares before set_extranonce were good with a0000001 and would be bad with b0000001.
    early = [s for s in conn.shares if s.verdict.accepted]
    assert len(early) == 6
    for share in early:
        assert share.extranonce1 == bytes.fromhex("a0000001")
        assert _rejudge(conn, share, bytes.fromhex("b0000001")) is Verdict.LOW_DIFFICULTY


def test_x2_bfgminer_applies_new_extranonce1_even_when_job_id_repeats() -> None:
    # Same pool behaviour as x3b, but bfgminer rebuilds its coinbase on set_extranonce:
    # its shares after the switch are good with b0000001 and not with a0000001.
    (conn,) = replay(DATA_DIR / "x2-bfgminer-set_extranonce.jsonl")
    assert [n.job_id for n in conn.notifies][:2] == ["1", "1"]
    after = [s for s in conn.shares if s.extranonce1 == bytes.fromhex("b0000001")]
    assert len(after) == 7
    for share in after:
        assert share.verdict is Verdict.ACCEPTED
        assert _rejudge(conn, share, bytes.fromhex("a0000001")) is Verdict.LOW_DIFFICULTY


def test_r1_ckpool_regtest_submits_are_blocks_that_became_the_next_prevhash() -> None:
    # Through a tap in front of a real ckpool on regtest (nbits 207fffff): the pool accepted
    # the three submits, and each one was a block: the next notify builds on its hash.
    (conn,) = replay(next(DATA_DIR.glob("r1-*.jsonl")))
    assert len(conn.shares) == 3
    assert conn.difficulties == [1.0]
    for share in conn.shares:
        assert share.reply is not None
        assert msgspec.json.decode(share.reply.result) is True
        assert share.verdict is Verdict.BLOCK_CANDIDATE
        assert share.job is not None
        assert share.hash_int is not None
        assert share.hash_int <= share.job.network_target
        assert share_difficulty(share.hash_int) >= 1.0
        block_hash = share.hash_int.to_bytes(32, "little")
        later = conn.notifies[[n.job_id for n in conn.notifies].index(share.params.job_id) + 1 :]
        next_prev = next(n.prevhash for n in later if prevhash_from_stratum(n.prevhash) != share.job.prevhash)
        assert prevhash_from_stratum(next_prev) == block_hash
