"""Statistics for evaluation campaigns, in pure Python (no scipy, no numpy).

What each function estimates, and how (design reference §4):

- `wilson`: a success rate k/n with the Wilson score interval (no continuity correction; the
  'wilson' method of scipy's `binomtest(...).proportion_ci`).
- `bootstrap`: any statistic of a sample with a percentile bootstrap interval. Resamples are drawn
  from `random.Random` seeded by the caller (derived from the campaign's root seed and a label), so
  a report computed twice from the same trials prints the same interval.
- `paired_bootstrap` / `stratified_bootstrap`: the mean paired difference, resampling pairs (within
  each scenario for the stratified, macro-averaged form).
- `mcnemar_exact`: paired success, exact two-sided binomial test on the discordant pairs.
- `wilcoxon_exact`: paired differences, exact signed-rank test by dynamic programming over rank
  sums. Zeros are dropped (Wilcoxon's original rule, scipy's default `zero_method="wilcox"`); tied
  |d| get mid-ranks and the null distribution is the exact one for those mid-ranks (every sign
  pattern equally likely), so ties never need the normal approximation.
- `holm`: Holm's step-down adjustment of a family of p-values.
- `kaplan_meier` / `rmst`: "fraction mitigated by t" with right-censoring (a trial that never
  mitigated is censored at its budget), and the restricted mean time to mitigation up to tau.
- `decide`: the report's decision rule for "A better than B".

Every estimate carries n, its interval and the method's name, so that printing it whole is the
easy path (`Estimate.text()`).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

CONFIDENCE = 0.95
RESAMPLES = 5_000
MIN_PAIRS = 6  # with 5 pairs or fewer no two-sided sign or signed-rank test can reach p < 0.05


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval: `value [lo, hi], n=…, method`."""

    value: float | None
    lo: float | None
    hi: float | None
    n: int
    method: str
    confidence: float = CONFIDENCE

    def text(self, unit: str = "", digits: int = 2, n_label: str = "") -> str:
        if self.value is None:
            return f"n/a (n={self.n}{n_label})"
        return (f"{_fmt(self.value, digits)}{unit} [{_fmt(self.lo, digits)}, {_fmt(self.hi, digits)}], "
                f"n={self.n}{n_label}, {self.method}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(x: float | None, digits: int) -> str:
    if x is None:
        return "-"
    text = f"{x:.{digits}f}"
    return "0" if text.strip("-0.") == "" else text.replace("-", "\u2212")


# -- proportions ---------------------------------------------------------------------------------


def z_value(confidence: float = CONFIDENCE) -> float:
    return statistics.NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> Estimate:
    """k successes out of n, with the Wilson score interval. n = 0 has no estimate."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Estimate(None, None, None, 0, "Wilson", confidence)
    z = z_value(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the closed form is exact at the edges; clamp only the float noise
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return Estimate(p, lo, hi, n, "Wilson", confidence)


def wilson_trials_needed(lower: float, confidence: float = CONFIDENCE, limit: int = 100_000) -> int | None:
    """The smallest n for which n/n successes give a Wilson lower bound >= `lower` (None: never)."""
    if lower <= 0:
        return 1
    if lower >= 1:
        return None
    z2 = z_value(confidence) ** 2
    # with k = n the lower bound is n / (n + z^2), so n >= z^2 * lower / (1 - lower)
    n = max(1, math.ceil(z2 * lower / (1 - lower) - 1e-9))
    while n <= limit and (wilson(n, n, confidence).lo or 0) < lower:
        n += 1
    return n if n <= limit else None


def binom_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n Bernoulli(1/2) trials (the distribution is
    symmetric, so 'as extreme' means as far from n/2 on either side)."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact McNemar test: b pairs where only A succeeded, c where only B did."""
    return binom_two_sided_half(b, b + c)


# -- summaries -----------------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def stdev(values: Sequence[float]) -> float | None:
    """Sample standard deviation with ddof = 1 (None for fewer than two values)."""
    return statistics.stdev(values) if len(values) >= 2 else None


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default, Hyndman-Fan type 7)."""
    if not sorted_values:
        raise ValueError("quantile of an empty sample")
    h = (len(sorted_values) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


# -- bootstrap -----------------------------------------------------------------------------------


def _percentile_interval(draws: list[float], confidence: float) -> tuple[float, float]:
    draws.sort()
    alpha = 1 - confidence
    return quantile(draws, alpha / 2), quantile(draws, 1 - alpha / 2)


def bootstrap(
    sample: Sequence[Any],
    statistic: Callable[[Sequence[Any]], float],
    *,
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    method: str = "bootstrap",
) -> Estimate:
    """`statistic(sample)` with a percentile bootstrap interval: `resamples` samples drawn with
    replacement from `sample`, seeded with `seed`. An empty sample has no estimate."""
    n = len(sample)
    label = f"{method} percentile B={resamples}"
    if n == 0:
        return Estimate(None, None, None, 0, label, confidence)
    value = statistic(sample)
    rng = random.Random(seed)
    draws = [statistic(rng.choices(sample, k=n)) for _ in range(resamples)]
    lo, hi = _percentile_interval(draws, confidence)
    return Estimate(value, lo, hi, n, label, confidence)


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, seed: int, resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """Mean of the paired differences a_i - b_i, resampling pairs (scipy's bootstrap(paired=True)
    semantics, percentile interval)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    return bootstrap(diffs, mean, seed=seed, resamples=resamples, confidence=confidence,
                     method="paired bootstrap")


