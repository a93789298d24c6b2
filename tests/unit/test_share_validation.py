"""ShareValidator.check: every verdict, the exact boundary, difficulty history, aliases."""

from __future__ import annotations

import pytest

from proxy.mining import share as share_module
from proxy.mining.job import Job, JobBook, JobIds
from proxy.mining.share import DIFFICULTY_HISTORY, ShareValidator, Verdict
from proxy.mining.target import DIFF1_TARGET, compose_version, target_from_difficulty
from tests.unit.support import (
    EASY,
    EN1,
    HARD_NBITS,
    JOB_NTIME,
    REGTEST_NBITS,
    WORKER,
    between,
    find_nonce,
    make_job,
    make_validator,
    share_hash,
)

EN2_HEX = "00000001"
EN2 = bytes.fromhex(EN2_HEX)
NTIME_HEX = format(JOB_NTIME, "08x")


def _book_with_job(**job_kwargs: object) -> tuple[JobBook, Job]:
    ids = JobIds()
    book = JobBook(ids)
    job = make_job(ids, **job_kwargs)  # type: ignore[arg-type]
    book.add(job)
    return book, job


def _submit(
    validator: ShareValidator,
    job: Job,
    nonce: int | str,
    *,
    extranonce2: str = EN2_HEX,
    ntime: str = NTIME_HEX,
    version_bits: str | None = None,
    worker: str = WORKER,
    job_id: str | None = None,
) -> Verdict:
    nonce_hex = nonce if isinstance(nonce, str) else format(nonce, "08x")
    return validator.check(
        worker, job.job_id if job_id is None else job_id, extranonce2, ntime, nonce_hex, version_bits
    )


# --------------------------------------------------------------------------- Verdict


def test_verdict_properties() -> None:
    accepted = {Verdict.ACCEPTED, Verdict.ACCEPTED_UPSTREAM, Verdict.BLOCK_CANDIDATE}
    for verdict in Verdict:
        assert verdict.accepted is (verdict in accepted)
        assert verdict.forward is (verdict in {Verdict.ACCEPTED_UPSTREAM, Verdict.BLOCK_CANDIDATE})
        if verdict.accepted:
            assert (verdict.reason, verdict.error_code, verdict.error_message) == ("accepted", 0, "")
        else:
            assert verdict.reason == verdict.name.lower()
            assert verdict.error_message
    assert Verdict.JOB_NOT_FOUND.error_code == 21
    assert Verdict.DUPLICATE.error_code == 22
    assert Verdict.LOW_DIFFICULTY.error_code == 23
    assert Verdict.UNAUTHORIZED.error_code == 24
    assert {Verdict.INVALID_NTIME.error_code, Verdict.INVALID_VERSION.error_code} == {20}
    assert Verdict.INVALID_PARAMS.error_code == 20
    assert Verdict.LOW_DIFFICULTY.error_message == "Low difficulty share"
    assert Verdict.JOB_NOT_FOUND.reason == "job_not_found"


# --------------------------------------------------------------------------- acceptance


def test_accepted_share_records_parsed_fields_and_hash() -> None:
    book, job = _book_with_job()
    validator = make_validator(book, difficulty=EASY)
    target = target_from_difficulty(EASY)
    nonce, h = find_nonce(job, lambda x: DIFF1_TARGET < x <= target)
    assert _submit(validator, job, nonce) is Verdict.ACCEPTED
    assert validator.hash_int == h
    assert validator.job is job
    assert validator.extranonce2 == EN2
    assert validator.ntime == JOB_NTIME
    assert validator.nonce == nonce
    assert validator.version == 0x20000000


def test_upper_case_hex_hashes_the_same() -> None:
    book, job = _book_with_job()
    validator = make_validator(book)
    nonce = 0xABCDEF12
    assert _submit(validator, job, "ABCDEF12", extranonce2="00AB00CD").accepted
    assert validator.hash_int == share_hash(
        job, EN1, bytes.fromhex("00ab00cd"), JOB_NTIME, nonce, job.version
    )


# --------------------------------------------------------------------------- unauthorized


def test_unauthorized_worker() -> None:
    book, job = _book_with_job()
    validator = make_validator(book)
    assert _submit(validator, job, 1, worker="someone.else") is Verdict.UNAUTHORIZED
    # Checked first: an unknown job from an unknown worker is still "unauthorized".
    assert _submit(validator, job, 1, worker="someone.else", job_id="nope") is Verdict.UNAUTHORIZED
    validator.workers.add("someone.else")
    assert _submit(validator, job, 1, worker="someone.else").accepted


