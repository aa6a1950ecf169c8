"""`evalkit run` and `evalkit summarize`: run a ladder, or re-judge a finished run."""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from evalkit.cli.app import fail, main
from evalkit.cli.options import provider_option, provider_options, server_options
from evalkit.data.testset import TestsetError
from evalkit.paths import SAFE_NAME_RULE, is_safe_name
from evalkit.strategies.ladder import LADDER

if TYPE_CHECKING:
    import pandas as pd


@main.command()
@click.argument("testsets", nargs=-1, type=click.Path(file_okay=False))
@click.option("--variants", default=",".join(LADDER),
              help="Comma-separated ladder, cheapest first: preset names and names declared "
                   "under variants: in --config [default: the config's variants, else "
                   f"{','.join(LADDER)}].")
@provider_option
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 1024))
@click.option("--max-cost-usd", type=click.FloatRange(min=0), default=None,
              help="Cap on the run's spend, over all its --resume sessions: a call is made "
              "only if its worst case still fits. A budget stop exits 3. On --resume the "
              "run's cap holds unless a new one is given.")
@click.option("--resume", "resume", default=None, metavar="RUN_ID",
              help="Finish the run in reports/RUN_ID, skipping journaled items.")
@click.option("--allow-leakage", is_flag=True, help="Run even if test items leak into train.")
@click.option("--reports-dir", default="reports", show_default=True)
@click.option("--cache-dir", default=".evalkit-cache", show_default=True)
@click.option("--finetune-dir", default="finetunes", show_default=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Experiment config YAML (economics, gate, pricing, provider sections).")
@server_options
@click.option("--batch", is_flag=True,
              help="Send uncached requests through the provider's Batch API (OpenAI: half "
                   "price, answers within 24 h); the run polls, and a killed run resumes by "
                   "polling (--resume), never by resubmitting.")
@click.option("--batch-poll-interval", "batch_poll_interval_s", type=click.FloatRange(0.01),
              default=30.0, show_default=True, help="Seconds between batch status polls.")
@click.option("--limit", type=click.IntRange(1), default=None, metavar="N",
              help="Run only the first N test items (recorded in run.json; the gate refuses "
                   "to compare such a run with a full baseline unless told to).")
@click.option("--sample", type=click.IntRange(1), default=None, metavar="N",
              help="Run N test items drawn with --seed, stratified by cluster, else label.")
@click.option("--seed", "sample_seed", type=int, default=0, show_default=True,
              help="Seed of --sample.")
@click.option("--epochs", type=click.IntRange(1), default=None, metavar="K",
              help="Run every item K times (else the config's epochs:, else 1): means "
                   "average the epochs; the spread across them and the items whose outcome "
                   "flips are reported.")
@click.option("--progress/--no-progress", default=True)
@click.option("--report/--no-report", default=True, show_default=True,
              help="Write the HTML report (index.html in the run folder) when the run ends.")
def run(testsets, variants, provider, concurrency, max_cost_usd, resume, allow_leakage,
        reports_dir, cache_dir, finetune_dir, config_path, base_url, model, batch,
        batch_poll_interval_s, limit, sample, sample_seed, epochs, progress, report):
    """Run TESTSETS through each variant of the ladder and score them.

    \b
    Exit codes:
      0    every job ran (some items may have failed: see errors)
      1    every call failed, or the server could not be reached
      2    usage, config or test-set error; nothing was run
      3    budget stop: --max-cost-usd reached; verdicts are on a partial run;
           the message prints the --resume command with the cap it needs
      130  interrupted (Ctrl-C): calls in flight were journaled; resume to finish
    """
    # Deferred so `evalkit --help` loads no scikit-learn, scipy or pandas.
    from evalkit.config import load_config
    from evalkit.pipeline.experiment import LeakageRefused, RunConfig, run_experiment
    from evalkit.strategies import finetune as ft
    if not testsets and not resume:
        fail("give at least one test set folder, or --resume RUN_ID")
    if resume:
        if not is_safe_name(resume):
            fail(f"--resume {resume!r}: a run id is one folder name under --reports-dir "
                 f"({SAFE_NAME_RULE})")
        _check_resume_flags(testsets, Path(reports_dir) / resume)
    options = provider_options(provider, base_url, model)
    given = click.get_current_context().get_parameter_source("variants")
    ladder = [] if given is click.core.ParameterSource.DEFAULT else _parse_variants(variants)
    try:
        experiment = None if resume else load_config(config_path)  # read once, handed down
    except ValueError as exc:
        fail(str(exc))
    if limit is not None and sample is not None:
        fail("--limit and --sample are two ways to choose items; give one")
    all_failed, budget_stops = [], []
    for target in testsets or [None]:
        config = RunConfig(testset=str(target), variants=ladder, provider=provider,
                           concurrency=concurrency, max_cost_usd=max_cost_usd,
                           allow_leakage=allow_leakage, reports_dir=reports_dir,
                           cache_dir=cache_dir, finetune_dir=finetune_dir,
                           config_path=config_path, batch=batch,
                           batch_poll_interval_s=batch_poll_interval_s,
                           limit=limit, sample=sample, sample_seed=sample_seed,
                           epochs=epochs, provider_options=options)
        try:
            result = run_experiment(config, resume=resume, progress=progress,
                                    experiment=experiment, echo=click.echo)
        except (TestsetError, LeakageRefused, ft.LeakageError, FileNotFoundError,
                ValueError, RuntimeError) as exc:
            fail(str(exc))
        _after_run(result, reports_dir, all_failed, budget_stops, report=report)
    if all_failed:
        fail(f"every call failed in {', '.join(all_failed)}: see the errors in "
              f"predictions.jsonl (error_class, error)", code=1)
    if budget_stops:
        fail("\n".join(budget_stops), code=EXIT_BUDGET)


EXIT_BUDGET, EXIT_INTERRUPTED = 3, 130


def _after_run(result, reports_dir: str, all_failed: list, budget_stops: list, *,
               report: bool) -> None:
    """Print one run (and write its report); an interrupt or an unreachable server ends
    the command at once."""
    from evalkit.run.runner import STOP_BUDGET, STOP_INTERRUPTED, STOP_UNREACHABLE
    stop = result.stats.stop
    if stop == STOP_INTERRUPTED:
        click.echo(f"interrupted: run {result.run_dir.name} (calls in flight were "
                   f"journaled); finish it with:\n  {_resume_command(result, reports_dir)}",
                   err=True)
        sys.exit(EXIT_INTERRUPTED)
    if stop == STOP_UNREACHABLE:
        fail(f"{result.stats.stop_message}\nnothing more was sent; when the server is up, "
             f"finish with: {_resume_command(result, reports_dir)}", code=1)
    _print_run(result)
    _report(result.run_dir, write=report)
    if stop == STOP_BUDGET:
        budget_stops.append(_budget_message(result, reports_dir))
    elif result.stats.jobs and result.stats.errors == result.stats.jobs:
        all_failed.append(str(result.run_dir))


def _resume_command(result, reports_dir: str, cap_usd: float | None = None) -> str:
    """The exact command that finishes this run."""
    parts = ["evalkit run --resume", result.run_dir.name]
    if Path(reports_dir) != Path("reports"):
        parts.append(f"--reports-dir {shlex.quote(str(reports_dir))}")
    if cap_usd is not None:
        parts.append(f"--max-cost-usd {cap_usd:.10g}")
    return " ".join(parts)


def _budget_message(result, reports_dir: str) -> str:
    """Spent of cap, what is left undone, and the resume command with a cap that fits it."""
    from evalkit.run.budget import usd4
    s = result.stats
    needed = _round_up_usd(s.run_spent_usd + s.skipped_worst_usd)
    return (f"budget stop: spent {usd4(s.run_spent_usd)} of the {usd4(s.cap_usd)} cap over the "
            f"whole run ({usd4(s.spent_usd)} this session); {s.skipped_budget} job(s) not run, "
            f"worst case {usd4(s.skipped_worst_usd)}. The verdicts above are on a partial run. "
            f"The cap covers every session of the run, so finish with a higher one:\n  "
            f"{_resume_command(result, reports_dir, needed)}")


def _round_up_usd(usd: float) -> float:
    """Up to the next cent (tenth of a cent below a dollar), so the suggested cap suffices."""
    step = 0.01 if usd >= 1 else 0.001
    return math.ceil(usd / step - 1e-9) * step


def _report(run_dir: Path, *, write: bool) -> None:
    """The run's last line: where its report is, or how to write it."""
    if not write:
        click.echo(f"report: not written (--no-report); `evalkit report {run_dir}` writes it")
        return
    from evalkit.report import render_report
    try:
        click.echo(f"report: {render_report(run_dir)}")
    except ValueError as exc:  # the run folder is complete; only the page failed
        click.echo(f"warning: report not written ({exc}); the run folder is complete")


def _parse_variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        fail("--variants names no variant")
    repeated = sorted({v for v in names if names.count(v) > 1})
    if repeated:
        fail(f"--variants names {', '.join(repeated)} more than once")
    return names


def _check_resume_flags(testsets, run_dir: Path) -> None:
    """--resume takes its settings from the run's run.json; a flag that asks for something
    else is an error rather than silently ignored (concurrency and budget may change)."""
    if testsets:
        fail("--resume finishes one run with the test set it began with; give no test sets")
    try:
        recorded = json.loads((run_dir / "run.json").read_text())["config"]
    except (OSError, ValueError, KeyError) as exc:
        fail(f"{run_dir / 'run.json'}: cannot resume this run ({exc})")
    ctx = click.get_current_context()
    wanted = {"variants": _parse_variants(ctx.params["variants"]),
              "provider": ctx.params["provider"], "allow_leakage": ctx.params["allow_leakage"],
              "config_path": ctx.params["config_path"], "cache_dir": ctx.params["cache_dir"],
              "finetune_dir": ctx.params["finetune_dir"],
              "base_url": ctx.params["base_url"], "model": ctx.params["model"],
              "limit": ctx.params["limit"], "sample": ctx.params["sample"],
              "sample_seed": ctx.params["sample_seed"], "epochs": ctx.params["epochs"]}
    options = recorded.get("provider_options") or {}
    have = {**recorded, "base_url": options.get("base_url"), "model": options.get("model")}
    differ = [name for name, value in wanted.items()
              if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
              and value != have.get(name)]
    if differ:
        flags = ", ".join("--" + n.removesuffix("_path").removeprefix("sample_")
                          .replace("_", "-") for n in differ)
        fail(f"{run_dir / 'run.json'} records other values for {flags}; --resume keeps the "
              f"run's own settings (drop the flags, or start a new run)")


def _print_run(result) -> None:
    s, stats = result.summary, result.stats
    click.echo(f"\n{s['testset']} ({s['task_type']}), run {s['run_id']}")
    click.echo(variant_table(s).to_string())
    _print_decision(s)
    click.echo(f"calls made: {stats.calls}, served from cache: {stats.cache_hits}, "
               f"errors: {stats.errors}"
               + (f", skipped for budget: {stats.skipped_budget}" if stats.skipped_budget else "")
               + (f", HTTP attempts: {stats.http_attempts}" if stats.http_attempts else ""))
    if stats.cap_usd is not None:
        from evalkit.run.budget import usd4
        click.echo(f"spent {usd4(stats.spent_usd)} this session; {usd4(stats.run_spent_usd)} "
                   f"of the {usd4(stats.cap_usd)} cap over the whole run")
        if stats.run_spent_usd > stats.cap_usd:  # only a call whose worst case was no bound
            why = ("the server ignores output limits, so the answer that showed it had no bound "
                   "on its cost; no cap holds against a server that honours neither max_tokens "
                   "nor max_completion_tokens" if stats.output_limit_ignored else
                   "a call cost more than the worst case reserved for it (its provider gives "
                   "no true bound)")
            click.echo(f"warning: the run spent {usd4(stats.run_spent_usd)}, over its "
                       f"{usd4(stats.cap_usd)} cap: {why}")
    if stats.output_limit_ignored:
        click.echo(f"warning: the server ignores output limits ({stats.output_limit_ignored}); "
                   f"the budget then bounds each answer by the longest seen, not the limit")
    if stats.usage_estimated:
        n = stats.usage_estimated
        click.echo(f"warning: the server counted no tokens for {n} answer{'s' if n > 1 else ''}"
                   f" (no usage, or no completion_tokens): {'they were' if n > 1 else 'it was'}"
                   f" billed at upper bounds (UTF-8 bytes: several times the tokens of most "
                   f"text), so tokens, cost per query and TCO read high, and a gate against a "
                   f"baseline whose server counted them sees a cost rise that is not one")
    if stats.cut_at_limit:
        n = stats.cut_at_limit
        click.echo(f"warning: {n} answer{'s were' if n > 1 else ' was'} cut at the output "
                   f"limit (finish_reason \"length\") and scored as cut (a JSON record cut "
                   f"short is invalid); if the answers need more room, raise the config's "
                   f"provider.output_limits (per task type) or a variant's max_tokens")
    click.echo(f"run folder: {result.run_dir}")
    if result.subset:
        click.echo(f"subset: {result.subset['n']} of {result.subset['of']} test items "
                   f"({result.subset['flag']}); not comparable with a full run")
    for line in result.warnings:
        click.echo(f"warning: {line}")
    from evalkit.analysis.epochs import epoch_lines
    from evalkit.analysis.summary import verdict_lines
    for line in [*epoch_lines(s), *verdict_lines(s)]:
        click.echo(line)


def _print_decision(summary: dict) -> None:
    """The recommendation and the assumptions it rests on: the first lines after the table."""
    rec = summary.get("recommendation") or {}
    if rec.get("sentence"):
        click.echo(("[partial] " if summary.get("partial") else "") + rec["sentence"])
    line = (summary.get("economics") or {}).get("assumptions_line")
    if line:
        click.echo(line)


def variant_table(summary: dict) -> pd.DataFrame:
    import pandas as pd

    from evalkit.analysis.verdicts import usd
    rows = {}
    num = lambda x: math.nan if x is None else x  # noqa: E731  summary.json writes NaN as null
    for name, v in summary["variants"].items():
        row = {m: round(num(st["mean"]), 4) for m, st in v["metrics"].items()}
        row.update(dict.fromkeys(v.get("not_applicable", {}), "n/a"))  # said, not a 0 or NaN
        row["n"] = next(iter(v["metrics"].values()))["n"] if v["metrics"] else 0
        row["errors"] = v["calls"]["errors"]
        row["p50_ms"] = round(num(v["latency"]["p50_s"]) * 1000, 2)
        row["$/query"] = usd(num(v["cost"]["per_query_usd"]))  # the report's format
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Judge with this config's economics instead of the one the run recorded.")
@click.option("--compare", "comparisons", multiple=True, metavar="A,B",
              help="Also compare variant B against A (repeatable), e.g. --compare rag,fine-tuned.")
def summarize(run_dir, config_path, comparisons):
    """Recompute summary.json for RUN_DIR from scores.csv and run.json (no model call)."""
    from evalkit.analysis.summary import summarize_run, verdict_lines
    from evalkit.config import load_config
    pairs = [tuple(c.split(",", 1)) for c in comparisons]
    if any(len(p) != 2 for p in pairs):
        fail("--compare takes two variant names separated by a comma, e.g. rag,fine-tuned")
    try:
        summary = summarize_run(run_dir, config=load_config(config_path) if config_path
                                else None, comparisons=pairs)
    except (OSError, ValueError, KeyError) as exc:
        fail(str(exc))
    click.echo(variant_table(summary).to_string())
    _print_decision(summary)
    for note in summary.get("notes", []):
        click.echo(f"note: {note}")
    for line in verdict_lines(summary):
        click.echo(line)