def stratified_bootstrap(
    strata: Mapping[str, Sequence[float]], *, seed: int, resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """Macro average of per-stratum means (each scenario weighs the same), with an interval from
    resampling within each stratum. It infers to "this suite of scenarios", not to scenarios like
    these. n is the total number of values (pairs); empty strata are left out."""
    groups = [list(v) for _, v in sorted(strata.items()) if len(v) > 0]
    n = sum(len(g) for g in groups)
    label = f"stratified bootstrap percentile B={resamples}, {len(groups)} scenario{'' if len(groups) == 1 else 's'}"
    if not groups:
        return Estimate(None, None, None, 0, label, confidence)
    value = mean([mean(g) for g in groups])
    rng = random.Random(seed)
    draws = [mean([mean(rng.choices(g, k=len(g))) for g in groups]) for _ in range(resamples)]
    lo, hi = _percentile_interval(draws, confidence)
    return Estimate(value, lo, hi, n, label, confidence)


# -- signed-rank test ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Wilcoxon:
    statistic: float  # T+ (sum of the ranks of positive differences)
    n: int  # non-zero differences used
    zeros: int  # zero differences dropped
    ties: bool  # whether mid-ranks were needed
    p: float  # exact two-sided

    @property
    def method(self) -> str:
        return "Wilcoxon signed-rank, exact" + (" (mid-ranks)" if self.ties else "")


def midranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n of values, ties sharing the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def wilcoxon_exact(diffs: Sequence[float]) -> Wilcoxon:
    """Exact two-sided Wilcoxon signed-rank test of paired differences against zero.

    Zero differences are dropped. |d| are ranked with mid-ranks; doubled ranks are integers, and
    the number of sign patterns giving each doubled rank sum is counted by dynamic programming,
    so the p-value is exact for any ties. p = min(1, 2 * min(P(T+ <= t), P(T+ >= t))).
    """
    nonzero = [d for d in diffs if d != 0]
    zeros = len(diffs) - len(nonzero)
    n = len(nonzero)
    if n == 0:
        return Wilcoxon(0.0, 0, zeros, False, 1.0)
    ranks = midranks([abs(d) for d in nonzero])
    doubled = [round(2 * r) for r in ranks]
    ties = any(r != int(r) for r in ranks) or len(set(ranks)) < n
    t_plus2 = sum(r2 for r2, d in zip(doubled, nonzero, strict=True) if d > 0)
    total = sum(doubled)
    counts = [0] * (total + 1)  # counts[s]: sign patterns whose positive doubled ranks sum to s
    counts[0] = 1
    reach = 0
    for r2 in doubled:
        for s in range(reach, -1, -1):
            if counts[s]:
                counts[s + r2] += counts[s]
        reach += r2
    patterns = 2**n
    lower = sum(counts[: t_plus2 + 1])
    upper = sum(counts[t_plus2:])
    p = min(1.0, 2 * min(lower, upper) / patterns)
    return Wilcoxon(t_plus2 / 2, n, zeros, ties, p)


# -- multiple comparisons ------------------------------------------------------------------------


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None entries are not part of the family)."""
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(indexed)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


# -- survival ------------------------------------------------------------------------------------


def kaplan_meier(times: Sequence[float], events: Sequence[bool]) -> list[tuple[float, float]]:
    """Kaplan-Meier survival S(t) of "not yet mitigated": the steps (t, S just after t) at each
    distinct event time. events[i] is True when trial i mitigated at times[i], False when it was
    censored there (budget reached). At tied times events count before censorings."""
    if len(times) != len(events):
        raise ValueError("times and events differ in length")
    at_risk = len(times)
    surv = 1.0
    steps: list[tuple[float, float]] = []
    for t in sorted(set(times)):
        d = sum(1 for x, e in zip(times, events, strict=True) if x == t and e)
        c = sum(1 for x, e in zip(times, events, strict=True) if x == t and not e)
        if d:
            surv *= 1 - d / at_risk
            steps.append((t, surv))
        at_risk -= d + c
    return steps


def survival_at(steps: Sequence[tuple[float, float]], t: float) -> float:
    s = 1.0
    for ti, si in steps:
        if ti > t:
            break
        s = si
    return s


def fraction_mitigated(steps: Sequence[tuple[float, float]], t: float) -> float:
    """1 - S(t): the Kaplan-Meier estimate of the fraction of trials mitigated by time t."""
    return 1 - survival_at(steps, t)


def rmst(times: Sequence[float], events: Sequence[bool], tau: float) -> float:
    """Restricted mean time to mitigation: the area under the Kaplan-Meier S(t) from 0 to tau.
    With every trial either mitigated or censored at the budget tau, it equals the mean of
    min(TTM, tau)."""
    steps = kaplan_meier(times, events)
    area, prev_t, prev_s = 0.0, 0.0, 1.0
    for t, s in steps:
        if t >= tau:
            break
        area += (t - prev_t) * prev_s
        prev_t, prev_s = t, s
    return area + (tau - prev_t) * prev_s


# -- the decision rule ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    kind: str  # a_better | b_better | no_difference | insufficient_pairs
    text: str


def decide(
    a: str,
    b: str,
    metric: str,
    diff: Estimate,
    *,
    higher_is_better: bool,
    harmful_a: int,
    harmful_b: int,
    p_adjusted: float | None = None,
    alpha: float = 0.05,
    min_pairs: int = MIN_PAIRS,
) -> Decision:
    """"A better than B on X" only when the paired interval of A - B excludes zero in A's favour,
    there are at least `min_pairs` pairs, A has no more harmful trials than B and (when a family of
    claims is made) the Holm-adjusted p-value is below alpha; the same the other way round.
    Otherwise "no detectable difference (n, interval)" or "insufficient pairs"."""
    if diff.n < min_pairs or diff.value is None or diff.lo is None or diff.hi is None:
        return Decision("insufficient_pairs", f"insufficient pairs (n={diff.n}, need {min_pairs})")
    significant = p_adjusted is None or p_adjusted < alpha
    a_wins = diff.lo > 0 if higher_is_better else diff.hi < 0
    b_wins = diff.hi < 0 if higher_is_better else diff.lo > 0
    if a_wins and significant and harmful_a <= harmful_b:
        return Decision("a_better", f"{a} better than {b} on {metric}")
    if b_wins and significant and harmful_b <= harmful_a:
        return Decision("b_better", f"{b} better than {a} on {metric}")
    interval = f"n={diff.n}, CI [{_fmt(diff.lo, 2)}, {_fmt(diff.hi, 2)}]"
    if (a_wins or b_wins) and not significant:
        ahead, behind = (a, b) if a_wins else (b, a)
        return Decision("no_difference", f"no claim: {ahead} ahead of {behind} on {metric} ({interval}) but the "
                                          f"Holm-adjusted p={p_adjusted:.3g} is not below {alpha:g}")
    if (a_wins or b_wins) and significant:
        ahead, behind = (a, b) if a_wins else (b, a)
        more, fewer = (harmful_a, harmful_b) if a_wins else (harmful_b, harmful_a)
        return Decision("no_difference", f"no claim: {ahead} ahead of {behind} on {metric} ({interval}) but with "
                                          f"more harmful trials ({more} vs {fewer})")
    return Decision("no_difference", f"no detectable difference ({interval})")
