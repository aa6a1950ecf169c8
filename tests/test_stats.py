"""evalkit.analysis.stats against independent computations on fixed data (scipy, statsmodels,
by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.regression.linear_model import OLS
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from evalkit.analysis import stats

X = [0.2, 0.5, 0.9, 0.4, 0.7, 0.1, 0.8, 0.65]


def test_t_interval_matches_scipy():
    est = stats.mean_ci(X)
    ref = sps.ttest_1samp(X, 0.0).confidence_interval(0.95)
    assert est.mean == pytest.approx(np.mean(X))
    assert est.se == pytest.approx(sps.sem(X))
    assert (est.ci_low, est.ci_high) == pytest.approx((ref.low, ref.high))
    assert est.n == len(X) and est.n_nan == 0 and est.df == len(X) - 1


def test_t_interval_other_confidence_matches_scipy():
    est = stats.mean_ci(X, confidence=0.9)
    lo, hi = sps.t.interval(0.9, len(X) - 1, loc=np.mean(X), scale=sps.sem(X))
    assert (est.ci_low, est.ci_high) == pytest.approx((lo, hi))


def test_nan_is_counted_never_averaged():
    est = stats.mean_ci([1.0, math.nan, 0.0, 1.0, math.nan])
    assert est.n == 3 and est.n_nan == 2
    assert est.mean == pytest.approx(2 / 3)
    assert est.se == pytest.approx(sps.sem([1.0, 0.0, 1.0]))


def test_degenerate_samples_give_nan_not_numbers():
    empty = stats.mean_ci([math.nan, math.nan])
    assert empty.n == 0 and empty.n_nan == 2 and math.isnan(empty.mean)
    one = stats.mean_ci([0.7])
    assert one.mean == 0.7 and math.isnan(one.se) and math.isnan(one.ci_low)
    single_cluster = stats.mean_ci([1.0, 0.0, 1.0], clusters=["a", "a", "a"])
    assert math.isnan(single_cluster.se) and math.isnan(single_cluster.ci_high)


def test_clustered_se_hand_worked():
    # x = 1 1 | 0 1 | 0 0 in clusters A | B | C; n = 6, G = 3, mean = 3/6 = 0.5.
    # residuals x - 0.5:  A: +0.5 +0.5 -> sum +1.0;  B: -0.5 +0.5 -> 0.0;  C: -0.5 -0.5 -> -1.0
    # sum of squared cluster sums = 1 + 0 + 1 = 2
    # se^2 = G/(G-1) * 2 / n^2 = 3/2 * 2 / 36 = 1/12  ->  se = 0.288675...
    # df = G - 1 = 2, t(0.975, 2) = 4.302653..., half width = 1.242068...
    x = [1, 1, 0, 1, 0, 0]
    g = ["A", "A", "B", "B", "C", "C"]
    se, n_clusters = stats.clustered_se(x, g)
    assert n_clusters == 3
    assert se == pytest.approx(math.sqrt(1 / 12))
    est = stats.mean_ci(x, clusters=g)
    assert est.df == 2 and est.n_clusters == 3
    assert est.ci_low == pytest.approx(0.5 - 4.302653 * math.sqrt(1 / 12), abs=1e-6)
    assert est.ci_high == pytest.approx(0.5 + 1.242068, abs=1e-6)
    # unclustered for contrast: s^2 = 6 * 0.25 / 5 = 0.3, se = sqrt(0.3 / 6) = 0.2236
    assert stats.mean_ci(x).se == pytest.approx(math.sqrt(0.05))


def test_clustered_se_matches_statsmodels_cluster_robust_ols():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(7), [3, 5, 2, 4, 6, 1, 3])
    y = rng.normal(size=len(groups)) + groups * 0.3
    fit = OLS(y, np.ones(len(y))).fit(cov_type="cluster", cov_kwds={"groups": groups})
    # statsmodels' CR1 correction is G/(G-1) * (N-1)/(N-K); with one regressor K = 1
    se, _ = stats.clustered_se(y, groups)
    assert se == pytest.approx(float(fit.bse[0]))


def test_one_item_per_cluster_is_the_ordinary_se():
    se, g = stats.clustered_se(X, [f"c{i}" for i in range(len(X))])
    assert g == len(X) and se == pytest.approx(sps.sem(X))


def test_items_without_cluster_stand_alone():
    labels = stats.cluster_labels(["a", None, "a", None], ["i1", "i2", "i3", "i4"])
    assert len(set(labels.tolist())) == 3


def test_paired_interval_and_p_match_scipy_for_graded_metrics():
    a = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.6, 0.2, 0.9, 0.3, 0.45])
    b = np.array([0.3, 0.5, 0.30, 0.9, 0.7, 0.8, 0.4, 0.95, 0.5, 0.4])
    diff = stats.paired_difference(a, b)
    ref = sps.ttest_rel(b, a)
    ci = ref.confidence_interval(0.95)
    assert diff.delta == pytest.approx(np.mean(b - a))
    assert (diff.ci_low, diff.ci_high) == pytest.approx((ci.low, ci.high))
    assert diff.p_value == pytest.approx(ref.pvalue)
    assert diff.p_method == "paired_t" and diff.discordant is None


def test_paired_difference_drops_pairs_with_a_nan_side():
    a = [1.0, 0.0, math.nan, 1.0, 0.5, 0.2]
    b = [1.0, 1.0, 1.0, math.nan, 0.7, 0.1]
    diff = stats.paired_difference(a, b)
    assert diff.n == 4 and diff.n_excluded == 2
    ref = sps.ttest_rel([1.0, 1.0, 0.7, 0.1], [1.0, 0.0, 0.5, 0.2]).confidence_interval()
    assert (diff.ci_low, diff.ci_high) == pytest.approx((ref.low, ref.high))


@pytest.mark.parametrize("b_wins,a_wins", [(9, 2), (0, 5), (3, 3), (12, 30), (1, 0)])
def test_mcnemar_exact_matches_binomial_test(b_wins, a_wins):
    both_right, both_wrong = 7, 4
    a = [1] * both_right + [0] * both_wrong + [1] * a_wins + [0] * b_wins
    b = [1] * both_right + [0] * both_wrong + [0] * a_wins + [1] * b_wins
    diff = stats.paired_difference(a, b)
    assert diff.p_method == "mcnemar_exact"
    assert diff.discordant == (a_wins, b_wins)
    expected = sps.binomtest(b_wins, a_wins + b_wins, 0.5).pvalue
    assert diff.p_value == pytest.approx(expected)
    table = [[both_right, a_wins], [b_wins, both_wrong]]
    assert diff.p_value == pytest.approx(mcnemar(table, exact=True).pvalue)


def test_mcnemar_without_discordant_pairs_is_one():
    assert stats.mcnemar_exact(0, 0) == 1.0


def test_clustered_binary_step_uses_the_clustered_t_test():
    a = [1, 0, 1, 0, 1, 1, 0, 0]
    b = [1, 1, 1, 1, 0, 1, 1, 0]
    g = ["p", "p", "q", "q", "r", "r", "s", "s"]
    diff = stats.paired_difference(a, b, clusters=g)
    d = np.array(b) - np.array(a)
    est = stats.mean_ci(d, clusters=g)
    assert diff.p_method == "paired_t_clustered"
    assert (diff.ci_low, diff.ci_high) == pytest.approx((est.ci_low, est.ci_high))
    assert diff.p_value == pytest.approx(2 * sps.t.sf(est.mean / est.se, est.df))


def test_holm_matches_statsmodels_and_keeps_order_and_nan():
    p = [0.01, 0.04, 0.03, 0.2, 0.005]
    expected = multipletests(p, method="holm")[1]
    assert stats.holm(p) == pytest.approx(list(expected))
    with_nan = stats.holm([0.01, math.nan, 0.04])
    assert math.isnan(with_nan[1])
    assert [with_nan[0], with_nan[2]] == pytest.approx(
        list(multipletests([0.01, 0.04], method="holm")[1]))


@pytest.mark.parametrize("effect", [0.05, 0.12, 0.25, 0.5, 0.8, 1.3])
def test_items_needed_matches_statsmodels(effect):
    sd = 0.4
    n = stats.items_needed(effect * sd, sd)
    solved = TTestPower().solve_power(effect_size=effect, alpha=0.05, power=0.8,
                                      alternative="two-sided")
    assert n == math.ceil(solved)
    power = TTestPower().power(effect_size=effect, nobs=n, alpha=0.05)
    assert power >= 0.8
    assert TTestPower().power(effect_size=effect, nobs=n - 1, alpha=0.05) < 0.8 or n == 2


def test_items_needed_edge_cases():
    assert stats.items_needed(0.0, 0.3) is None  # nothing to detect
    assert stats.items_needed(math.nan, 0.3) is None
    assert stats.items_needed(0.1, 0.0) == 2  # every item moved the same way
    assert stats.items_needed(-0.2, 0.4) == stats.items_needed(0.2, 0.4)


def test_paired_items_needed_uses_the_observed_difference():
    a = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.6, 0.2, 0.9, 0.3, 0.45])
    b = a + np.array([0.2, -0.1, 0.05, 0.1, 0.0, 0.2, 0.15, -0.05, 0.1, 0.05])
    diff = stats.paired_difference(a, b)
    d = b - a
    solved = TTestPower().solve_power(effect_size=d.mean() / d.std(ddof=1), alpha=0.05,
                                      power=0.8)
    assert diff.items_needed == math.ceil(solved)


def test_bootstrap_is_seeded_and_agrees_with_scipy_on_a_mean():
    rng = np.random.default_rng(11)
    x = rng.binomial(1, 0.7, size=300).astype(float)

    def mean(ix):
        return float(x[ix].mean())

    first = stats.bootstrap_ci(mean, len(x), seed=5)
    again = stats.bootstrap_ci(mean, len(x), seed=5)
    other = stats.bootstrap_ci(mean, len(x), seed=6)
    assert first == again
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    ref = sps.bootstrap((x,), np.mean, method="percentile", n_resamples=2000,
                        random_state=np.random.default_rng(0)).confidence_interval
    assert first.ci_low == pytest.approx(ref.low, abs=0.015)
    assert first.ci_high == pytest.approx(ref.high, abs=0.015)
    assert first.estimate == pytest.approx(x.mean())
    assert first.se == pytest.approx(sps.sem(x), rel=0.15)


def test_cluster_bootstrap_resamples_whole_clusters():
    clusters = ["a", "a", "a", "b", "c", "c"]
    seen = []

    def stat(ix):
        counts = np.bincount(ix, minlength=6)
        seen.append(counts)
        return float(len(ix))

    stats.bootstrap_ci(stat, 6, clusters=clusters, n_resamples=200, seed=1)
    for counts in seen:
        assert counts[0] == counts[1] == counts[2]  # cluster a comes whole or not at all
        assert counts[4] == counts[5]


# ---- intervals honest at small n (issue 15.4) --------------------------------------------

@pytest.mark.parametrize("k,n", [(0, 5), (5, 5), (3, 7), (1, 40), (380, 392), (0, 1)])
def test_wilson_and_clopper_pearson_match_statsmodels(k, n):
    from statsmodels.stats.proportion import proportion_confint

    from evalkit.analysis.stats import clopper_pearson_ci, wilson_ci
    assert wilson_ci(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"))
    assert clopper_pearson_ci(k, n) == pytest.approx(proportion_confint(k, n, method="beta"))


def test_five_of_five_is_not_certainty():
    from evalkit.analysis.stats import proportion_ci
    ci = proportion_ci([1, 1, 1, 1, 1])
    assert ci.method == "wilson" and ci.low < 0.6 and ci.high == 1.0


def test_clustered_proportion_keeps_the_robust_path_until_it_degenerates():
    from evalkit.analysis.stats import mean_ci, proportion_ci, wilson_ci
    x = [1, 0, 1, 1, 0, 1, 1, 1]
    g = ["a", "a", "b", "b", "c", "c", "d", "d"]
    ci = proportion_ci(x, clusters=g)
    est = mean_ci(x, clusters=g)
    assert ci.method == "t_clustered" and (ci.low, ci.high) == (est.ci_low, est.ci_high)
    alike = proportion_ci([1] * 8, clusters=g)  # clustered se 0: Wilson over 4 clusters
    assert alike.method == "wilson_clusters"
    assert (alike.low, alike.high) == pytest.approx(wilson_ci(4, 4))


def _pairs(both, a_only, b_only, neither):
    a = np.array([1] * both + [1] * a_only + [0] * b_only + [0] * neither, dtype=float)
    b = np.array([1] * both + [0] * a_only + [1] * b_only + [0] * neither, dtype=float)
    return a, b


def test_newcombe_paired_reproduces_the_published_example():
    # Fagerland, Lydersen & Laake (2017) ch. 8, Cavo et al. 2012: table [[59, 6], [16, 80]],
    # first minus second = -0.0621 (95% CI -0.1186 to -0.0046)
    from evalkit.analysis.stats import newcombe_paired_ci
    first, second = _pairs(59, 6, 16, 80)
    low, high = newcombe_paired_ci(second, first)  # first - second
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)


def test_newcombe_paired_without_correlation_is_statsmodels_newcombe():
    # when ad - bc lies in [0, n/2] the correction sets phi to 0, and the paired interval is
    # the square-and-add of the two Wilson intervals: statsmodels' "newcomb" difference
    from statsmodels.stats.proportion import confint_proportions_2indep

    from evalkit.analysis.stats import newcombe_paired_ci
    both, a_only, b_only, neither = 5, 5, 6, 6  # ad - bc = 30 - 30 = 0: phi 0
    a, b = _pairs(both, a_only, b_only, neither)
    n = len(a)
    ref = confint_proportions_2indep(int(b.sum()), n, int(a.sum()), n, method="newcomb",
                                     compare="diff")
    assert newcombe_paired_ci(a, b) == pytest.approx(ref)


def test_paired_interval_does_not_collapse_when_no_item_changed():
    from evalkit.analysis.stats import paired_difference
    d = paired_difference([1] * 5, [1] * 5)
    # exact: 0 changes in 5 items leaves up to 1 - 0.025**(1/5) = 52 % that could change
    assert d.ci_method == "no_change_exact"
    assert d.ci_high == pytest.approx(1 - 0.025 ** (1 / 5)) and d.ci_low == -d.ci_high
    assert d.ci_high == pytest.approx(sps.beta.ppf(0.975, 1, 5))
    graded = paired_difference([0.5, 0.2, 0.9], [0.5, 0.2, 0.9], bounded=True)
    assert graded.ci_method == "no_change_exact" and graded.ci_low < 0 < graded.ci_high
    clustered = paired_difference([1] * 6, [1] * 6, clusters=list("aabbcc"))
    assert clustered.ci_high == pytest.approx(1 - 0.025 ** (1 / 3))  # 3 clusters, not 6 items


def test_settling_items_and_detectable_share_reuse_the_power_calculation():
    from evalkit.analysis.stats import (
        MIN_PAIRED_ITEMS,
        assumed_sd,
        detectable_changed_share,
        items_needed,
        settling_items,
        t_test_power,
    )
    assert settling_items(0.0, 0.0) == items_needed(0.05, assumed_sd())
    assert settling_items(0.5, 0.1) == MIN_PAIRED_ITEMS  # never fewer than a verdict needs
    assert settling_items(0.04, 0.3) == items_needed(0.04, 0.3)
    share = detectable_changed_share(392)
    assert 0.05 < share < 0.2
    sd = (share - 0.05 ** 2) ** 0.5
    assert t_test_power(0.05 / sd, 392) == pytest.approx(0.80, abs=1e-3)
    # statsmodels' power for the same design agrees
    assert TTestPower().power(0.05 / sd, 392, 0.05) == pytest.approx(0.80, abs=1e-3)


def test_every_item_moving_by_the_same_graded_amount_is_not_a_certainty():
    """HotpotQA-shaped, 8 items: few-shot's token F1 is 0.5 on every item where prompt-only's
    is 0, so the differences have sd 0 and the t interval read [+50.0, +50.0] with p 0, a
    certainty 8 items cannot give. As when no item moved, the interval is the exact bound on
    the share of items that could move otherwise (each by at most the metric's width), and
    p is the exact sign test's; with clusters both count clusters."""
    d = stats.paired_difference([0.0] * 8, [0.5] * 8, bounded=True)
    u = stats.no_change_bound(8)
    assert d.ci_method == "same_change_exact" and d.delta == 0.5
    assert (d.ci_low, d.ci_high) == pytest.approx((0.5 - 1.5 * u, 0.5 + 0.5 * u))
    assert d.ci_low < 0.5 < d.ci_high and d.p_value == pytest.approx(2 * 0.5 ** 8)
    assert d.p_method == "sign_exact"
    down = stats.paired_difference([0.75] * 6, [0.25] * 6, clusters=list("aabbcc"),
                                   bounded=True)
    u3 = stats.no_change_bound(3)
    assert (down.ci_low, down.ci_high) == pytest.approx((-0.5 - 0.5 * u3, -0.5 + 1.5 * u3))
    assert down.p_value == pytest.approx(2 * 0.5 ** 3)
    unbounded = stats.paired_difference([0.0] * 8, [0.5] * 8)  # latency, cost: as before
    assert unbounded.ci_method == "t"
