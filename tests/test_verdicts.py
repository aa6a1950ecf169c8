"""Each of the four verdicts from constructed inputs, the boundaries between them, the sentences."""

from __future__ import annotations

import math

import pytest

from evalkit.analysis.economics import Economics
from evalkit.analysis.verdicts import (
    CHEAPER_NO_WORSE,
    EARNS,
    INCONCLUSIVE,
    NO_CHANGE,
    NOT_WORTH_IT,
    VERDICTS,
    StepEvidence,
    about,
    decide,
    no_change,
    pts,
    usd,
)

# V = 10,000 queries/month, H = 12 months: a +1 pt gain is 1,200 extra correct answers;
# at $0.05 each that is worth $60.
ECON = Economics(queries_per_month=10_000, horizon_months=12, value_per_correct_usd=0.05,
                 non_inferiority_margin=0.02)
EXTRA_PER_UNIT = 10_000 * 12


def ev(delta, low, high, d_tco, *, n=400, needed=None):
    per = d_tco / (delta * EXTRA_PER_UNIT) if delta > 0 else None
    return StepEvidence("rag", "fine-tuned", "accuracy", delta, low, high, n, needed, d_tco, per)


def verdict(*args, **kw):
    return decide(ev(*args, **kw), ECON).verdict


# ---- earns its cost -----------------------------------------------------------------------

def test_a_real_gain_worth_its_price_earns_its_cost():
    # +4 pts = 4,800 extra correct; $120 more -> $0.025 each, under $0.05
    v = decide(ev(0.04, 0.01, 0.07, 120.0), ECON)
    assert v.verdict == EARNS
    assert v.reason == ("rag \u2192 fine-tuned: +4.0 pts accuracy [+1.0, +7.0] on 400 items, "
                        "earns its cost; $0.025 per extra correct answer, within the $0.05 "
                        "one is worth")


def test_better_and_cheaper_earns_its_cost():
    v = decide(ev(0.03, 0.005, 0.055, -80.0), ECON)
    assert v.verdict == EARNS and "better, and $80.00 cheaper over 12 months" in v.reason
    assert verdict(0.03, 0.005, 0.055, 0.0) == EARNS


def test_cost_per_extra_correct_equal_to_value_still_earns():
    # +2 pts = 2,400 extra correct; exactly 2,400 * $0.05 = $120 -> $0.05 each
    assert verdict(0.02, 0.001, 0.04, 120.0) == EARNS
    assert verdict(0.02, 0.001, 0.04, 120.01) == NOT_WORTH_IT


def test_a_real_gain_too_dear_is_not_worth_it():
    v = decide(ev(0.02, 0.001, 0.04, 1200.0), ECON)
    assert v.verdict == NOT_WORTH_IT
    assert "$0.50 per extra correct answer is more than the $0.05" in v.reason


def test_ci_low_exactly_zero_is_not_a_real_gain():
    # would earn its cost if the interval cleared 0, but it only touches it
    assert verdict(0.04, 0.0, 0.08, 120.0, needed=300) == INCONCLUSIVE


# ---- cheaper, no worse ---------------------------------------------------------------------

def test_cheaper_and_within_the_margin():
    v = decide(ev(-0.005, -0.019, 0.009, -500.0), ECON)
    assert v.verdict == CHEAPER_NO_WORSE
    assert v.reason.startswith("rag \u2192 fine-tuned: \u22120.5 pts accuracy [\u22121.9, +0.9]")
    assert "saves $500 over 12 months at 10,000 queries/month" in v.reason
    assert "\u22122.0-pt margin" in v.reason


def test_significantly_worse_but_within_the_margin_and_cheaper_is_still_no_worse():
    assert verdict(-0.01, -0.015, -0.005, -500.0) == CHEAPER_NO_WORSE


def test_margin_boundary_is_strict():
    assert verdict(-0.005, -0.02, 0.01, -500.0, needed=9000) == INCONCLUSIVE
    assert verdict(-0.005, -0.0199, 0.01, -500.0) == CHEAPER_NO_WORSE


def test_same_cost_is_not_cheaper():
    assert verdict(-0.005, -0.01, 0.01, 0.0, needed=9000) == INCONCLUSIVE


# ---- not worth it --------------------------------------------------------------------------