# --------------------------------------------------------------------------- job_not_found


def test_unknown_job_id() -> None:
    book, job = _book_with_job()
    validator = make_validator(book)
    assert _submit(validator, job, 1, job_id="deadbeef") is Verdict.JOB_NOT_FOUND
    assert _submit(validator, job, 1, job_id="") is Verdict.JOB_NOT_FOUND


def test_job_voided_by_clean_jobs() -> None:
    ids = JobIds()
    book = JobBook(ids)
    old = make_job(ids, tag=1)
    kept = make_job(ids, tag=2)
    book.add(old)
    book.add(kept)
    validator = make_validator(book)
    assert _submit(validator, old, 1).accepted
    assert _submit(validator, kept, 1).accepted
    fresh = make_job(ids, tag=3, clean_jobs=True)
    book.add(fresh)
    assert not old.live
    assert not kept.live
    assert fresh.live
    assert book.current is fresh
    assert _submit(validator, old, 2) is Verdict.JOB_NOT_FOUND
    assert _submit(validator, kept, 2) is Verdict.JOB_NOT_FOUND
    assert _submit(validator, fresh, 2).accepted


def test_job_evicted_past_max_jobs() -> None:
    ids = JobIds()
    book = JobBook(ids, max_jobs=2)
    jobs = [make_job(ids, tag=i) for i in range(3)]
    for job in jobs:
        book.add(job)
    validator = make_validator(book)
    assert list(book.jobs) == [jobs[1].job_id, jobs[2].job_id]
    assert not jobs[0].live
    assert _submit(validator, jobs[0], 1) is Verdict.JOB_NOT_FOUND
    assert _submit(validator, jobs[1], 1).accepted
    assert _submit(validator, jobs[2], 1).accepted


def test_job_book_rejects_zero_max_jobs() -> None:
    with pytest.raises(ValueError, match="max_jobs"):
        JobBook(JobIds(), max_jobs=0)


def test_alias_of_voided_job_is_not_found() -> None:
    ids = JobIds()
    book = JobBook(ids)
    base = make_job(ids)
    book.add(base)
    validator = make_validator(book)
    alias_id, alias_seq = ids.take()
    alias = base.alias(alias_id, alias_seq)
    validator.remember_alias(alias)
    assert _submit(validator, alias, 1).accepted
    book.add(make_job(ids, tag=9, clean_jobs=True))
    assert not alias.live
    assert _submit(validator, alias, 2) is Verdict.JOB_NOT_FOUND


# --------------------------------------------------------------------------- duplicate


def test_same_share_twice_is_duplicate() -> None:
    book, job = _book_with_job()
    validator = make_validator(book)
    assert _submit(validator, job, 7).accepted
    assert _submit(validator, job, 7) is Verdict.DUPLICATE
    # Any other field changed makes it a new share.
    assert _submit(validator, job, 8).accepted
    assert _submit(validator, job, 7, extranonce2="00000002").accepted
    assert _submit(validator, job, 7, ntime=format(JOB_NTIME + 1, "08x")).accepted


def test_upper_case_resubmission_is_duplicate() -> None:
    book, job = _book_with_job()
    validator = make_validator(book, version_mask=0x1FFFE000)
    assert _submit(validator, job, "abcdef12", extranonce2="00ab00cd", version_bits="0000e000").accepted
    assert (
        _submit(validator, job, "ABCDEF12", extranonce2="00AB00CD", version_bits="0000E000")
        is Verdict.DUPLICATE
    )
    assert (
        _submit(
            validator,
            job,
            "abcdef12",
            extranonce2="00ab00cd",
            ntime=NTIME_HEX.upper(),
            version_bits="0000e000",
        )
        is Verdict.DUPLICATE
    )


def test_duplicate_under_alias() -> None:
    ids = JobIds()
    book = JobBook(ids)
    base = make_job(ids)
    book.add(base)
    validator = make_validator(book)
    alias_id, alias_seq = ids.take()
    alias = base.alias(alias_id, alias_seq)
    assert alias.job_id != base.job_id
    assert alias.base is base
    assert alias.seen is base.seen
    # Not remembered yet: the alias id is unknown to this miner.
    assert _submit(validator, alias, 5) is Verdict.JOB_NOT_FOUND
    validator.remember_alias(alias)
    assert _submit(validator, base, 5).accepted
    assert _submit(validator, alias, 5) is Verdict.DUPLICATE
    assert _submit(validator, alias, 6).accepted
    assert validator.job is alias
    assert _submit(validator, base, 6) is Verdict.DUPLICATE


