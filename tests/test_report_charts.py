"""The report's charts read at a glance: dollar axes, break-evens marked and tabled, alt text."""

from __future__ import annotations

import json
import re
from pathlib import Path

from evalkit.pipeline.experiment import RunConfig, run_experiment
from evalkit.report import charts, render_report

FIXTURES = Path(__file__).parent / "fixtures"


def _texts(svg: str) -> list[str]:
    """The text drawn in an SVG (svg.fonttype none keeps it as <text> elements)."""
    return [re.sub(r"<[^>]+>", "", t) for t in re.findall(r"<text[^>]*>(.*?)</text>", svg,
                                                            flags=re.S)]


def test_tick_decimals_print_every_tick_exactly():
    assert charts.tick_decimals([0.015, 0.03, 0.045, 0.06]) == 3
    assert charts.tick_decimals([0.0, 0.008, 0.016]) == 3
    assert charts.tick_decimals([10, 20, 30]) == 0
    f = charts.UsdFormatter()
    assert f.format_ticks([0.015, 0.03, 0.045]) == ["$0.015", "$0.030", "$0.045"]


def test_money_axis_is_dollars_never_scientific():
    """Per-query costs of a few micro-dollars (the local provider's) used to read `1e-5`."""
    chart = charts.quality_vs_cost(["a", "b", "c"], [1.7e-5, 2.8e-5, 6.6e-5],
                                   [0.69, 0.85, 0.93], [0.65, 0.81, 0.90],
                                   [0.74, 0.88, 0.95], metric="accuracy")
    texts = _texts(chart.svg)
    ticks = [t for t in texts if t.startswith("$")]
    assert len(ticks) >= 3, texts
    assert not any(re.search(r"\de[-−+]?\d|×10|10\^", t) for t in texts), texts
    assert "cost per 1,000 queries (USD)" in texts
    assert {"1. a", "2. b", "3. c"} <= set(texts)  # ladder order, numbered
    # the alt text carries the same numbers
    assert "1. a $0.017 per 1,000, accuracy 0.690 [0.650, 0.740]" in chart.alt


def test_tco_marks_a_break_even_and_widens_to_hold_it():
    be = charts.BreakEven("x → y", 3e7, 0)
    chart = charts.tco_vs_volume(["x", "y"], [0.0, 3600.0], [0.0, 0.0], [2e-5, 1e-5],
                                 horizon_months=12, break_evens=[be], volume_now=1e4)
    texts = _texts(chart.svg)
    assert "x → y: 30,000,000/month" in texts  # beyond the default 10M: the range widens
    assert "Break-even volumes: x → y at 30,000,000/month." in chart.alt
    assert {"x", "y"} <= set(texts), "each line named at its end"
    assert not any(re.search(r"\de[-−+]?\d", t) for t in texts)


def test_report_break_even_in_chart_and_table_agree(tmp_path):
    """Prompt-only hosted at $0.50 a month but cheaper per query than few-shot (shorter
    prompts) breaks even with it at some volume: the TCO chart marks it and the steps table
    shows the same number. (People's hours priced at $0, so only these costs count.)"""
    config = tmp_path / "exp.yaml"
    config.write_text("economics:\n  hourly_rate_usd: 0\n"
                      "  variants:\n    prompt-only: {fixed_monthly_usd: 0.5}\n")
    cfg = RunConfig(testset=str(FIXTURES / "tiny-intents"), reports_dir=str(tmp_path / "r"),
                    cache_dir=str(tmp_path / "c"), finetune_dir=str(tmp_path / "ft"),
                    variants=["prompt-only", "few-shot"], config_path=str(config))
    run_dir = run_experiment(cfg, progress=False).run_dir
    summary = json.loads((run_dir / "summary.json").read_text())
    (step,) = summary["steps"]
    v = step["break_even_queries_per_month"]
    assert v is not None and v > 0, step
    html = render_report(run_dir).read_text()
    shown = charts.volume(v)
    assert f'title="few-shot and prompt-only cost the same at this volume">{shown}</td>' in html
    assert f"prompt-only → few-shot: {shown}/month" in html  # the chart's label
    assert f"prompt-only → few-shot at {shown}/month" in html  # and its alt text
    assert 'role="img" aria-label="TCO over' in html


def test_no_break_even_says_why(tmp_path):
    cfg = RunConfig(testset=str(FIXTURES / "tiny-intents"), reports_dir=str(tmp_path / "r"),
                    cache_dir=str(tmp_path / "c"), finetune_dir=str(tmp_path / "ft"),
                    variants=["prompt-only", "few-shot"])
    run_dir = run_experiment(cfg, progress=False).run_dir
    html = render_report(run_dir).read_text()
    # few-shot sends longer prompts at the same (zero) setup: dearer at every volume
    assert 'title="few-shot costs more than prompt-only at every volume">none</td>' in html
    assert "No step&#39;s TCO lines cross in this range." in html


def test_a_bound_a_rounding_hair_inside_its_mean_still_draws_the_chart():
    """60 of 60 right: the Wilson upper bound is 0.9999999999999998, under the mean 1.0, and
    matplotlib's 'yerr must not contain negative values' used to stop the whole report."""
    chart = charts.quality_vs_cost(["prompt-only", "few-shot"], [1e-5, 2e-5], [1.0, 0.3],
                                   [0.9398, 0.199], [0.9999999999999998, 0.425],
                                   metric="accuracy")
    assert "<svg" in chart.svg
    deltas = charts.step_deltas(["a → b"], [-0.7], [-0.8], [-0.7000000000000001],
                                metric="accuracy")
    assert "<svg" in deltas.svg