def test_worse_and_dearer_is_not_worth_it():
    v = decide(ev(-0.05, -0.08, -0.02, 40.0), ECON)
    assert v.verdict == NOT_WORTH_IT and "worse, and costs $40.00 more" in v.reason


def test_worse_beyond_the_margin_even_if_cheaper_is_not_worth_it():
    v = decide(ev(-0.05, -0.08, -0.02, -40.0), ECON)
    assert v.verdict == NOT_WORTH_IT and "though it saves $40.00" in v.reason
    assert verdict(-0.05, -0.08, -0.02, 0.0) == NOT_WORTH_IT


def test_dearer_than_even_the_best_case_gain_is_not_worth_it():
    # interval high end +0.1 pt = 120 extra correct answers = $6 of value at most
    assert verdict(-0.001, -0.012, 0.001, 6.01, needed=50_000) == NOT_WORTH_IT
    assert verdict(-0.001, -0.012, 0.001, 6.0, needed=50_000) == INCONCLUSIVE  # boundary


def test_no_item_changed_and_dearer_is_not_worth_it():
    # only an unbounded graded metric can still give [0, 0] (stats.no_change_bound otherwise)
    v = decide(ev(0.0, 0.0, 0.0, 0.27, n=400), ECON)
    assert v.verdict == NOT_WORTH_IT
    assert "no item's score changed, and it costs $0.27 more" in v.reason


def test_fewer_than_the_minimum_items_is_inconclusive_with_items_needed():
    # 8 unchanged items used to be a firm "not worth it"; now no verdict below 30 items
    v = decide(ev(0.0, -0.37, 0.37, 0.27, n=8, needed=622), ECON)
    assert v.verdict == INCONCLUSIVE
    assert "fewer than the 30 paired items a verdict needs; about 620 items would settle" \
        in v.reason
    # even a large, "significant" gain on 29 items is not judged
    assert verdict(0.5, 0.2, 0.8, -10.0, n=29, needed=40) == INCONCLUSIVE
    assert verdict(0.5, 0.2, 0.8, -10.0, n=30, needed=40) == EARNS


# ---- inconclusive --------------------------------------------------------------------------

def test_inconclusive_says_how_many_items_would_settle_it():
    v = decide(ev(0.018, -0.009, 0.045, 50.0, n=600, needed=1378), ECON)
    assert v.verdict == INCONCLUSIVE
    assert v.reason == ("rag \u2192 fine-tuned: +1.8 pts accuracy [\u22120.9, +4.5] on 600 "
                        "items, inconclusive; about 1,400 items would settle a difference "
                        "this size")


def test_inconclusive_cheaper_step_says_it_may_be_worse_than_the_margin():
    v = decide(ev(-0.01, -0.05, 0.03, -100.0, needed=2500), ECON)
    assert v.verdict == INCONCLUSIVE
    assert "it saves $100 but may be worse than the \u22122.0-pt margin" in v.reason
    assert "about 2,500 items" in v.reason


def test_zero_difference_with_spread_cannot_be_settled_by_more_items():
    v = decide(ev(0.0, -0.03, 0.03, -1.0, needed=None), ECON)
    assert v.verdict == INCONCLUSIVE and "no number of items would show one" in v.reason


def test_undefined_interval_is_inconclusive():
    v = decide(ev(1.0, math.nan, math.nan, 5.0, n=1), ECON)
    assert v.verdict == INCONCLUSIVE and "fewer than the 30 paired items" in v.reason
    v = decide(ev(1.0, math.nan, math.nan, 5.0, n=40), ECON)
    assert v.verdict == INCONCLUSIVE and "too few items" in v.reason
    assert verdict(0.02, 0.01, 0.03, math.nan) == INCONCLUSIVE


def test_every_verdict_is_reachable_and_only_those():
    cases = [(0.04, 0.01, 0.07, 120.0), (-0.005, -0.019, 0.009, -500.0),
             (-0.05, -0.08, -0.02, 40.0), (0.018, -0.009, 0.045, 50.0)]
    reached = [verdict(*c, needed=1000) for c in cases]
    # the fifth, "no change", is decided from the outputs, not the numbers (no_change below)
    assert reached + [no_change("a", "b", "a", 10, 1.0, ECON).verdict] == list(VERDICTS)


