"""The statistics behind a verdict: intervals, paired differences, tests and sample sizes.

Everything here works on plain arrays of per-item values and knows nothing about runs or
variants, so each function can be checked against an independent computation (scipy,
statsmodels, a hand-worked example) on fixed data.

- `mean_ci`: mean, standard error and 95% t interval. With `clusters`, the standard error is
  the cluster-robust one with the usual small-cluster correction G/(G-1) and the t quantile
  uses G-1 degrees of freedom, because items that share a source are not independent.
- `bootstrap_ci`: a seeded percentile bootstrap for statistics that are not item means
  (macro-F1); it resamples clusters instead of items when clusters are given.
- `paired_difference`: the mean of B-A on the items both scored, with the interval from
  `mean_ci`; the p-value is McNemar's exact test for 0/1 metrics without clusters, and the
  (clustered) paired t test otherwise.
  Its interval is Newcombe's paired method 10 for independent 0/1 pairs, and the exact
  no-change bound when no item's score moved (a t interval is [0, 0] there at any n).
- `proportion_ci` (`wilson_ci`, `clopper_pearson_ci`): intervals for 0/1 means that stay valid
  at small n and at 0 % / 100 %, where a t interval collapses to [p, p].
- `settling_items`, `detectable_changed_share`: sample sizes for sets too small to judge
  (below MIN_PAIRED_ITEMS a step gets no verdict) and for `testset check`'s warning.
- `holm`: Holm's step-down adjustment across the ladder's steps.
- `detectable_effect`: the smallest standardised difference n paired items detect with the
  given power (the inverse of `items_needed`, for a test set before any run).
- `items_needed`: how many paired items a two-sided paired t test at alpha needs to detect a
  difference this size with the given power (noncentral t, as statsmodels' TTestPower).

NaN means "not scorable": it is dropped and counted (`n_nan`), never averaged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from scipy.optimize import brentq

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.80
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A mean with its uncertainty. `n` counts the values used; `n_nan` those dropped."""

    mean: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    n_nan: int
    df: float = math.nan
    n_clusters: int | None = None  # None: items treated as independent


@dataclass(frozen=True)
class PairedDifference:
    """B minus A on the items both scored; `n` pairs used, `n_excluded` with a NaN side."""

    delta: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    p_method: str  # "mcnemar_exact", "paired_t", "paired_t_clustered" or "sign_exact"
    n: int
    n_excluded: int
    sd: float  # standard deviation of the per-item differences
    items_needed: int | None
    n_clusters: int | None = None
    discordant: tuple[int, int] | None = None  # (A right & B wrong, A wrong & B right), 0/1 only
    ci_method: str = "t"  # "newcombe_paired", "no_change_exact", "t" or "t_clustered"


def _as_array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=float)


def _clean(values, clusters):
    x = _as_array(values)
    keep = ~np.isnan(x)
    g = None if clusters is None else np.asarray(clusters, dtype=object)
    if g is not None and len(g) != len(x):
        raise ValueError(f"clusters has {len(g)} entries for {len(x)} values")
    return x[keep], (None if g is None else g[keep]), int((~keep).sum())


def cluster_labels(clusters: Sequence[object | None], ids: Sequence[object]) -> np.ndarray:
    """Cluster labels with an item that has no cluster standing alone (its own cluster)."""
    return np.asarray([f"cluster:{c}" if c is not None else f"item:{i}"
                       for c, i in zip(clusters, ids, strict=True)], dtype=object)


def clustered_se(values: Sequence[float] | np.ndarray,
                 clusters: Sequence[object]) -> tuple[float, int]:
    """Cluster-robust standard error of the mean (CR1) and the number of clusters G.

    se^2 = G/(G-1) * sum_g (sum_{i in g} (x_i - mean))^2 / n^2. With one item per cluster this
    is exactly s^2/n, the ordinary standard error.
    """
    x = _as_array(values)
    labels = np.asarray(clusters, dtype=object)
    n = len(x)
    uniq = {}
    codes = np.array([uniq.setdefault(c, len(uniq)) for c in labels], dtype=int)
    g = len(uniq)
    if n == 0 or g < 2:
        return math.nan, g
    resid = x - x.mean()
    sums = np.bincount(codes, weights=resid, minlength=g)
    var = g / (g - 1) * float(np.sum(sums ** 2)) / n ** 2
    return math.sqrt(var), g


