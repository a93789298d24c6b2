"""Every vector of tests/data/stratum_vectors.json reproduced through the project's own code."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from proxy.mining.hashing import (
    HEADER,
    display_hash,
    hash_to_int,
    merkle_root,
    prevhash_from_stratum,
    sha256d,
)
from proxy.mining.job import Job, JobBook, JobIds
from proxy.mining.share import ShareValidator, Verdict
from proxy.mining.target import difficulty_from_target, share_difficulty, target_from_nbits
from proxy.stratum.codec import decode_miner_line, decode_server_line
from proxy.stratum.messages import Notify, NotifyParams, Response, Submit
from tests.unit.support import load_vectors

VECTORS: list[dict[str, Any]] = load_vectors()["vectors"]
MERKLE_KATS: list[dict[str, Any]] = load_vectors()["merkle_kats"]
JOB_VECTORS = [v for v in VECTORS if "job" in v]
HEADER_ONLY_VECTORS = [v for v in VECTORS if v["kind"] == "header_only_field_encoding"]


def _submit_fields(vector: dict[str, Any]) -> dict[str, str]:
    """The five submit fields, whichever of the two layouts the vector uses."""
    fields: dict[str, str] = vector.get("submit_fields") or vector["submit"]
    return fields


def _u32(hex8: str) -> int:
    return int(hex8, 16)


def test_every_vector_is_covered() -> None:
    # A new vector of an unknown kind would silently go untested: fail instead.
    assert len(VECTORS) == 3
    assert {v["name"] for v in JOB_VECTORS} == {
        "mainnet_block_100000",
        "slush_stratum_doc_testnet3_exchange",
    }
    assert len(JOB_VECTORS) + len(HEADER_ONLY_VECTORS) == len(VECTORS)
    assert len(MERKLE_KATS) == 2


@pytest.mark.parametrize("vector", JOB_VECTORS, ids=lambda v: v["name"])
def test_job_vector_through_share_validator(vector: dict[str, Any]) -> None:
    job_fields = vector["job"]
    expected = vector["expected"]
    sub = _submit_fields(vector)
    ids = JobIds()
    book = JobBook(ids)
    # The same decode path the proxy uses for a pool's notify.
    job = Job.from_fields(_notify_params(job_fields), seq=ids.take()[1], created=0.0)
    book.add(job)
    validator = ShareValidator(
        book,
        extranonce1=bytes.fromhex(vector["extranonce1"]),
        extranonce2_size=vector["extranonce2_size"],
        difficulty=1.0,
    )
    validator.workers.add(sub["worker"])

    verdict = validator.check(
        sub["worker"], sub["job_id"], sub["extranonce2"], sub["ntime"], sub["nonce"], None
    )

    hash_internal = bytes.fromhex(expected["hash_internal_le"])
    assert validator.hash_int == hash_to_int(hash_internal)
    assert display_hash(hash_internal) == expected["hash_display"]
    assert expected["meets_network_target"] is True
    assert verdict is Verdict.BLOCK_CANDIDATE
    assert verdict.forward
    assert validator.job is job
    assert validator.nonce == _u32(sub["nonce"])
    assert validator.ntime == _u32(sub["ntime"])
    assert validator.version == _u32(job_fields["version"])
    assert validator.extranonce2 == bytes.fromhex(sub["extranonce2"])
    # The same share again is a duplicate, even though it is a block.
    again = validator.check(
        sub["worker"], sub["job_id"], sub["extranonce2"], sub["ntime"], sub["nonce"], None
    )
    assert again is Verdict.DUPLICATE


@pytest.mark.parametrize("vector", JOB_VECTORS, ids=lambda v: v["name"])
def test_job_vector_through_hashing_functions(vector: dict[str, Any]) -> None:
    job_fields = vector["job"]
    expected = vector["expected"]
    sub = _submit_fields(vector)
    coinbase = (
        bytes.fromhex(job_fields["coinb1"])
        + bytes.fromhex(vector["extranonce1"])
        + bytes.fromhex(sub["extranonce2"])
        + bytes.fromhex(job_fields["coinb2"])
    )
    if "coinbase_hex" in expected:
        assert coinbase.hex() == expected["coinbase_hex"]
    root = merkle_root(sha256d(coinbase), [bytes.fromhex(b) for b in job_fields["merkle_branch"]])
    assert root.hex() == vector.get("merkle_root_internal", expected.get("merkle_root_internal"))
    header = HEADER.pack(
        _u32(job_fields["version"]),
        prevhash_from_stratum(job_fields["prevhash"]),
        root,
        _u32(sub["ntime"]),
        _u32(job_fields["nbits"]),
        _u32(sub["nonce"]),
    )
    assert len(header) == 80
    assert header.hex() == expected["header_hex"]
    digest = sha256d(header)
    assert digest.hex() == expected["hash_internal_le"]
    assert display_hash(digest) == expected["hash_display"]
    hash_int = hash_to_int(digest)
    assert share_difficulty(hash_int) == pytest.approx(expected["share_difficulty_bdiff"], rel=1e-9)
    network_target = target_from_nbits(_u32(job_fields["nbits"]))
    assert difficulty_from_target(network_target) == pytest.approx(
        expected["network_difficulty_from_nbits"], rel=1e-9
    )
    assert (hash_int <= network_target) is expected["meets_network_target"]


def test_block_100000_display_fields() -> None:
    vector = next(v for v in VECTORS if v["name"] == "mainnet_block_100000")
    job_fields = vector["job"]
    assert vector["expected"]["hash_display"] == vector["block_hash_display"]
    assert prevhash_from_stratum(job_fields["prevhash"])[::-1].hex() == vector["prevhash_display"]
    assert bytes.fromhex(vector["merkle_root_internal"])[::-1].hex() == vector["merkle_root_display"]
    # The subscribe result layout gives the same extranonce1 and size.
    _subs, extranonce1, size = vector["subscribe_result"]
    assert (extranonce1, size) == (vector["extranonce1"], vector["extranonce2_size"])


@pytest.mark.parametrize("vector", HEADER_ONLY_VECTORS, ids=lambda v: v["name"])
def test_header_only_vector(vector: dict[str, Any]) -> None:
    fields = vector["stratum_fields"]
    expected = vector["expected"]
    prevhash = prevhash_from_stratum(fields["prevhash"])
    assert prevhash[::-1].hex() == vector["prevhash_display"]
    header = HEADER.pack(
        _u32(fields["version"]),
        prevhash,
        bytes.fromhex(vector["merkle_root_display"])[::-1],
        _u32(fields["ntime"]),
        _u32(fields["nbits"]),
        _u32(fields["nonce"]),
    )
    assert header.hex() == expected["header_hex"] == expected["header_hex_published"]
    digest = sha256d(header)
    assert digest.hex() == expected["hash_internal_le"]
    assert display_hash(digest) == expected["hash_display"] == expected["hash_display_published"]
    assert share_difficulty(hash_to_int(digest)) == pytest.approx(
        expected["share_difficulty_bdiff"], rel=1e-9
    )


@pytest.mark.parametrize("kat", MERKLE_KATS, ids=lambda k: k["name"])
def test_merkle_kat(kat: dict[str, Any]) -> None:
    coinbase = bytes.fromhex(kat["coinb1"] + kat["extranonce1"] + kat["extranonce2"] + kat["coinb2"])
    branch = [bytes.fromhex(b) for b in kat["merkle_branch"]]
    assert merkle_root(sha256d(coinbase), branch).hex() == kat["expected_merkle_root_internal"]
    # Job.from_notify decodes the branch to the same bytes the fold uses.
    job = Job.from_notify(
        job_id="k",
        upstream_job_id="k",
        seq=1,
        prevhash="00" * 32,
        coinb1=kat["coinb1"],
        coinb2=kat["coinb2"],
        merkle_branch=kat["merkle_branch"],
        version="20000000",
        nbits="1d00ffff",
        ntime="00000000",
        clean_jobs=True,
        created=0.0,
    )
    assert list(job.branch) == branch


def _notify_params(job_fields: dict[str, Any]) -> NotifyParams:
    return NotifyParams(
        job_id=job_fields["job_id"],
        prevhash=job_fields["prevhash"],
        coinb1=job_fields["coinb1"],
        coinb2=job_fields["coinb2"],
        merkle_branch=job_fields["merkle_branch"],
        version=job_fields["version"],
        nbits=job_fields["nbits"],
        ntime=job_fields["ntime"],
        clean_jobs=job_fields["clean_jobs"],
    )


def _notify_lines(vector: dict[str, Any]) -> list[bytes]:
    lines = []
    if "notify_json" in vector:
        lines.append(vector["notify_json"].encode())
    if isinstance(vector.get("notify"), dict):
        lines.append(json.dumps(vector["notify"]).encode())
    return lines


def _submit_lines(vector: dict[str, Any]) -> list[bytes]:
    lines = []
    if "submit_json" in vector:
        lines.append(vector["submit_json"].encode())
    if "method" in vector.get("submit", {}):
        lines.append(json.dumps(vector["submit"]).encode())
    return lines


@pytest.mark.parametrize("vector", JOB_VECTORS, ids=lambda v: v["name"])
def test_vector_messages_decode(vector: dict[str, Any]) -> None:
    notify_lines = _notify_lines(vector)
    submit_lines = _submit_lines(vector)
    assert notify_lines
    assert submit_lines
    for line in notify_lines:
        msg = decode_server_line(line)
        assert isinstance(msg, Notify)
        assert msg.id is None
        assert msg.params == _notify_params(vector["job"])
    sub = _submit_fields(vector)
    for line in submit_lines:
        req = decode_miner_line(line)
        assert isinstance(req, Submit)
        assert req.id == 4
        assert req.params.worker == sub["worker"]
        assert req.params.job_id == sub["job_id"]
        assert req.params.extranonce2 == sub["extranonce2"]
        assert req.params.ntime == sub["ntime"]
        assert req.params.nonce == sub["nonce"]
        assert req.params.version_bits is None


def test_slush_subscribe_response_decodes() -> None:
    vector = next(v for v in VECTORS if v["name"] == "slush_stratum_doc_testnet3_exchange")
    resp = decode_server_line(json.dumps(vector["subscribe_response"]).encode())
    assert isinstance(resp, Response)
    assert resp.id == 1
    subscriptions, extranonce1, size = msgspec.json.decode(resp.result)
    assert subscriptions[1][0] == "mining.notify"
    assert extranonce1 == vector["extranonce1"]
    assert size == vector["extranonce2_size"]
    assert msgspec.json.decode(resp.error) is None