def test_no_change_names_the_rung_it_repeats_and_what_it_costs_more():
    same = no_change("prompt-only", "few-shot", "prompt-only", 320, 800.0, ECON)
    assert same.verdict == NO_CHANGE
    assert same.reason == ("prompt-only → few-shot: no change; the same output on all 320 "
                           "items, at $800 more over 12 months")
    other = no_change("prompt-only", "rag+fine-tuned", "rag", 320, 3202.0, ECON)
    assert other.reason.startswith("prompt-only → rag+fine-tuned: no change from rag; "
                                   "the same output as rag on all 320 items, at $3,202 more "
                                   "than rag")
    assert "no change" not in other.sentence  # the page shows the verdict as a badge


def test_sentence_is_the_reason_without_its_verdict_word():
    v = decide(ev(-0.05, -0.08, -0.02, 40.0), ECON)
    assert v.reason.count(NOT_WORTH_IT) == 1 and NOT_WORTH_IT not in v.sentence
    assert v.sentence == v.reason.replace(f", {NOT_WORTH_IT}", "")


# ---- formatting ----------------------------------------------------------------------------

@pytest.mark.parametrize("x,text", [(0.018, "+1.8"), (-0.009, "\u22120.9"), (0.0, "+0.0"),
                                    (-0.0001, "\u22120.0"), (1.0, "+100.0")])
def test_points(x, text):
    assert pts(x) == text


@pytest.mark.parametrize("x,text", [(1234.4, "$1,234"), (12.3, "$12.30"), (0.0123, "$0.012"),
                                    (0.00000123, "$0.0000012"), (0, "$0"), (-5, "-$5.00"),
                                    (0.05, "$0.05"), (0.6, "$0.60"), (0.1, "$0.10"),
                                    (0.0999, "$0.10"), (3.8484375e-06, "$0.0000038"),
                                    (3.85e-06, "$0.0000039"), (4e-10, "<$0.000001"),
                                    (-2e-9, "-<$0.000001"), (99.999, "$100")])
def test_dollars(x, text):
    assert usd(x) == text


@pytest.mark.parametrize("n,text", [(7, "7"), (65, "65"), (1378, "1,400"), (123456, "120,000")])
def test_about(n, text):
    assert about(n) == text


# ---- the interval and the exact test must agree before a gain or loss is real --------------

def _with_p(delta, low, high, d_tco, p, needed=500):
    e = ev(delta, low, high, d_tco, needed=needed)
    return decide(StepEvidence(**{**e.__dict__, "p_value": p}), ECON).verdict


def test_a_gain_the_exact_test_does_not_confirm_is_not_real():
    assert _with_p(0.04, 0.01, 0.07, 120.0, p=0.049) == EARNS
    assert _with_p(0.04, 0.01, 0.07, 120.0, p=0.05) == INCONCLUSIVE
    # a cheaper step whose loss is not confirmed stays open ...
    assert _with_p(-0.05, -0.08, -0.02, -40.0, p=0.2) == INCONCLUSIVE
    assert _with_p(-0.05, -0.08, -0.02, -40.0, p=0.01) == NOT_WORTH_IT
    # ... while a dearer one is not worth it either way: no gain in the interval pays for it
    assert _with_p(-0.05, -0.08, -0.02, 40.0, p=0.2) == NOT_WORTH_IT


def test_five_wins_and_no_losses_is_not_yet_a_gain():
    """392 items, 5 won by B and none lost: the t interval clears 0, but neither Newcombe's
    paired interval (the one a step uses) nor McNemar's exact p (0.0625) does."""
    import numpy as np

    from evalkit.analysis.stats import mean_ci, paired_difference

    a = [0] * 5 + [1] * 300 + [0] * 87
    b = [1] * 5 + [1] * 300 + [0] * 87
    assert mean_ci(np.array(b) - np.array(a)).ci_low > 0
    diff = paired_difference(a, b)
    assert diff.ci_method == "newcombe_paired" and diff.ci_low < 0
    assert diff.p_value == pytest.approx(0.0625)
    evidence = StepEvidence("rag", "fine-tuned", "accuracy", diff.delta, diff.ci_low,
                            diff.ci_high, diff.n, diff.items_needed, 10.0,
                            10.0 / (diff.delta * EXTRA_PER_UNIT), diff.p_value)
    assert decide(evidence, ECON).verdict == INCONCLUSIVE
