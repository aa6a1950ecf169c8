"""One verdict per step up the ladder, with a sentence that quotes the numbers behind it.

A step's `from` is the incumbent, not the rung below: the first rung, or the latest rung
whose own step earned its cost or was cheaper, no worse (ACCEPTED). A rejected rung never
becomes the `from` of a later step.

The rules, applied in order to the step A -> B (delta = B - A on the primary metric, its 95%
interval [lo, hi], delta TCO = TCO_B - TCO_A, V queries a month over H months):

0. Fewer than MIN_PAIRED_ITEMS (30) paired items: **inconclusive**, with the items that would
   settle it, never "not worth it" or "earns its cost": 5 items cannot tell a rung's worth,
   whatever its interval says. (The intervals themselves are honest at any size: Newcombe's
   paired interval for 0/1 scores, and the exact no-change bound when no item's score moved,
   so 5 unchanged items give [-52, +52] pts, not [0, 0].)
   Then a rung whose outputs equal an earlier rung X's on every item, at no lower TCO than
   X, is **no change** (from X): the same answers can be no gain, whatever the interval
   against the incumbent says, and it costs at least as much (summary.py decides this one,
   from the outputs; `no_change` words it).
1. lo > 0 (a real gain): **earns its cost** when B costs no more, or when the cost per extra
   correct answer is at most `value_per_correct_usd`; otherwise **not worth it** (too dear).
2. delta TCO < 0 and lo > -margin: **cheaper, no worse** (non-inferior within
   `non_inferiority_margin`, and cheaper).
3. hi < 0 (a real loss, beyond what rule 2 accepts): **not worth it**.
4. Otherwise (the interval holds 0, or the test does not confirm it): if B costs more than
   even the interval's high end could be worth (delta TCO > hi * V * H * value, which
   includes hi <= 0), more items cannot change the answer: **not worth it**. Otherwise
   **inconclusive**, with the items that would settle it.

"Real" also needs the step's p-value below 0.05 when there is one. For graded or clustered
metrics the p-value comes from the same t statistic as the interval, so this adds nothing; for
0/1 metrics it is McNemar's exact test, which is the safer judge when few items changed (5
items won and none lost gives a t interval above 0 but an exact p of 0.0625).

Boundaries: "above 0" and "above -margin" are strict; a cost per extra correct answer equal
to the value earns its cost. Undefined inputs (fewer than two paired items) are inconclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evalkit.analysis import stats
from evalkit.analysis.economics import Economics
from evalkit.money import usd  # noqa: F401  the one money format (re-exported for callers)

EARNS = "earns its cost"
CHEAPER_NO_WORSE = "cheaper, no worse"
NOT_WORTH_IT = "not worth it"
INCONCLUSIVE = "inconclusive"
NO_CHANGE = "no change"
VERDICTS = (EARNS, CHEAPER_NO_WORSE, NOT_WORTH_IT, INCONCLUSIVE, NO_CHANGE)
ACCEPTED = (EARNS, CHEAPER_NO_WORSE)  # a step with one of these makes its rung the incumbent

ALPHA = 0.05
MIN_PAIRED_ITEMS = stats.MIN_PAIRED_ITEMS
MINUS = "\u2212"
ARROW = "\u2192"


@dataclass(frozen=True)
class StepEvidence:
    """What a verdict is decided from: the paired quality difference and the step's economics."""

    from_variant: str
    to_variant: str
    metric: str
    delta: float
    ci_low: float
    ci_high: float
    n: int
    items_needed: int | None
    delta_tco_usd: float
    usd_per_extra_correct: float | None
    p_value: float = math.nan  # NaN: no test beyond the interval
    n_failed: int = 0  # items where a call failed, counted as wrong answers


@dataclass(frozen=True)
class Verdict:
    """`reason`: the sentence with the verdict in it, for the console; `sentence`: the same
    without the verdict word, for a page that shows the verdict beside it."""

    verdict: str
    reason: str
    sentence: str = ""