def mean_ci(values: Sequence[float] | np.ndarray, *, clusters: Sequence[object] | None = None,
            confidence: float = CONFIDENCE) -> Estimate:
    """Mean, standard error and t interval of `values`, NaN dropped and counted.

    Without clusters: se = s/sqrt(n), df = n-1. With clusters: the CR1 clustered se and
    df = G-1. Undefined quantities (n < 2, a single cluster) are NaN.
    """
    x, g, n_nan = _clean(values, clusters)
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0, n_nan)
    mean = float(x.mean())
    if g is None:
        se = float(x.std(ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
        df, n_clusters = float(n - 1), None
    else:
        se, n_clusters = clustered_se(x, g)
        df = float(n_clusters - 1)
    if math.isnan(se) or df < 1:
        return Estimate(mean, se, math.nan, math.nan, n, n_nan, df, n_clusters)
    half = float(sps.t.ppf(0.5 + confidence / 2, df)) * se
    return Estimate(mean, se, mean - half, mean + half, n, n_nan, df, n_clusters)


@dataclass(frozen=True)
class BootstrapEstimate:
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    n_resamples: int  # resamples whose statistic was defined


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, *,
                 clusters: Sequence[object] | None = None,
                 n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                 confidence: float = CONFIDENCE) -> BootstrapEstimate:
    """Seeded percentile bootstrap of `statistic(indices)` over n items.

    `statistic` receives an array of item indices (with repeats) and returns a float. With
    `clusters` (one label per item), whole clusters are resampled, keeping their items together.
    Resamples where the statistic is NaN are left out of the interval.
    """
    if n == 0:
        return BootstrapEstimate(math.nan, math.nan, math.nan, math.nan, 0, 0)
    estimate = float(statistic(np.arange(n)))
    rng = np.random.default_rng(seed)
    groups: list[np.ndarray] = []
    if clusters is not None:
        by: dict[object, list[int]] = {}
        for i, c in enumerate(np.asarray(clusters, dtype=object)):
            by.setdefault(c, []).append(i)
        groups = [np.array(v) for v in by.values()]
    reps = np.empty(n_resamples)
    for r in range(n_resamples):
        if clusters is None:
            reps[r] = statistic(rng.integers(0, n, size=n))
        else:
            pick = rng.integers(0, len(groups), size=len(groups))
            reps[r] = statistic(np.concatenate([groups[j] for j in pick]))
    reps = reps[~np.isnan(reps)]
    if len(reps) < 2:
        return BootstrapEstimate(estimate, math.nan, math.nan, math.nan, n, len(reps))
    tail = (1 - confidence) / 2
    low, high = np.quantile(reps, [tail, 1 - tail])
    return BootstrapEstimate(estimate, float(reps.std(ddof=1)), float(low), float(high), n,
                             len(reps))


def mcnemar_exact(a_right_b_wrong: int, a_wrong_b_right: int) -> float:
    """Two-sided exact McNemar p: the binomial test of the discordant pairs against 1/2."""
    b, c = int(a_right_b_wrong), int(a_wrong_b_right)
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * sps.binom.cdf(min(b, c), b + c, 0.5)))