def test_alias_of_alias_shares_base() -> None:
    ids = JobIds()
    base = make_job(ids)
    first = base.alias(*ids.take())
    second = first.alias(*ids.take())
    assert second.base is base
    assert not second.clean_jobs


def test_low_difficulty_share_is_not_remembered_as_seen() -> None:
    book, job = _book_with_job()
    validator = make_validator(book, difficulty=1e6)
    assert _submit(validator, job, 1) is Verdict.LOW_DIFFICULTY
    assert _submit(validator, job, 1) is Verdict.LOW_DIFFICULTY
    assert not job.seen


# --------------------------------------------------------------------------- low_difficulty


def test_low_difficulty() -> None:
    book, job = _book_with_job()
    validator = make_validator(book, difficulty=EASY)
    target = target_from_difficulty(EASY)
    nonce, h = find_nonce(job, lambda x: x > target)
    assert _submit(validator, job, nonce) is Verdict.LOW_DIFFICULTY
    assert validator.hash_int == h
    assert Verdict.LOW_DIFFICULTY.error_code == 23


def _exact_targets(monkeypatch: pytest.MonkeyPatch, table: dict[float, int]) -> None:
    """Make ``difficulty -> target`` exact integers inside proxy.mining.share.

    No float difficulty has ``floor(DIFF1 / d)`` equal to a given 256-bit hash (floats are
    ~2**-52 apart, targets 1 apart), so the boundary is reached by swapping the conversion.
    """
    monkeypatch.setattr(share_module, "target_from_difficulty", table.__getitem__)


def test_boundary_target_equal_to_hash_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = JobIds()
    job = make_job(ids)
    h = share_hash(job, EN1, EN2, JOB_NTIME, 12345, job.version)
    assert h > DIFF1_TARGET  # so the verdict below is plain ACCEPTED

    _exact_targets(monkeypatch, {1.0: h, 2.0: h - 1})
    book = JobBook(ids)
    book.add(job)
    at_target = make_validator(book, difficulty=1.0)
    assert _submit(at_target, job, 12345) is Verdict.ACCEPTED
    assert at_target.hash_int == h

    twin_ids = JobIds()
    twin = make_job(twin_ids)
    twin_book = JobBook(twin_ids)
    twin_book.add(twin)
    below = make_validator(twin_book, difficulty=2.0)
    assert _submit(below, twin, 12345) is Verdict.LOW_DIFFICULTY
    assert below.hash_int == h


