"""Pure regressions for what real miners and a real pool (ckpool) showed: easy-network
block candidates, a job the pool re-sends, vardiff under a miner that keeps its work, the
suggest_difficulty format, and the open-file warning."""

from __future__ import annotations

from proxy.app import FD_RESERVE, open_file_advice
from proxy.mining.job import Job, JobBook, JobIds
from proxy.mining.share import ShareValidator, Verdict
from proxy.mining.target import target_from_difficulty
from proxy.mining.vardiff import RAISE_HOLD_WINDOWS, SHARES_PER_RETARGET, Vardiff
from proxy.upstream.handshake import suggestion
from tests.unit.support import JOB_NTIME, REGTEST_NBITS, WORKER, find_nonce, make_job, make_validator

EN2_HEX = "00000001"  # find_nonce's default extranonce2


def _check(validator: ShareValidator, job: Job, nonce: int) -> Verdict:
    return validator.check(WORKER, job.job_id, EN2_HEX, format(JOB_NTIME, "08x"), format(nonce, "08x"), None)


# --------------------------------------------------------------------------- easy networks


def test_regtest_candidate_records_which_targets_it_met() -> None:
    ids = JobIds()
    book = JobBook(ids)
    pool_target = target_from_difficulty(1e-5)
    job = make_job(ids, nbits=REGTEST_NBITS, upstream_target=pool_target)
    book.add(job)
    book.upstream_target = pool_target
    miner_target = target_from_difficulty(1e-7)
    validator = make_validator(book, difficulty=1e-7)
    # Meets the miner's target, not the pool's, and (regtest) the network's.
    nonce, _ = find_nonce(job, lambda h: pool_target < h <= miner_target)
    assert _check(validator, job, nonce) is Verdict.BLOCK_CANDIDATE
    assert validator.met_target is True and validator.met_pool is False
    # Misses even the miner's target, still under the network's.
    low, _ = find_nonce(job, lambda h: miner_target < h <= job.network_target, start=nonce + 1)
    assert _check(validator, job, low) is Verdict.BLOCK_CANDIDATE
    assert validator.met_target is False and validator.met_pool is False
    # Meets all three.
    full, _ = find_nonce(job, lambda h: h <= pool_target, start=low + 1)
    assert _check(validator, job, full) is Verdict.BLOCK_CANDIDATE
    assert validator.met_target is True and validator.met_pool is True


def test_void_others_keeps_only_the_repeated_job() -> None:
    ids = JobIds()
    book = JobBook(ids)
    old, current = make_job(ids, tag=1), make_job(ids, tag=2)
    book.add(old)
    book.add(current)
    book.void_others(current)
    assert book.get(current.job_id) is current and not current.voided
    assert book.get(old.job_id) is None and old.voided


# --------------------------------------------------------------------------- vardiff


def _vardiff(initial: float = 1.0) -> Vardiff:
    return Vardiff(
        initial=initial, minimum=1e-9, maximum=1e9, target_interval=10.0, retarget_interval=30.0, now=0.0
    )


def test_vardiff_does_not_run_away_from_a_miner_that_keeps_its_old_target() -> None:
    # The miner finds one share of difficulty 1 per second (wants difficulty 10) and never
    # applies a raise: every share is judged at 1, the difficulty it still works at.
    vd = _vardiff(1.0)
    now, raises = 0.0, []
    for _ in range(20 * SHARES_PER_RETARGET):
        now += 1.0
        new = vd.on_share(now, judged=1.0)
        if new is not None:
            raises.append(new)
    # One step towards the right value, then no more: measured in work, the rate did not
    # change, and the raise is held until shares at it arrive. Counted as shares at the
    # current difficulty (the old behaviour) it went x8 per 16 shares, 1 -> 8 -> 64 -> ...
    assert raises and max(raises) <= 10 * 1.4
    assert vd.difficulty <= 10 * 1.4


def test_vardiff_raises_again_once_shares_at_the_new_difficulty_arrive() -> None:
    vd = _vardiff(1.0)
    now = 0.0
    for _ in range(SHARES_PER_RETARGET):
        now += 0.1  # 10 diff-1 shares per second: wants 100
        raised = vd.on_share(now, judged=1.0)
    assert raised == 8.0 and vd.awaiting_raise
    now += 0.8  # the miner took difficulty 8: the same hashrate, one share per 0.8 s
    assert vd.on_share(now, judged=8.0) is None
    assert not vd.awaiting_raise  # seen in force: the next retarget may raise again
    for _ in range(SHARES_PER_RETARGET - 1):
        now += 0.8
        again = vd.on_share(now, judged=8.0)
    assert again is not None and again > 8.0


def test_vardiff_hold_ends_after_its_window() -> None:
    vd = _vardiff(1.0)
    now = 0.0
    for _ in range(SHARES_PER_RETARGET):
        now += 0.01
        vd.on_share(now, judged=1.0)
    assert vd.difficulty == 8.0 and vd.awaiting_raise
    # Old-difficulty shares keep coming far faster than 8 would give: held during the
    # window, then the work rate alone decides, and it says the miner wants much more.
    during: list[float] = []
    after: list[float] = []
    while now < RAISE_HOLD_WINDOWS * 30.0 + 5:
        now += 0.01
        new = vd.on_share(now, judged=1.0)
        if new is not None:
            (during if now < RAISE_HOLD_WINDOWS * 30.0 else after).append(new)
    assert during == []
    assert after and after[0] > 8.0


# --------------------------------------------------------------------------- pool side


def test_suggest_difficulty_is_an_integer_from_one_up_rounded_down() -> None:
    assert suggestion(3.3) == 3 and isinstance(suggestion(3.3), int)
    assert suggestion(1.0) == 1 and isinstance(suggestion(1.0), int)
    assert suggestion(1024.9) == 1024
    assert suggestion(0.25) == 0.25  # below 1 an integer cannot say it


def test_open_file_advice_names_the_threshold_and_the_fix() -> None:
    assert open_file_advice(20000 + FD_RESERVE, 20000) is None
    advice = open_file_advice(20000, 20000)
    assert advice is not None
    assert f"{20000 + FD_RESERVE} needed" in advice
    assert "LimitNOFILE" in advice and "ulimit -n" in advice
    assert "about 19900 miners fit" in advice
