"""eval/stats.py against reference values.

Reference values were computed once with scipy 1.17.1 (in a throwaway virtualenv outside the
repository; scipy is not a dependency of the project):
- Wilson: `scipy.stats.binomtest(k, n).proportion_ci(0.95, method="wilson")`
- McNemar: `scipy.stats.binomtest(b, b + c, 0.5).pvalue`
- Wilcoxon without ties: `scipy.stats.wilcoxon(d, method="exact").pvalue`
- Wilcoxon with ties and zeros: `scipy.stats.wilcoxon(d, method=PermutationMethod(n_resamples=inf))`
  (the exhaustive sign-flip distribution; scipy's "exact" ignores ties and gives 0.0742 instead)
- Kaplan-Meier: `scipy.stats.ecdf(CensoredData(uncensored=..., right=...)).sf`
- Bootstrap: `scipy.stats.bootstrap(..., method="percentile", n_resamples=200_000)`; different
  random streams, so compared within a tolerance.
The Wilson trial counts (16, 35, 73) are the design reference's (§4). Holm: the textbook example.
"""

from __future__ import annotations

import itertools

import pytest

from eval import stats

WILSON = [  # k, n, lo, hi
    (5, 5, 0.5655175352168251, 1.0),
    (10, 10, 0.7224672001371109, 1.0),
    (20, 20, 0.8388748419471808, 1.0),
    (0, 10, 0.0, 0.27753279986288926),
    (7, 10, 0.39677814746114526, 0.892208732593699),
    (3, 12, 0.08894166839405471, 0.5323053349335657),
    (1, 2, 0.09453120573423074, 0.9054687942657693),
    (45, 50, 0.7863976856252034, 0.9565242350681095),
]


@pytest.mark.parametrize(("k", "n", "lo", "hi"), WILSON)
def test_wilson_matches_scipy(k: int, n: int, lo: float, hi: float) -> None:
    est = stats.wilson(k, n)
    assert est.value == k / n and est.n == n and est.method == "Wilson"
    assert est.lo == pytest.approx(lo, abs=1e-12)
    assert est.hi == pytest.approx(hi, abs=1e-12)


def test_wilson_edges_and_bad_input() -> None:
    assert stats.wilson(0, 0).value is None
    with pytest.raises(ValueError):
        stats.wilson(3, 2)
    # all-success runs need 16, 35 and 73 trials for the lower bound to reach 0.8, 0.9, 0.95
    assert [stats.wilson_trials_needed(x) for x in (0.8, 0.9, 0.95)] == [16, 35, 73]
    assert stats.wilson(15, 15).lo < 0.8 <= stats.wilson(16, 16).lo
    assert stats.wilson_trials_needed(1.0) is None


@pytest.mark.parametrize(("b", "c", "p"), [
    (0, 6, 0.03125), (1, 9, 0.021484375), (3, 5, 0.7265625), (10, 2, 0.03857421875),
    (0, 0, 1.0), (7, 7, 1.0), (2, 13, 0.00738525390625),
])
def test_mcnemar_exact_matches_scipy(b: int, c: int, p: float) -> None:
    assert stats.mcnemar_exact(b, c) == pytest.approx(p, abs=1e-15)


@pytest.mark.parametrize(("diffs", "p", "n", "zeros", "ties"), [
    ([1.5, -2, 3, 4.5, 5, 6.25, -7, 8], 0.25, 8, 0, False),
    ([-3, -1, -4, -1.5, -5, -9, -2.6, -6.5], 0.0078125, 8, 0, False),
    ([2, 4, -1, 8, 16, -32, 64, 3, 5, 7, 11], 0.0537109375, 11, 0, False),
    ([1, 2, 3, 4, 5, 6], 0.03125, 6, 0, False),
    ([1, 1, -1, 2, 2, 3, 0, 4, -2, 5], 0.08203125, 9, 1, True),
    ([0, 0, 1, 2, -3, 3, 3, 4], 0.21875, 6, 2, True),
])
def test_wilcoxon_exact_matches_scipy(diffs: list[float], p: float, n: int, zeros: int, ties: bool) -> None:
    w = stats.wilcoxon_exact(diffs)
    assert w.p == pytest.approx(p, abs=1e-12)
    assert (w.n, w.zeros, w.ties) == (n, zeros, ties)


def test_wilcoxon_with_ties_equals_brute_force_sign_flips() -> None:
    diffs = [2.0, -2.0, 2.0, 5.0, 1.0, -1.0, 3.0]
    ranks = stats.midranks([abs(d) for d in diffs])
    t_obs = sum(r for r, d in zip(ranks, diffs, strict=True) if d > 0)
    sums = [sum(r for r, s in zip(ranks, signs, strict=True) if s) for signs in
            itertools.product([False, True], repeat=len(diffs))]
    lower = sum(1 for s in sums if s <= t_obs + 1e-9) / len(sums)
    upper = sum(1 for s in sums if s >= t_obs - 1e-9) / len(sums)
    assert stats.wilcoxon_exact(diffs).p == pytest.approx(min(1.0, 2 * min(lower, upper)))
    assert stats.wilcoxon_exact([0, 0]).p == 1.0