def test_boundary_through_set_difficulty(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = JobIds()
    book = JobBook(ids)
    job = make_job(ids)
    book.add(job)
    h = share_hash(job, EN1, EN2, JOB_NTIME, 99, job.version)
    _exact_targets(monkeypatch, {1.0: h - 1, 2.0: h})
    validator = make_validator(book, difficulty=1.0)
    assert _submit(validator, job, 99) is Verdict.LOW_DIFFICULTY
    validator.set_difficulty(2.0, from_seq=job.seq)
    assert _submit(validator, job, 99) is Verdict.ACCEPTED


def test_boundary_network_and_upstream_targets() -> None:
    ids = JobIds()
    h = share_hash(make_job(JobIds()), EN1, EN2, JOB_NTIME, 4242, 0x20000000)
    cases = [
        ("network", h, Verdict.BLOCK_CANDIDATE),
        ("network", h - 1, Verdict.ACCEPTED),
        ("upstream", h, Verdict.ACCEPTED_UPSTREAM),
        ("upstream", h - 1, Verdict.ACCEPTED),
        ("book", h, Verdict.ACCEPTED_UPSTREAM),
        ("book", h - 1, Verdict.ACCEPTED),
    ]
    for which, target, expected in cases:
        ids = JobIds()
        book = JobBook(ids)
        job = make_job(ids, upstream_target=0)
        book.upstream_target = 0
        if which == "network":
            job.network_target = target
        elif which == "upstream":
            job.upstream_target = target
        else:
            book.upstream_target = target
        book.add(job)
        validator = make_validator(book)
        assert _submit(validator, job, 4242) is expected, (which, target)
        assert validator.hash_int == h


# --------------------------------------------------------------------------- verdict classes


def test_accepted_vs_accepted_upstream_via_job_target() -> None:
    upstream = target_from_difficulty(1e-6)
    book, job = _book_with_job(upstream_target=upstream)
    book.upstream_target = 0
    validator = make_validator(book, difficulty=1e-8)
    miner_target = target_from_difficulty(1e-8)
    up_nonce, _ = find_nonce(job, lambda x: x <= upstream)
    local_nonce, _ = find_nonce(job, lambda x: upstream < x <= miner_target)
    assert _submit(validator, job, up_nonce) is Verdict.ACCEPTED_UPSTREAM
    assert _submit(validator, job, local_nonce) is Verdict.ACCEPTED
    assert not Verdict.ACCEPTED.forward


def test_accepted_upstream_via_book_target() -> None:
    book, job = _book_with_job(upstream_target=0)
    book.upstream_target = target_from_difficulty(1e-6)
    validator = make_validator(book, difficulty=1e-8)
    up_nonce, _ = find_nonce(job, lambda x: x <= book.upstream_target)
    assert _submit(validator, job, up_nonce) is Verdict.ACCEPTED_UPSTREAM
    # The pool raises its difficulty: the same kind of share is now only local.
    book.upstream_target = target_from_difficulty(1e-3)
    nonce, _ = find_nonce(
        job, lambda x: book.upstream_target < x <= target_from_difficulty(1e-6), start=up_nonce + 1
    )
    assert _submit(validator, job, nonce) is Verdict.ACCEPTED


def test_block_candidate_even_below_miner_difficulty() -> None:
    book, job = _book_with_job(nbits=REGTEST_NBITS)
    assert job.network_target == 0x7FFFFF << 232
    validator = make_validator(book, difficulty=1e6)
    miner_target = target_from_difficulty(1e6)
    block_nonce, h = find_nonce(job, lambda x: miner_target < x <= job.network_target)
    other_nonce, _ = find_nonce(job, lambda x: x > job.network_target)
    assert _submit(validator, job, block_nonce) is Verdict.BLOCK_CANDIDATE
    assert validator.hash_int == h
    assert _submit(validator, job, other_nonce) is Verdict.LOW_DIFFICULTY
    assert _submit(validator, job, block_nonce) is Verdict.DUPLICATE


def test_hard_network_target_is_never_a_block() -> None:
    book, job = _book_with_job(nbits=HARD_NBITS)
    validator = make_validator(book)
    for nonce in range(20):
        assert _submit(validator, job, nonce) in {Verdict.ACCEPTED, Verdict.ACCEPTED_UPSTREAM}


# --------------------------------------------------------------------------- difficulty history


def test_difficulty_raise_applies_to_next_job_only() -> None:
    ids = JobIds()
    book = JobBook(ids)
    before = make_job(ids, tag=1)
    book.add(before)
    validator = make_validator(book, difficulty=EASY)
    after = make_job(ids, tag=2)
    validator.set_difficulty(1e-3, from_seq=after.seq)
    book.add(after)

    easy, hard = target_from_difficulty(EASY), target_from_difficulty(1e-3)
    n_before, _ = find_nonce(before, lambda x: hard < x <= easy)
    n_after, _ = find_nonce(after, lambda x: hard < x <= easy)
    assert _submit(validator, before, n_before) is Verdict.ACCEPTED
    assert _submit(validator, after, n_after) is Verdict.LOW_DIFFICULTY


def test_difficulty_drop_also_helps_old_jobs() -> None:
    ids = JobIds()
    book = JobBook(ids)
    before = make_job(ids, tag=1)
    book.add(before)
    validator = make_validator(book, difficulty=1e-3)
    after = make_job(ids, tag=2)
    validator.set_difficulty(EASY, from_seq=after.seq)
    book.add(after)
    easy, hard = target_from_difficulty(EASY), target_from_difficulty(1e-3)
    # The lower of old and new difficulty: the old job is judged at the new, easier one.
    nonce, _ = find_nonce(before, lambda x: hard < x <= easy)
    assert _submit(validator, before, nonce) is Verdict.ACCEPTED


def test_difficulty_history_several_changes() -> None:
    ids = JobIds()
    book = JobBook(ids)
    diffs = [1e-9, 1e-8, 1e-7, 1e-6]
    targets = [target_from_difficulty(d) for d in diffs]
    validator = make_validator(book, difficulty=diffs[0])
    jobs = [make_job(ids, tag=0)]
    for i, d in enumerate(diffs[1:], start=1):
        job = make_job(ids, tag=i)
        validator.set_difficulty(d, from_seq=job.seq)
        jobs.append(job)
    for job in jobs:
        book.add(job)
    # Difficulty only rose, so each job is judged at the difficulty in force when it was sent.
    for i, job in enumerate(jobs):
        harder = targets[i + 1] if i + 1 < len(targets) else 0
        ok_nonce, _ = find_nonce(job, between(harder, targets[i]))
        assert _submit(validator, job, ok_nonce) is Verdict.ACCEPTED, i
        if i > 0:
            low_nonce, _ = find_nonce(job, between(targets[i], targets[i - 1]))
            assert _submit(validator, job, low_nonce) is Verdict.LOW_DIFFICULTY, i


# --------------------------------------------------------------------------- ntime


def test_ntime_window_default() -> None:
    book, job = _book_with_job()
    assert book.ntime_window == 7000
    validator = make_validator(book)
    assert _submit(validator, job, 1, ntime=format(JOB_NTIME - 1, "08x")) is Verdict.INVALID_NTIME
    assert _submit(validator, job, 1, ntime=format(JOB_NTIME + 7001, "08x")) is Verdict.INVALID_NTIME
    assert _submit(validator, job, 1, ntime=format(JOB_NTIME, "08x")).accepted
    assert _submit(validator, job, 1, ntime=format(JOB_NTIME + 7000, "08x")).accepted
    assert validator.ntime == JOB_NTIME + 7000


def test_ntime_window_configurable() -> None:
    ids = JobIds()
    book = JobBook(ids, ntime_window=60)
    job = make_job(ids)
    book.add(job)
    validator = make_validator(book)
    assert _submit(validator, job, 1, ntime=format(JOB_NTIME + 61, "08x")) is Verdict.INVALID_NTIME
    assert _submit(validator, job, 1, ntime=format(JOB_NTIME + 60, "08x")).accepted
    assert _submit(validator, job, 2, ntime=format(JOB_NTIME - 1, "08x")) is Verdict.INVALID_NTIME
    zero = JobBook(ids, ntime_window=0)
    job0 = make_job(ids)
    zero.add(job0)
    v0 = make_validator(zero)
    assert _submit(v0, job0, 1, ntime=format(JOB_NTIME + 1, "08x")) is Verdict.INVALID_NTIME
    assert _submit(v0, job0, 1).accepted


# --------------------------------------------------------------------------- version rolling


MASK = 0x1FFFE000


def test_version_bits_inside_mask() -> None:
    book, job = _book_with_job()
    validator = make_validator(book, version_mask=MASK)
    assert _submit(validator, job, 1, version_bits="1fffe000").accepted
    expected = compose_version(job.version, 0x1FFFE000, MASK)
    assert validator.version == expected == 0x3FFFE000
    assert validator.hash_int == share_hash(job, EN1, EN2, JOB_NTIME, 1, expected)
    assert _submit(validator, job, 1, version_bits="00000000").accepted
    assert validator.version == 0x20000000


def test_version_bits_replace_job_bits_inside_mask() -> None:
    # BIP310 formula, not OR: the job's bits inside the mask are replaced.
    book, job = _book_with_job(version="20002000")
    validator = make_validator(book, version_mask=MASK)
    assert _submit(validator, job, 1, version_bits="00004000").accepted
    assert validator.version == 0x20004000


def test_version_bits_without_bits_uses_job_version() -> None:
    book, job = _book_with_job(version="20000004")
    validator = make_validator(book, version_mask=MASK)
    assert _submit(validator, job, 1).accepted
    assert validator.version == 0x20000004


@pytest.mark.parametrize(
    "bits",
    [
        "00001000",  # just below the mask
        "20000000",  # just above it
        "ffffffff",
        "1fffe001",
    ],
)
def test_version_bits_outside_mask(bits: str) -> None:
    book, job = _book_with_job()
    validator = make_validator(book, version_mask=MASK)
    assert _submit(validator, job, 1, version_bits=bits) is Verdict.INVALID_VERSION


def test_version_bits_without_grant() -> None:
    book, job = _book_with_job()
    validator = make_validator(book, version_mask=0)
    assert _submit(validator, job, 1, version_bits="00002000") is Verdict.INVALID_VERSION
    assert _submit(validator, job, 1, version_bits="00000000").accepted


@pytest.mark.parametrize(
    "bits",
    [
        "",
        "2000",
        "0002000",
        "000020000",
        "0000200g",
        "-0002000",
        "+0002000",
        "0x002000",
        "0000_2000"[:8],
        " 0002000",
        "0002000 ",
        "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic-Indic digits: int() takes them
    ],
)
def test_version_bits_malformed(bits: str) -> None:
    book, job = _book_with_job()
    validator = make_validator(book, version_mask=0xFFFFFFFF)
    assert _submit(validator, job, 1, version_bits=bits) is Verdict.INVALID_VERSION
    assert not job.seen


# --------------------------------------------------------------------------- invalid params


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("extranonce2", ""),
        ("extranonce2", "000001"),  # 3 bytes, size is 4
        ("extranonce2", "0000000001"),  # 5 bytes
        ("extranonce2", "0000001"),  # odd length
        ("extranonce2", "zzzzzzzz"),
        ("extranonce2", "00 11 22"),  # 8 characters, fromhex would skip the spaces
        ("extranonce2", "001122 3"),
        ("extranonce2", "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668"),
        ("ntime", "-0000001"),
        ("ntime", "+6b05300"),
        ("ntime", "0x6b0530"),
        ("ntime", " 6b05300"),
        ("ntime", "6b05300 "),
        ("ntime", "6b05_300"),
        ("ntime", "6b05300"),
        ("ntime", "06b053000"),
        ("ntime", "6b05300g"),
        ("nonce", "-0000001"),
        ("nonce", "+1234567"),
        ("nonce", "0x123456"),
        ("nonce", " 1234567"),
        ("nonce", "1234567 "),
        ("nonce", "1234_567"),
        ("nonce", "1234567"),
        ("nonce", "123456789"),
        ("nonce", "ghijklmn"),
        ("nonce", "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668"),
    ],
)
def test_invalid_params(field: str, value: str) -> None:
    book, job = _book_with_job()
    validator = make_validator(book)
    fields = {"extranonce2": EN2_HEX, "ntime": NTIME_HEX, "nonce": "00000001"}
    assert validator.check(
        WORKER, job.job_id, fields["extranonce2"], fields["ntime"], fields["nonce"], None
    ).accepted
    fields[field] = value
    verdict = validator.check(
        WORKER, job.job_id, fields["extranonce2"], fields["ntime"], fields["nonce"], None
    )
    assert verdict is Verdict.INVALID_PARAMS
    assert verdict.error_code == 20


