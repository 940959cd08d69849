"""Paired statistics: exact McNemar by hand, the seeded bootstrap against a direct numpy computation."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rvec.errors import RvecError
from rvec.eval import stats
from rvec.eval.pvalues import mcnemar_exact, sign_flip_p
from rvec.eval.stats import (
    Comparison,
    StatisticsError,
    accuracy_interval,
    format_delta,
    format_p,
    format_pct,
    paired_comparison,
    stratified_comparison,
)


def _table(*, both: int, only_a: int, only_b: int, neither: int) -> tuple[dict[str, bool], dict[str, bool]]:
    """Per-item dicts with the given 2×2 counts (a right/b right, a only, b only, neither)."""
    a: dict[str, bool] = {}
    b: dict[str, bool] = {}
    i = 0
    for count, (va, vb) in (
        (both, (True, True)),
        (only_a, (True, False)),
        (only_b, (False, True)),
        (neither, (False, False)),
    ):
        for _ in range(count):
            a[f"d{i:04d}"], b[f"d{i:04d}"] = va, vb
            i += 1
    return a, b


def _random_pair(
    n: int, seed: int, pa: float = 0.5, pb: float = 0.6
) -> tuple[dict[str, bool], dict[str, bool]]:
    rng = random.Random(seed)
    ids = [f"q{i:05d}" for i in range(n)]
    return {k: rng.random() < pa for k in ids}, {k: rng.random() < pb for k in ids}


def test_mcnemar_matches_the_hand_computed_binomial() -> None:
    # b01 = 10 (wrong in a, right in b), b10 = 2: p = 2·(C(12,0)+C(12,1)+C(12,2))/2^12 = 158/4096.
    a, b = _table(both=5, only_a=2, only_b=10, neither=3)
    c = paired_comparison(a, b, resamples=200)
    assert c.mcnemar_p == 0.03857421875
    assert (c.flips_up, c.flips_down) == (10, 2)
    assert (c.n, c.acc_a, c.acc_b) == (20, 7 / 20, 15 / 20)
    assert c.diff == pytest.approx(0.4)
    # The direction of the comparison does not change a two-sided p, only the flips.
    r = paired_comparison(b, a, resamples=200)
    assert r.mcnemar_p == c.mcnemar_p
    assert (r.flips_up, r.flips_down) == (2, 10)


def test_no_discordant_pairs_gives_p_one_and_a_zero_interval() -> None:
    a, b = _table(both=7, only_a=0, only_b=0, neither=5)
    c = paired_comparison(a, b)
    assert c.mcnemar_p == 1.0
    assert (c.flips_up, c.flips_down, c.diff) == (0, 0, 0.0)
    assert (c.ci_low, c.ci_high) == (0.0, 0.0)
    assert mcnemar_exact(0, 0) == 1.0


def test_identical_cells_have_ci_zero_zero() -> None:
    a, _ = _random_pair(300, seed=1)
    c = paired_comparison(a, dict(a), resamples=2000, seed=5)
    assert (c.diff, c.ci_low, c.ci_high, c.mcnemar_p) == (0.0, 0.0, 0.0, 1.0)


def test_bootstrap_is_seeded_and_contains_the_observed_difference() -> None:
    a, b = _random_pair(400, seed=2)
    first = paired_comparison(a, b, resamples=3000, seed=11)
    again = paired_comparison(a, b, resamples=3000, seed=11)
    other = paired_comparison(a, b, resamples=3000, seed=12)
    assert first == again
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.ci_low <= first.diff <= first.ci_high
    assert first.ci_low < first.ci_high


def test_bootstrap_matches_a_direct_numpy_computation() -> None:
    n, resamples, seed = 37, 500, 3
    a, b = _random_pair(n, seed=4, pa=0.4, pb=0.7)
    # Insertion order must not matter: items are taken in sorted doc_id order.
    shuffled = list(b.items())
    random.Random(0).shuffle(shuffled)
    c = paired_comparison(a, dict(shuffled), resamples=resamples, seed=seed, confidence=0.9)

    ids = sorted(a)
    xa = np.array([a[k] for k in ids], dtype=float)
    xb = np.array([b[k] for k in ids], dtype=float)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    boot = (xb[idx] - xa[idx]).mean(axis=1)
    low, high = np.quantile(boot, [0.05, 0.95])
    assert (c.ci_low, c.ci_high) == (low, high)
    assert c.diff == pytest.approx(xb.mean() - xa.mean(), abs=1e-15)
    assert (c.acc_a, c.acc_b) == (xa.mean(), xb.mean())
    assert (c.resamples, c.seed, c.confidence, c.strata) == (resamples, seed, 0.9, 1)


def test_chunked_draws_equal_one_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _random_pair(90, seed=6)
    whole = paired_comparison(a, b, resamples=1000, seed=2)
    monkeypatch.setattr(stats, "_CHUNK_ENTRIES", 7 * 90 + 13)  # 7 rows per chunk, a ragged last one
    assert paired_comparison(a, b, resamples=1000, seed=2) == whole


def test_unpaired_ids_are_ignored() -> None:
    a, b = _random_pair(120, seed=7)
    base = paired_comparison(a, b, resamples=1000)
    extra_a = {**a, "only-in-a-1": True, "only-in-a-2": False}
    extra_b = {**b, "only-in-b": True}
    assert paired_comparison(extra_a, extra_b, resamples=1000) == base
    assert base.n == 120


def test_no_shared_ids_is_a_typed_error() -> None:
    with pytest.raises(StatisticsError, match="no doc_id is shared") as info:
        paired_comparison({"1": True}, {"2": True})
    assert isinstance(info.value, RvecError)
    assert isinstance(info.value, ValueError)
    with pytest.raises(StatisticsError, match="no doc_id is shared"):
        paired_comparison({}, {})


@pytest.mark.parametrize("kwargs", [{"resamples": 0}, {"confidence": 1.0}, {"confidence": 0.0}])
def test_bad_settings_are_rejected(kwargs: dict) -> None:
    a, b = _random_pair(10, seed=8)
    with pytest.raises(StatisticsError):
        paired_comparison(a, b, **kwargs)


def test_stratified_with_one_stratum_is_the_paired_comparison() -> None:
    a, b = _random_pair(80, seed=9)
    assert stratified_comparison({"x": (a, b)}, resamples=1500, seed=4) == paired_comparison(
        a, b, resamples=1500, seed=4
    )


def test_stratified_is_the_bootstrap_of_the_unweighted_mean() -> None:
    resamples, seed = 400, 5
    s1 = _random_pair(30, seed=10, pa=0.3, pb=0.6)
    s2 = _random_pair(11, seed=11, pa=0.8, pb=0.7)
    c = stratified_comparison({"zeta": s2, "alpha": s1}, resamples=resamples, seed=seed)

    rng = np.random.default_rng(seed)
    boot = np.zeros(resamples)
    diffs, accs_a, accs_b = [], [], []
    for a, b in (s1, s2):  # strata in sorted name order: "alpha", then "zeta"
        ids = sorted(a)
        xa = np.array([a[k] for k in ids], dtype=float)
        xb = np.array([b[k] for k in ids], dtype=float)
        idx = rng.integers(0, len(ids), size=(resamples, len(ids)))
        boot += (xb[idx] - xa[idx]).mean(axis=1)
        diffs.append(xb.mean() - xa.mean())
        accs_a.append(xa.mean())
        accs_b.append(xb.mean())
    low, high = np.quantile(boot / 2, [0.025, 0.975])
    assert c.ci_low == pytest.approx(low, abs=1e-12)
    assert c.ci_high == pytest.approx(high, abs=1e-12)
    assert c.diff == pytest.approx(np.mean(diffs))
    assert (c.acc_a, c.acc_b) == (pytest.approx(np.mean(accs_a)), pytest.approx(np.mean(accs_b)))
    assert c.n == 41 and c.strata == 2
    # Both strata use the same doc_ids, so prefix them to pool the items.
    pool_a = {**{f"1:{k}": v for k, v in s1[0].items()}, **{f"2:{k}": v for k, v in s2[0].items()}}
    pool_b = {**{f"1:{k}": v for k, v in s1[1].items()}, **{f"2:{k}": v for k, v in s2[1].items()}}
    pooled = paired_comparison(pool_a, pool_b, resamples=10)
    assert (c.flips_up, c.flips_down, c.mcnemar_p) == (pooled.flips_up, pooled.flips_down, pooled.mcnemar_p)


def test_accuracy_interval() -> None:
    a, _ = _random_pair(200, seed=12)
    acc, low, high = accuracy_interval(a, resamples=2000, seed=1)
    assert acc == sum(a.values()) / 200
    assert low < acc < high
    mean, _, _ = accuracy_interval([a, {"x": True, "y": True}], resamples=100)
    assert mean == pytest.approx((acc + 1.0) / 2)
    with pytest.raises(StatisticsError):
        accuracy_interval({})


def test_formatting() -> None:
    c = Comparison(
        n=100,
        acc_a=0.5,
        acc_b=0.549,
        diff=0.049,
        ci_low=0.012,
        ci_high=0.086,
        mcnemar_p=0.01,
        flips_up=6,
        flips_down=1,
    )
    assert format_delta(c) == "+4.9 [+1.2, +8.6]"
    neg = Comparison(100, 0.6, 0.482, -0.118, -0.1804, -0.0004, 2e-6, 1, 13)
    assert format_delta(neg) == "-11.8 [-18.0, +0.0]"  # a rounded -0.0 prints as +0.0
    assert (format_p(0.03857421875), format_p(1.0), format_p(0.0009)) == ("0.039", "1.000", "<0.001")
    assert (format_pct(0.6213), format_pct(float("nan"))) == ("62.1", "—")
    assert c.to_dict()["flips_up"] == 6 and set(c.to_dict()) >= {
        "n",
        "acc_a",
        "acc_b",
        "diff",
        "ci_low",
        "ci_high",
        "mcnemar_p",
        "flips_up",
        "flips_down",
    }


# ------------------------------------------------------------------------------- sampled items
def test_sampled_items_pair_their_means_with_the_sign_flip_test() -> None:
    import itertools

    a = {"1": 0.25, "2": 0.5, "3": 1.0, "4": 0.0, "5": 0.75}
    b = {"1": 0.75, "2": 0.5, "3": 1.0, "4": 0.5, "5": 0.5}
    c = paired_comparison(a, b, resamples=10_000, seed=3)
    d = np.array([b[k] - a[k] for k in sorted(a)])
    assert c.test == "sign-flip"
    assert c.diff == pytest.approx(d.mean())
    assert (c.flips_up, c.flips_down) == (2, 1)
    # exact: every one of the 2^5 sign patterns, |mean| at least the observed one
    flipped = [abs((d * s).mean()) for s in itertools.product([1, -1], repeat=5)]
    expected = sum(f >= abs(d.mean()) - 1e-12 for f in flipped) / len(flipped)
    assert c.mcnemar_p == pytest.approx(expected)
    # the bootstrap of the per-item differences, drawn as the module docstring says
    rng = np.random.default_rng(3)
    boot = d[rng.integers(0, 5, size=(10_000, 5))].mean(axis=1)
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))


def test_sign_flip_on_zero_one_items_is_mcnemar() -> None:
    a = {str(i): v for i, v in enumerate([1.0, 0, 0, 0, 1, 0, 0, 1])}
    b = {str(i): v for i, v in enumerate([1.0, 1, 1, 1, 0, 1, 0, 1])}
    d = {"": np.array([b[k] - a[k] for k in sorted(a)])}
    assert sign_flip_p(d) == pytest.approx(mcnemar_exact(4, 1))
    assert paired_comparison(a, b).test == "mcnemar"


def test_a_mean_outside_zero_one_is_refused() -> None:
    with pytest.raises(StatisticsError, match=r"per-item value 1\.5 is not a correctness in"):
        paired_comparison({"1": 1.5}, {"1": 0.5})