def test_six_pairs_are_the_minimum_for_a_two_sided_claim() -> None:
    assert stats.wilcoxon_exact([1, 2, 3, 4, 5]).p == pytest.approx(0.0625)
    assert stats.wilcoxon_exact([1, 2, 3, 4, 5, 6]).p < 0.05


def test_holm_textbook_example() -> None:
    assert stats.holm([0.01, 0.04, 0.03, 0.005, None]) == pytest.approx([0.03, 0.06, 0.06, 0.02, None])
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]  # 2 * 0.5 caps at 1, and adjusted p never decrease


def test_kaplan_meier_matches_scipy_and_rmst_by_hand() -> None:
    times = [5, 8, 8, 12, 15, 20, 20, 20, 30, 30]
    events = [True, True, False, True, False, True, True, False, False, False]
    steps = stats.kaplan_meier(times, events)
    assert [t for t, _ in steps] == [5, 8, 12, 20]
    assert [s for _, s in steps] == pytest.approx([0.9, 0.8, 0.6857142857142856, 0.41142857142857137])
    assert stats.fraction_mitigated(steps, 4.9) == 0
    assert stats.fraction_mitigated(steps, 15) == pytest.approx(1 - 0.6857142857142856)
    # area under S: 5*1 + 3*0.9 + 4*0.8 + 8*0.685714 + 10*0.411429 = 20.5
    assert stats.rmst(times, events, 30) == pytest.approx(20.5)
    # censoring only at the budget: RMST is the mean of min(TTM, tau)
    ttm = [10.0, 25.0, 60.0, 60.0]
    assert stats.rmst(ttm, [True, True, False, False], 60) == pytest.approx(sum(ttm) / 4)


def test_bootstrap_is_seeded_and_close_to_scipy() -> None:
    x = [12.0, 15.5, 9.0, 30.0, 22.0, 18.5, 11.0, 40.0, 16.0, 14.0]
    est = stats.bootstrap(x, stats.mean, seed=7, resamples=20_000)
    assert est == stats.bootstrap(x, stats.mean, seed=7, resamples=20_000)
    assert est != stats.bootstrap(x, stats.mean, seed=8, resamples=20_000)
    assert est.value == pytest.approx(18.8)
    assert (est.lo, est.hi) == pytest.approx((13.75, 24.9), abs=0.35)  # scipy: [13.75, 24.9]
    assert stats.bootstrap([], stats.mean, seed=1).value is None

    a = [20, 25, 31, 18, 40, 22, 27, 35]
    b = [30, 33, 35, 29, 41, 30, 38, 36]
    d = stats.paired_bootstrap(a, b, seed=7, resamples=20_000)
    assert d.value == pytest.approx(-6.75) and d.n == 8 and "paired bootstrap" in d.method
    assert (d.lo, d.hi) == pytest.approx((-9.375, -3.875), abs=0.3)  # scipy paired: [-9.375, -3.875]


def test_stratified_bootstrap_macro_averages() -> None:
    est = stats.stratified_bootstrap({"s1": [1.0, 1.0, 1.0, 1.0], "s2": [10.0, 10.0]}, seed=3, resamples=200)
    assert est.value == pytest.approx(5.5)  # equal weight per scenario, not per pair (4.0)
    assert (est.lo, est.hi) == (5.5, 5.5) and est.n == 6 and "2 scenarios" in est.method


def _est(lo: float, hi: float, n: int) -> stats.Estimate:
    return stats.Estimate((lo + hi) / 2, lo, hi, n, "paired bootstrap")


def test_decision_rule() -> None:
    d = stats.decide
    kw = {"higher_is_better": False, "harmful_a": 0, "harmful_b": 0}
    assert d("embedded", "baseline", "ttm", _est(-52, -21, 8), **kw).kind == "a_better"
    assert d("embedded", "baseline", "ttm", _est(21, 52, 8), **kw).kind == "b_better"
    assert d("embedded", "baseline", "ttm", _est(-52, -21, 5), **kw).kind == "insufficient_pairs"
    nd = d("embedded", "baseline", "ttm", _est(-10, 4, 8), **kw)
    assert nd.kind == "no_difference" and nd.text == "no detectable difference (n=8, CI [\u221210.00, 4.00])"
    # faster but with more harmful trials: no claim
    harm = d("embedded", "baseline", "ttm", _est(-52, -21, 8), higher_is_better=False, harmful_a=1, harmful_b=0)
    assert harm.kind == "no_difference" and "harmful" in harm.text
    # success: higher is better
    assert d("a", "b", "success", _est(0.1, 0.5, 10), higher_is_better=True, harmful_a=0, harmful_b=0).kind == "a_better"
    # Holm-adjusted p above alpha withholds the claim
    held = d("a", "b", "ttm", _est(-52, -21, 8), **kw, p_adjusted=0.0625)
    assert held.kind == "no_difference" and "Holm-adjusted p=0.0625 is not below 0.05" in held.text


def test_estimate_text_names_n_interval_and_method() -> None:
    e = stats.Estimate(-38.0, -52.0, -21.0, 8, "paired bootstrap percentile B=5000")
    assert e.text(" s", digits=0, n_label=" pairs") == \
        "\u221238 s [\u221252, \u221221], n=8 pairs, paired bootstrap percentile B=5000"