def is_binary(*arrays: np.ndarray) -> bool:
    """True when every non-NaN value is 0 or 1 (accuracy, exact match, containment)."""
    for a in arrays:
        a = a[~np.isnan(a)]
        if not np.all((a == 0) | (a == 1)):
            return False
    return True


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                      clusters: Sequence[object] | None = None, confidence: float = CONFIDENCE,
                      alpha: float = ALPHA, power: float = POWER,
                      bounded: bool = False) -> PairedDifference:
    """B - A over the items where neither is NaN (a and b aligned on the same items).

    The p-value is McNemar's exact test when both are 0/1 metrics and the items are
    independent; with clusters (or graded metrics) it is the paired t test on the same
    (clustered) standard error the interval uses, so the p-value and the interval agree.

    The interval: Newcombe's paired method 10 for independent 0/1 pairs; when no item's score
    changed and a difference is bounded by 1 (0/1 scores, or `bounded` [0, 1] metrics), the
    exact no-change bound over the items (or the clusters), since a t interval there is
    [0, 0] however few items there are; when every item of a `bounded` metric moved by the
    same c (token F1 0 -> 0.5 on all 8 items), likewise: c widened by the share of units
    that could still move otherwise, with the exact sign test's p, not [c, c] and p 0;
    otherwise the (clustered) t interval.
    """
    xa, xb = _as_array(a), _as_array(b)
    if len(xa) != len(xb):
        raise ValueError(f"paired arrays differ in length: {len(xa)} vs {len(xb)}")
    keep = ~(np.isnan(xa) | np.isnan(xb))
    g = None if clusters is None else np.asarray(clusters, dtype=object)[keep]
    xa, xb = xa[keep], xb[keep]
    n_excluded = int((~keep).sum())
    d = xb - xa
    est = mean_ci(d, clusters=g, confidence=confidence)
    sd = float(d.std(ddof=1)) if len(d) >= 2 else math.nan
    binary = len(d) > 0 and is_binary(xa, xb)
    discordant = None
    if binary:
        discordant = (int(np.sum((xa == 1) & (xb == 0))), int(np.sum((xa == 0) & (xb == 1))))
    if binary and g is None:
        p, method = mcnemar_exact(*discordant), "mcnemar_exact"
    else:
        p = _t_p_value(est.mean, est.se, est.df)
        method = "paired_t" if g is None else "paired_t_clustered"
    low, high, ci_method = est.ci_low, est.ci_high, "t" if g is None else "t_clustered"
    units = len(d) if g is None else len(set(g.tolist()))
    if len(d) and np.all(d == 0) and (binary or bounded):
        u = no_change_bound(units, confidence=confidence)
        low, high, ci_method = -u, u, "no_change_exact"
    elif len(d) and np.all(d == d[0]) and bounded and not (binary and g is None):
        # every item moved by the same amount c: a t interval is [c, c] with p 0 at any n.
        # At most a share u of the units could move otherwise, each anywhere in [-1, 1]
        c, u = float(d[0]), no_change_bound(units, confidence=confidence)
        low, high, ci_method = c - u * (1 + c), c + u * (1 - c), "same_change_exact"
        p, method = min(1.0, 2 * 0.5 ** units), "sign_exact"  # every unit on one side
    elif binary and g is None:
        low, high = newcombe_paired_ci(xa, xb, confidence=confidence)
        ci_method = "newcombe_paired"
    needed = None
    if est.n >= 2 and not math.isnan(est.se):
        # the sd an iid sample would need to give this se: with clusters, the design effect
        sd_eff = est.se * math.sqrt(est.n)
        needed = items_needed(est.mean, sd_eff, alpha=alpha, power=power)
    return PairedDifference(est.mean, est.se, low, high, p, method, est.n,
                            n_excluded, sd, needed, est.n_clusters, discordant, ci_method)


def _t_p_value(mean: float, se: float, df: float) -> float:
    if math.isnan(mean) or math.isnan(se) or math.isnan(df) or df < 1:
        return math.nan
    if se == 0:
        return 1.0 if mean == 0 else 0.0
    return float(2 * sps.t.sf(abs(mean / se), df))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order; NaN stays NaN and is not counted."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    idx = [i for i in np.argsort(p, kind="stable") if not math.isnan(p[i])]
    m, running = len(idx), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(v) for v in out]


def t_test_power(effect_size: float, n: int, *, alpha: float = ALPHA) -> float:
    """Power of the two-sided one-sample/paired t test with n items at standardised effect d."""
    if n < 2:
        return math.nan
    df, nc = n - 1, abs(effect_size) * math.sqrt(n)
    crit = sps.t.isf(alpha / 2, df)
    wrong_side = float(sps.nct.cdf(-crit, df, nc))
    if math.isnan(wrong_side):  # scipy gives NaN far out in that tail (few df, large nc): ~0
        wrong_side = 0.0
    return float(sps.nct.sf(crit, df, nc)) + wrong_side