def test_extranonce2_size_follows_set_extranonce() -> None:
    ids = JobIds()
    book = JobBook(ids)
    job = make_job(ids)
    book.add(job)
    validator = make_validator(book, extranonce2_size=4)
    assert _submit(validator, job, 1, extranonce2="0000000000000001") is Verdict.INVALID_PARAMS
    other = JobBook(ids)
    other_job = make_job(ids)
    other.add(other_job)
    validator.set_extranonce(other, bytes.fromhex("b0000001"), 8)
    assert validator.book is other
    assert _submit(validator, other_job, 1, extranonce2="0000000000000001").accepted
    assert validator.hash_int == share_hash(
        other_job,
        bytes.fromhex("b0000001"),
        bytes.fromhex("0000000000000001"),
        JOB_NTIME,
        1,
        other_job.version,
    )
    # The old book's jobs are gone for this miner.
    assert _submit(validator, job, 1, extranonce2="0000000000000001") is Verdict.JOB_NOT_FOUND


def test_zero_extranonce2_size() -> None:
    book, job = _book_with_job()
    validator = make_validator(book, extranonce2_size=0)
    assert _submit(validator, job, 1, extranonce2="").accepted
    assert validator.extranonce2 == b""
    assert _submit(validator, job, 2, extranonce2="00") is Verdict.INVALID_PARAMS


def test_set_extranonce_forgets_aliases() -> None:
    ids = JobIds()
    book = JobBook(ids)
    base = make_job(ids)
    book.add(base)
    validator = make_validator(book)
    alias = base.alias(*ids.take())
    validator.remember_alias(alias)
    assert _submit(validator, alias, 1).accepted
    validator.set_extranonce(book, EN1, 4)
    assert _submit(validator, alias, 2) is Verdict.JOB_NOT_FOUND
    assert _submit(validator, base, 2).accepted


def test_only_recent_aliases_are_remembered() -> None:
    ids = JobIds()
    book = JobBook(ids)
    base = make_job(ids)
    book.add(base)
    validator = make_validator(book)
    aliases = [base.alias(*ids.take()) for _ in range(DIFFICULTY_HISTORY + 1)]
    for alias in aliases:
        validator.remember_alias(alias)
    assert _submit(validator, aliases[0], 1) is Verdict.JOB_NOT_FOUND
    for nonce, alias in enumerate(aliases[1:], start=2):
        assert _submit(validator, alias, nonce).accepted
