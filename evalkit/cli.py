"""The `evalkit` command line. Each command parses options and calls one module; no logic here."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click
import pandas as pd

from evalkit import finetune as ft
from evalkit.analysis import summarize_run, verdict_lines
from evalkit.experiment import LeakageRefused, RunConfig, run_experiment
from evalkit.importers import from_csv, write_jsonl
from evalkit.leakage import find_leaks
from evalkit.testset import TestsetError, load_testset
from evalkit.variants import LADDER


@click.group()
@click.version_option(package_name="evalkit")
def main() -> None:
    """Measure each step up the ladder: prompt -> few-shot -> RAG -> fine-tuned."""


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@main.command()
@click.argument("testsets", nargs=-1, type=click.Path(file_okay=False))
@click.option("--variants", default=",".join(LADDER), show_default=True,
              help="Comma-separated ladder, cheapest first.")
@click.option("--provider", default="local", show_default=True)
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 1024))
@click.option("--max-cost-usd", type=float, default=None, help="Stop issuing calls before this.")
@click.option("--resume", "resume", default=None, metavar="RUN_ID",
              help="Finish the run in reports/RUN_ID, skipping journaled items.")
@click.option("--allow-leakage", is_flag=True, help="Run even if test items leak into train.")
@click.option("--reports-dir", default="reports", show_default=True)
@click.option("--cache-dir", default=".evalkit-cache", show_default=True)
@click.option("--finetune-dir", default="finetunes", show_default=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Experiment config YAML (economics, gate, pricing, provider sections).")
@click.option("--progress/--no-progress", default=True)
def run(testsets, variants, provider, concurrency, max_cost_usd, resume, allow_leakage,
        reports_dir, cache_dir, finetune_dir, config_path, progress):
    """Run TESTSETS through each variant of the ladder and score them."""
    if not testsets and not resume:
        _fail("give at least one test set folder, or --resume RUN_ID")
    targets = testsets or [None]
    for target in targets:
        config = RunConfig(testset=str(target), variants=variants.split(","), provider=provider,
                           concurrency=concurrency, max_cost_usd=max_cost_usd,
                           allow_leakage=allow_leakage, reports_dir=reports_dir,
                           cache_dir=cache_dir, finetune_dir=finetune_dir,
                           config_path=config_path)
        try:
            result = run_experiment(config, resume=resume, progress=progress)
        except (TestsetError, LeakageRefused, ft.LeakageError, FileNotFoundError,
                ValueError) as exc:
            _fail(str(exc))
        _print_run(result)


def _print_run(result) -> None:
    s, stats = result.summary, result.stats
    click.echo(f"\n{s['testset']} ({s['task_type']}), run {s['run_id']}")
    click.echo(variant_table(s).to_string())
    click.echo(f"calls made: {stats.calls}, served from cache: {stats.cache_hits}, "
               f"errors: {stats.errors}"
               + (f", skipped for budget: {stats.skipped_budget}" if stats.skipped_budget else ""))
    click.echo(f"run folder: {result.run_dir}")
    for line in verdict_lines(s):
        click.echo(line)


def variant_table(summary: dict) -> pd.DataFrame:
    rows = {}
    num = lambda x: math.nan if x is None else x  # noqa: E731  summary.json writes NaN as null
    for name, v in summary["variants"].items():
        row = {m: round(num(st["mean"]), 4) for m, st in v["metrics"].items()}
        row["n"] = next(iter(v["metrics"].values()))["n"] if v["metrics"] else 0
        row["errors"] = v["calls"]["errors"]
        row["p50_ms"] = round(num(v["latency"]["p50_s"]) * 1000, 2)
        row["$/query"] = f"{num(v['cost']['per_query_usd']):.2e}"
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the HTML (default: RUN_DIR/index.html).")
def report(run_dir, out):
    """Write the self-contained HTML report of RUN_DIR (no model call)."""
    from evalkit.report import render_report

    for name in ("summary.json", "scores.csv", "run.json", "predictions.jsonl"):
        if not (Path(run_dir) / name).is_file():
            _fail(f"{Path(run_dir) / name}: missing; is {run_dir} a finished run folder?")
    click.echo(f"report: {render_report(run_dir, out=out)}")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Judge with this config's economics instead of the one the run recorded.")
@click.option("--compare", "comparisons", multiple=True, metavar="A,B",
              help="Also compare variant B against A (repeatable), e.g. --compare rag,fine-tuned.")
def summarize(run_dir, config_path, comparisons):
    """Recompute summary.json for RUN_DIR from scores.csv and run.json (no model call)."""
    pairs = [tuple(c.split(",", 1)) for c in comparisons]
    if any(len(p) != 2 for p in pairs):
        _fail("--compare takes two variant names separated by a comma, e.g. rag,fine-tuned")
    try:
        summary = summarize_run(run_dir, config_path=config_path, comparisons=pairs)
    except (OSError, ValueError, KeyError) as exc:
        _fail(str(exc))
    click.echo(variant_table(summary).to_string())
    for line in verdict_lines(summary):
        click.echo(line)


@main.group()
def testset() -> None:
    """Inspect and import test sets."""


@testset.command("check")
@click.argument("path", type=click.Path())
@click.option("--threshold", default=0.9, show_default=True,
              help="TF-IDF cosine at or above which a test/train pair is a near-duplicate.")
def testset_check(path, threshold):
    """Validate a test set: sizes, label balance, doc ids, and test/train leakage."""
    try:
        ts = load_testset(path)
    except TestsetError as exc:
        _fail(str(exc))
    problems = []
    click.echo(f"{ts.name}: {ts.task.type}, {len(ts.test)} test, {len(ts.train)} train, "
               f"{len(ts.docs)} docs, hash {ts.hash[:12]}")
    if ts.task.type == "classification":
        balance = pd.DataFrame({
            "test": pd.Series([i.expected for i in ts.test]).value_counts(),
            "train": pd.Series([i.expected for i in ts.train], dtype=object).value_counts(),
        }).reindex(list(ts.task.labels)).fillna(0).astype(int)
        click.echo(balance.to_string())
        for split in ("test", "train"):
            missing = balance.index[balance[split] == 0].tolist()
            if missing:
                problems.append(f"labels with no {split} items: {', '.join(missing)}")
    leaks = find_leaks(ts.test, ts.train, threshold=threshold)
    for p in leaks[:50]:
        click.echo(f"leak: {p.test_id} ~ {p.train_id} cosine {p.similarity:.3f}"
                   + (" (exact)" if p.exact else ""))
    if leaks:
        problems.append(f"{len(leaks)} test/train pairs at cosine >= {threshold}")
    for p in problems:
        click.echo(f"problem: {p}")
    if problems:
        sys.exit(1)
    click.echo("ok: no leakage, every label in both splits, every doc id resolves")


@testset.command("import-csv")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("out_jsonl", type=click.Path(dir_okay=False))
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--id-column", default=None)
def testset_import_csv(csv_path, out_jsonl, text_column, label_column, id_column):
    """Convert a text,label CSV into test-set JSONL."""
    try:
        items = from_csv(csv_path, text_column=text_column, label_column=label_column,
                         id_column=id_column)
    except TestsetError as exc:
        _fail(str(exc))
    write_jsonl(items, out_jsonl)
    click.echo(f"wrote {len(items)} items to {out_jsonl}")


@main.command()
@click.argument("testset_dir", type=click.Path(file_okay=False))
@click.option("--provider", default="local", show_default=True)
@click.option("--finetune-dir", default="finetunes", show_default=True)
@click.option("--allow-leakage", is_flag=True)
def finetune(testset_dir, provider, finetune_dir, allow_leakage):
    """Train the fine-tuned rung's model on TESTSET_DIR's train split."""
    if provider != "local":
        _fail(f"finetune --provider {provider} is not built yet; only local is available")
    try:
        record = ft.train_local(load_testset(testset_dir), finetune_dir,
                                allow_leakage=allow_leakage)
    except (TestsetError, ft.LeakageError, ValueError) as exc:
        _fail(str(exc))
    click.echo(f"trained {record.fine_tuned_model} on {record.trained_examples} examples in "
               f"{record.training_time_s:.2f}s (notional ${record.training_cost_usd:.6f}); "
               f"record: {ft.record_path(Path(finetune_dir), record.name)}")


if __name__ == "__main__":
    main()