def detectable_effect(n: int, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest standardised difference (delta / sd) that a two-sided paired t test on
    `n` items detects with `power`: statsmodels' TTestPower().solve_power(nobs=n). NaN below
    two items. Multiplied by the sd of the per-item differences it is in the metric's units."""
    if n < 2:
        return math.nan
    hi = (sps.norm.isf(alpha / 2) + sps.norm.ppf(power)) / math.sqrt(n)  # normal: too small
    while t_test_power(hi, n, alpha=alpha) < power:  # widen gently: nct is NaN far out
        hi *= 1.25
    return float(brentq(lambda d: t_test_power(d, n, alpha=alpha) - power, 1e-9, hi))


def items_needed(delta: float, sd: float, *, alpha: float = ALPHA,
                 power: float = POWER) -> int | None:
    """Smallest n whose two-sided paired t test at `alpha` detects `delta` with `power`.

    None when the difference is zero or undefined (no sample size detects a zero difference);
    2 when every item moved by the same amount (sd 0), the least a t test can use.
    """
    if math.isnan(delta) or math.isnan(sd) or delta == 0:
        return None
    if sd == 0:
        return 2
    d = abs(delta) / sd
    z = sps.norm.isf(alpha / 2) + sps.norm.ppf(power)
    n = max(2, int(math.ceil((z / d) ** 2)))  # the normal approximation: a lower bound
    if n > 10_000_000:
        return n  # the t correction is negligible here and nct is slow to evaluate
    while t_test_power(d, n, alpha=alpha) < power:
        n += 1
    while n > 2 and t_test_power(d, n - 1, alpha=alpha) >= power:
        n -= 1
    return n



# ---- intervals that stay honest at small n and at 0 % / 100 % -------------------------------

MIN_PAIRED_ITEMS = 30  # below this a step is inconclusive, whatever its interval says
DETECTABLE_DELTA = 0.05  # the difference `testset check` and an unsettled step aim to detect
ASSUMED_CHANGED = 0.20  # share of items assumed to change between rungs when none did


@dataclass(frozen=True)
class Interval:
    """An interval with the name of the method that produced it (written to summary.json)."""

    low: float
    high: float
    method: str


def _z(confidence: float) -> float:
    return float(sps.norm.isf((1 - confidence) / 2))


def wilson_ci(successes: int, n: int, *, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for successes/n: valid at small n and at 0 % or 100 %.

    Unlike the t interval it never collapses to [p, p] when every item agrees (5/5 gives
    [0.566, 1]). Equals statsmodels' proportion_confint(method="wilson"). NaN for n = 0.
    """
    if n == 0:
        return math.nan, math.nan
    z = _z(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson_ci(successes: int, n: int, *,
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for successes/n from beta quantiles; statsmodels'
    proportion_confint(method="beta"). NaN for n = 0."""
    if n == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else float(sps.beta.ppf(tail, successes, n - successes + 1))
    high = 1.0 if successes == n else float(sps.beta.isf(tail, successes + 1, n - successes))
    return low, high


def proportion_ci(values: Sequence[float] | np.ndarray, *,
                  clusters: Sequence[object] | None = None,
                  confidence: float = CONFIDENCE) -> Interval:
    """Interval for the mean of 0/1 values (NaN dropped).

    Independent items: Wilson. Clustered items: the cluster-robust t interval of `mean_ci`
    while it is defined; when it degenerates (every item alike, so the clustered se is 0, or a
    single cluster) Wilson with the number of clusters as the sample size, since a cluster of
    alike items carries about one item's worth of evidence.
    """
    x, g, _ = _clean(values, clusters)
    if len(x) == 0:
        return Interval(math.nan, math.nan, "wilson")
    if g is None:
        return Interval(*wilson_ci(int(x.sum()), len(x), confidence=confidence), "wilson")
    est = mean_ci(x, clusters=g, confidence=confidence)
    if est.se > 0:
        return Interval(est.ci_low, est.ci_high, "t_clustered")
    n_clusters = len(set(g.tolist()))
    successes = round(est.mean * n_clusters)  # every item alike: 0 or all clusters
    return Interval(*wilson_ci(successes, n_clusters, confidence=confidence), "wilson_clusters")


def newcombe_paired_ci(a: np.ndarray, b: np.ndarray, *,
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Interval for mean(b) - mean(a) on paired 0/1 values: Newcombe (1998, Stat Med 17:2635)
    method 10, the two Wilson intervals combined with the (continuity-corrected) phi
    correlation of the pairs; it reproduces the worked example of Fagerland, Lydersen & Laake,
    "Statistical Analysis of Contingency Tables" (2017), ch. 8 (Cavo et al.: -0.1186 to -0.0046).

    It stays inside [-1, 1], is asymmetric near the edges, and does not collapse to [d, d]
    when few items changed, as the paired t interval does.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(a)
    if n == 0:
        return math.nan, math.nan
    both = float(np.sum((a == 1) & (b == 1)))
    a_only = float(np.sum((a == 1) & (b == 0)))
    b_only = float(np.sum((a == 0) & (b == 1)))
    neither = n - both - a_only - b_only
    pa, pb = (both + a_only) / n, (both + b_only) / n
    la, ua = wilson_ci(int(both + a_only), n, confidence=confidence)
    lb, ub = wilson_ci(int(both + b_only), n, confidence=confidence)
    denom = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    cross = both * neither - a_only * b_only
    # Newcombe's phi with its continuity correction: a positive product shrunk by n/2
    # (to 0 when it is smaller), a negative one kept as it is
    cross = cross - n / 2 if cross > n / 2 else min(cross, 0.0)
    phi = cross / math.sqrt(denom) if denom > 0 else 0.0
    d = pb - pa
    low = d - math.sqrt(max(0.0, (pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa)
                            + (ua - pa) ** 2))
    high = d + math.sqrt(max(0.0, (ub - pb) ** 2 - 2 * phi * (ub - pb) * (pa - la)
                             + (pa - la) ** 2))
    return max(-1.0, low), min(1.0, high)


def no_change_bound(n_units: int, *, confidence: float = CONFIDENCE) -> float:
    """When no item's score changed, the largest share of items that could still change:
    the exact (Clopper-Pearson) upper limit of 0 changes in n_units. A difference of scores
    bounded by 1 lies within +/- this, so the interval is [-u, +u], never [0, 0]."""
    return clopper_pearson_ci(0, n_units, confidence=confidence)[1] if n_units else math.nan


def settling_items(delta: float, sd: float, *, alpha: float = ALPHA,
                   power: float = POWER) -> int:
    """Paired items that would settle a step: `items_needed` for the observed difference;
    when every item moved alike (sd 0 or undefined), for that difference with at least
    ASSUMED_CHANGED of the items changing (a bigger observed difference never needs more
    items than a smaller one: the 5-pt fallback read 'about 620' for a +100-pt step); when
    no difference was observed, for DETECTABLE_DELTA with ASSUMED_CHANGED of the items
    changing; never below MIN_PAIRED_ITEMS."""
    n = None
    if not (math.isnan(sd) or sd == 0):
        n = items_needed(delta, sd, alpha=alpha, power=power)
    elif not math.isnan(delta) and delta != 0:
        spread = assumed_sd(max(ASSUMED_CHANGED, min(1.0, abs(delta))), min(1.0, abs(delta)))
        n = items_needed(delta, spread, alpha=alpha, power=power)
    if n is None:
        n = items_needed(DETECTABLE_DELTA, assumed_sd(), alpha=alpha, power=power)
    return max(MIN_PAIRED_ITEMS, n or MIN_PAIRED_ITEMS)


def assumed_sd(changed: float = ASSUMED_CHANGED, delta: float = DETECTABLE_DELTA) -> float:
    """sd of per-item 0/1 differences when `changed` of the items change and the mean
    difference is `delta`: var = changed - delta^2."""
    return math.sqrt(changed - delta * delta)


def detectable_changed_share(n: int, *, delta: float = DETECTABLE_DELTA, alpha: float = ALPHA,
                             power: float = POWER) -> float:
    """The largest share of items that may change between two rungs for n paired items to
    still detect a `delta` difference with `power` (0 when even no noise would not do)."""
    lo, hi = delta, 1.0
    if n < 2 or t_test_power(delta / math.sqrt(max(lo - delta * delta, 1e-12)), n,
                             alpha=alpha) < power:
        return 0.0
    for _ in range(50):  # bisection: power falls as the share changing (the sd) grows
        mid = (lo + hi) / 2
        sd = math.sqrt(mid - delta * delta)
        if t_test_power(delta / sd, n, alpha=alpha) >= power:
            lo = mid
        else:
            hi = mid
    return lo
