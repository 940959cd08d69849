"""Unbiased pass@k and avg@n against the closed form and brute-force enumeration."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from rvec.errors import InvalidArgumentError
from rvec.eval.sampling import avg_at_n, cell_avg_at_n, cell_pass_at_k, item_counts, pass_at_k


def closed_form(n: int, c: int, k: int) -> Fraction:
    """1 - C(n-c, k) / C(n, k), exactly (math.comb is 0 when n - c < k)."""
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def enumerate_subsets(n: int, c: int, k: int) -> Fraction:
    """The share of the k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(i < c for i in s) for s in subsets), len(subsets))


@pytest.mark.parametrize("n", [1, 2, 5, 8, 10])
def test_pass_at_k_equals_closed_form_and_enumeration(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            exact = closed_form(n, c, k)
            assert exact == enumerate_subsets(n, c, k), (n, c, k)
            assert pass_at_k(n=n, c=c, k=k) == pytest.approx(float(exact), abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_where_binomials_overflow_a_float() -> None:
    # C(2000, 1000) ~ 2e600 overflows a float; the product form does not.
    exact = closed_form(2000, 3, 1000)
    assert pass_at_k(n=2000, c=3, k=1000) == pytest.approx(float(exact), rel=1e-12)
    assert pass_at_k(n=2000, c=0, k=1000) == 0.0
    assert pass_at_k(n=2000, c=1001, k=1000) == 1.0


def test_pass_at_1_is_the_share_correct_and_avg_at_n_too() -> None:
    assert pass_at_k(n=10, c=3, k=1) == pytest.approx(0.3)
    assert avg_at_n(n=10, c=3) == 0.3
    assert avg_at_n(n=4, c=0) == 0.0


def test_cell_scores_are_per_item_then_the_mean() -> None:
    samples = {"0": [1, 0, 0, 0], "1": [True, True, False, False], "2": [0.0, 0.0, 0.0, 0.0]}
    p2 = cell_pass_at_k(samples, k=2)
    expected = {"0": closed_form(4, 1, 2), "1": closed_form(4, 2, 2), "2": Fraction(0)}
    assert {k: v for k, v in p2.items() if k != "mean"} == pytest.approx(
        {k: float(v) for k, v in expected.items()}
    )
    assert p2["mean"] == pytest.approx(float(sum(expected.values()) / 3))
    avg = cell_avg_at_n(samples)
    assert avg == {"0": 0.25, "1": 0.5, "2": 0.0, "mean": 0.25}
    assert item_counts([True, False, 1.0]) == (3, 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pass_at_k(n=4, c=5, k=1), "c=5 correct samples out of n=4: must lie in 0..4"),
        (lambda: pass_at_k(n=4, c=1, k=5), "k=5 with n=4 samples: k must lie in 1..4"),
        (lambda: pass_at_k(n=0, c=0, k=1), "n=0 samples: need at least 1"),
        (lambda: cell_pass_at_k({"7": [1, 0]}, k=3), "pass@3: item '7' has 2 sample(s), fewer than k=3"),
        (lambda: cell_pass_at_k({}, k=1), "no items to score"),
        (lambda: item_counts([1, 0.5]), "sample verdict 0.5 is not 0 or 1"),
        (lambda: cell_avg_at_n({"3": []}), "item '3' has no samples"),
    ],
)
def test_bad_inputs_are_one_line_errors(call, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        call()
    assert message in str(err.value) and "\n" not in str(err.value)