def decide(ev: StepEvidence, econ: Economics) -> Verdict:
    """Apply the rules in the module docstring; the reason is one sentence with the numbers."""
    head = (f"{ev.from_variant} {ARROW} {ev.to_variant}: {pts(ev.delta)} pts {ev.metric} "
            f"[{pts(ev.ci_low)}, {pts(ev.ci_high)}] on {ev.n:,} items"
            + (f" ({ev.n_failed:,} failed calls counted as wrong)" if ev.n_failed else ""))
    horizon = (f"over {econ.horizon_months:g} months at {econ.queries_per_month:,.0f} "
               f"queries/month")
    d_tco, value = ev.delta_tco_usd, econ.value_per_correct_usd
    margin = econ.non_inferiority_margin

    def out(verdict: str, why: str) -> Verdict:
        return Verdict(verdict, f"{head}, {verdict}; {why}", f"{head}; {why}")

    if ev.n < MIN_PAIRED_ITEMS:
        needed = (f"; about {about(ev.items_needed)} items would settle it"
                  if ev.items_needed else "")
        return out(INCONCLUSIVE, f"fewer than the {MIN_PAIRED_ITEMS} paired items a verdict "
                                 f"needs{needed}")
    if any(math.isnan(x) for x in (ev.delta, ev.ci_low, ev.ci_high)):
        return out(INCONCLUSIVE, "too few items scored by both variants for an interval")
    if math.isnan(d_tco):
        return out(INCONCLUSIVE, "the cost of one of the variants is unknown")
    tested = math.isnan(ev.p_value) or ev.p_value < ALPHA
    if ev.ci_low > 0 and tested:
        if d_tco <= 0:
            return out(EARNS, f"better, and {usd(-d_tco)} cheaper {horizon}" if d_tco < 0
                       else "better at no extra cost")
        per = ev.usd_per_extra_correct
        if per is not None and per <= value:
            return out(EARNS, f"{usd(per)} per extra correct answer, within the {usd(value)} "
                              f"one is worth")
        return out(NOT_WORTH_IT, f"{usd(per)} per extra correct answer is more than the "
                                 f"{usd(value)} one is worth")
    if d_tco < 0 and ev.ci_low > -margin:
        return out(CHEAPER_NO_WORSE, f"saves {usd(-d_tco)} {horizon}, and the interval's low "
                                     f"end is above the {pts(-margin)}-pt margin")
    if ev.ci_high < 0 and tested:
        if d_tco > 0:
            return out(NOT_WORTH_IT, f"worse, and costs {usd(d_tco)} more {horizon}")
        if d_tco < 0:
            return out(NOT_WORTH_IT, f"worse, and not shown to stay within the "
                                     f"{pts(-margin)}-pt margin, though it saves {usd(-d_tco)}")
        return out(NOT_WORTH_IT, "worse at the same cost")
    best_case = ev.ci_high * econ.queries_per_month * econ.horizon_months * value
    if d_tco > 0 and d_tco > best_case:
        if ev.delta == 0 and ev.ci_low == 0 and ev.ci_high == 0:
            return out(NOT_WORTH_IT, f"no item's score changed, and it costs {usd(d_tco)} more "
                                     f"{horizon}")
        return out(NOT_WORTH_IT, f"costs {usd(d_tco)} more {horizon}, more than even the "
                                 f"interval's high end would be worth ({usd(best_case)})")
    if ev.items_needed is None:
        why = (f"no difference was observed, so no number of items would show one, though "
               f"the interval leaves {pts(ev.ci_low)} to {pts(ev.ci_high)} pts open")
    else:
        why = f"about {about(ev.items_needed)} items would settle a difference this size"
    if d_tco < 0:
        why = f"it saves {usd(-d_tco)} but may be worse than the {pts(-margin)}-pt margin; " + why
    return out(INCONCLUSIVE, why)


def no_change(from_variant: str, to_variant: str, same_as: str, n: int, extra_tco_usd: float,
              econ: Economics) -> Verdict:
    """The verdict for a rung that gives the same output as `same_as` on every item."""
    horizon = f"over {econ.horizon_months:g} months"
    than = "" if same_as == from_variant else f" than {same_as}"
    cost = (f"at {usd(extra_tco_usd)} more{than} {horizon}" if extra_tco_usd > 0
            else "at the same cost")
    head = f"{from_variant} {ARROW} {to_variant}"
    if same_as == from_variant:
        verdict, why = NO_CHANGE, f"the same output on all {n:,} items, {cost}"
    else:
        verdict, why = f"{NO_CHANGE} from {same_as}", (f"the same output as {same_as} on all "
                                                       f"{n:,} items, {cost}")
    return Verdict(NO_CHANGE, f"{head}: {verdict}; {why}", f"{head}: {why}")


def pts(x: float) -> str:
    """A metric difference in percentage points with its sign: +1.8, \u22120.9."""
    if x is None or math.isnan(x):
        return "n/a"
    return f"{MINUS}{abs(x) * 100:.1f}" if x < 0 else f"+{x * 100:.1f}"


def about(n: int) -> str:
    """n rounded to two significant digits, with thousands separators: 1,378 -> 1,400."""
    if n < 100:
        return str(n)
    digits = len(str(n)) - 2
    return f"{round(n, -digits):,}"

