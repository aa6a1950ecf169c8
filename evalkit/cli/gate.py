"""`evalkit gate` and `evalkit baseline update`: options in, one module call, exit code out.

Exit codes: 0 every check passed, 1 a regression, 2 a usage or configuration error (missing run
folder or baseline, malformed baseline, schema mismatch, bad `gate:` section).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

EXIT_PASS, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2


def _usage_error(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_USAGE)


def _metric_drop(ctx, param, values: tuple[str, ...]) -> dict[str, float] | None:
    out = {}
    for v in values:
        name, sep, num = v.partition("=")
        try:
            x = float(num)
        except ValueError:
            x = -1.0
        if not (sep and name and 0 <= x < float("inf")):
            raise click.BadParameter(f"{v!r}: expected METRIC=MAX_DROP, e.g. accuracy=0.01")
        out[name] = x
    return out or None


NONNEG = click.FloatRange(min=0)


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--baseline", "baseline_paths", required=True, multiple=True,
              type=click.Path(dir_okay=False),
              help="Baseline JSON from `evalkit baseline update` (one entry per test set); "
                   "repeat to use several files.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Experiment config whose `gate:` section sets the tolerances "
                   "[default: the config each run recorded in run.json, else built-ins].")
@click.option("--max-drop", type=NONNEG, default=None,
              help="Absolute drop of any metric mean that fails [0.02].")
@click.option("--metric-max-drop", multiple=True, callback=_metric_drop, metavar="METRIC=X",
              help="Per-metric max drop, e.g. accuracy=0.01 (repeatable).")
@click.option("--require-significance/--no-require-significance", default=None,
              help="A drop beyond tolerance must also be significant in the paired test.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=None, help="Level of the paired test [0.05].")
@click.option("--max-cost-increase", type=NONNEG, default=None,
              help="Relative rise of per-query cost that fails [0.10].")
@click.option("--max-latency-increase", type=NONNEG, default=None,
              help="Relative rise of p95 latency that fails [0.25].")
@click.option("--cost-slack-usd", type=NONNEG, default=None,
              help="A cost rise fails only if also more than this, USD per query [0].")
@click.option("--latency-slack-s", type=NONNEG, default=None,
              help="A p95 rise fails only if also more than this, in seconds [0.05].")
@click.option("--max-error-rate-increase", type=NONNEG, default=None,
              help="Absolute rise of the error rate that fails [0.0].")
@click.option("--subset", is_flag=True,
              help="Gate only the given runs; test sets in the baseline without a run warn "
                   "instead of failing.")
@click.option("--allow-testset-change", is_flag=True,
              help="Gate a run whose test set differs from the baseline's (a warning instead "
                   "of a failure; paired tests use the unchanged items both hold).")
@click.option("--allow-item-subset", is_flag=True,
              help="Gate a --limit/--sample run against a full baseline (or the reverse): a "
                   "warning instead of a failure; paired tests use the items both hold.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), default=None,
              help="Also write JUnit XML here (one testcase per check).")
def gate(runs, baseline_paths, config_path, max_drop, metric_max_drop, require_significance,
         alpha, max_cost_increase, max_latency_increase, cost_slack_usd, latency_slack_s,
         max_error_rate_increase, subset, allow_testset_change, allow_item_subset, junit_path):
    """Compare RUNS (run folders, one per test set) with the baseline; exit 1 on a regression."""
    # Deferred: evalkit.gate.check needs scipy; `evalkit gate --help` should not load it.
    from evalkit.config import ConfigError, load_config
    from evalkit.gate import render as gate_report
    from evalkit.gate.baseline import GateError, run_gate_section
    from evalkit.gate.check import Tolerances, gate_runs

    flags = dict(max_drop=max_drop, metrics=metric_max_drop,
                 require_significance=require_significance, alpha=alpha,
                 max_cost_increase=max_cost_increase, max_latency_increase=max_latency_increase,
                 cost_slack_usd=cost_slack_usd, latency_slack_s=latency_slack_s,
                 max_error_rate_increase=max_error_rate_increase)
    try:
        fixed = (Tolerances.from_section(load_config(config_path).section("gate"), config_path)
                 if config_path else None)

        def tolerances_for(run_dir: Path) -> Tolerances:
            if fixed is not None:
                return fixed.override(**flags)
            recorded = run_gate_section(run_dir)
            base = Tolerances.from_section(recorded[1], recorded[0]) if recorded else Tolerances()
            return base.override(**flags)

        report = gate_runs(list(runs), list(baseline_paths), tolerances_for=tolerances_for,
                           allow_subset=subset, allow_testset_change=allow_testset_change,
                           allow_item_subset=allow_item_subset)
    except (GateError, ConfigError) as exc:
        _usage_error(exc)
    click.echo(gate_report.console(report))
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    written = gate_report.write_markdown(report, step_summary=Path(step) if step else None)
    if junit_path:
        Path(junit_path).write_text(gate_report.junit(report), encoding="utf-8")
        written.append(Path(junit_path))
    click.echo("wrote " + ", ".join(str(p) for p in written))
    sys.exit(EXIT_PASS if report.passed else EXIT_REGRESSION)


@click.group()
def baseline() -> None:
    """Write the baselines `evalkit gate` compares with (only ever on purpose)."""


@baseline.command("update")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--to", "to", required=True, type=click.Path(dir_okay=False),
              help="Baseline JSON to create, or whose entries for these test sets to replace.")
def baseline_update(runs, to):
    """Record RUNS (run folders, one per test set) as the baseline in --to FILE."""
    from evalkit.gate.baseline import GateError, update_baseline  # deferred: scipy

    try:
        snaps = update_baseline(list(runs), to)
    except GateError as exc:
        _usage_error(exc)
    for s in snaps:
        scored = "with" if s.has_item_scores else "WITHOUT"
        click.echo(f"{s.testset}: run {s.run_id}, {len(s.variants)} variants, {scored} "
                   f"per-item scores -> {to}")
