"""The `evalkit` command line. Each command parses options and calls one module; no logic here."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click
import pandas as pd

from evalkit import finetune as ft
from evalkit import finetune_openai as ft_openai
from evalkit.analysis import summarize_run, verdict_lines
from evalkit.experiment import LeakageRefused, RunConfig, run_experiment
from evalkit.gate_cli import baseline, gate
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
@click.option("--base-url", default=None, help="OpenAI-compatible server, e.g. "
              "http://127.0.0.1:8000/v1 (else config, else OPENAI_BASE_URL). Key: env only.")
@click.option("--model", default=None, help="Model for the non-fine-tuned rungs.")
@click.option("--progress/--no-progress", default=True)
def run(testsets, variants, provider, concurrency, max_cost_usd, resume, allow_leakage,
        reports_dir, cache_dir, finetune_dir, config_path, base_url, model, progress):
    """Run TESTSETS through each variant of the ladder and score them."""
    if not testsets and not resume:
        _fail("give at least one test set folder, or --resume RUN_ID")
    if resume:
        _check_resume_flags(testsets, Path(reports_dir) / resume)
    if provider == "local" and (base_url or model):
        _fail("--base-url and --model are for --provider openai; the local provider has "
              "neither")
    ladder = _parse_variants(variants)
    all_failed = []
    for target in testsets or [None]:
        config = RunConfig(testset=str(target), variants=ladder, provider=provider,
                           concurrency=concurrency, max_cost_usd=max_cost_usd,
                           allow_leakage=allow_leakage, reports_dir=reports_dir,
                           cache_dir=cache_dir, finetune_dir=finetune_dir,
                           config_path=config_path,
                           provider_options={k: v for k, v in (("base_url", base_url),
                                                               ("model", model)) if v})
        try:
            result = run_experiment(config, resume=resume, progress=progress)
        except (TestsetError, LeakageRefused, ft.LeakageError, FileNotFoundError,
                ValueError, RuntimeError) as exc:
            _fail(str(exc))
        _print_run(result)
        if result.stats.jobs and result.stats.errors == result.stats.jobs:
            all_failed.append(str(result.run_dir))
    if all_failed:
        _fail(f"every call failed in {', '.join(all_failed)}: see the errors in "
              f"predictions.jsonl (error_class, error)", code=1)


def _parse_variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        _fail("--variants names no variant")
    repeated = sorted({v for v in names if names.count(v) > 1})
    if repeated:
        _fail(f"--variants names {', '.join(repeated)} more than once")
    return names


def _check_resume_flags(testsets, run_dir: Path) -> None:
    """--resume takes its settings from the run's run.json; a flag that asks for something
    else is an error rather than silently ignored (concurrency and budget may change)."""
    if testsets:
        _fail("--resume finishes one run with the test set it began with; give no test sets")
    try:
        recorded = json.loads((run_dir / "run.json").read_text())["config"]
    except (OSError, ValueError, KeyError) as exc:
        _fail(f"{run_dir / 'run.json'}: cannot resume this run ({exc})")
    ctx = click.get_current_context()
    wanted = {"variants": _parse_variants(ctx.params["variants"]),
              "provider": ctx.params["provider"], "allow_leakage": ctx.params["allow_leakage"],
              "config_path": ctx.params["config_path"], "cache_dir": ctx.params["cache_dir"],
              "finetune_dir": ctx.params["finetune_dir"],
              "base_url": ctx.params["base_url"], "model": ctx.params["model"]}
    options = recorded.get("provider_options") or {}
    have = {**recorded, "base_url": options.get("base_url"), "model": options.get("model")}
    differ = [name for name, value in wanted.items()
              if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
              and value != have.get(name)]
    if differ:
        flags = ", ".join("--" + n.removesuffix("_path").replace("_", "-") for n in differ)
        _fail(f"{run_dir / 'run.json'} records other values for {flags}; --resume keeps the "
              f"run's own settings (drop the flags, or start a new run)")


def _print_run(result) -> None:
    s, stats = result.summary, result.stats
    click.echo(f"\n{s['testset']} ({s['task_type']}), run {s['run_id']}")
    click.echo(variant_table(s).to_string())
    click.echo(f"calls made: {stats.calls}, served from cache: {stats.cache_hits}, "
               f"errors: {stats.errors}"
               + (f", skipped for budget: {stats.skipped_budget}" if stats.skipped_budget else ""))
    click.echo(f"run folder: {result.run_dir}")
    for line in result.warnings:
        click.echo(f"warning: {line}")
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
    try:
        click.echo(f"report: {render_report(run_dir, out=out)}")
    except ValueError as exc:  # RunFolderError: a damaged file, named with its line and field
        _fail(str(exc))


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
    for note in summary.get("notes", []):
        click.echo(f"note: {note}")
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


class _TrainByDefault(click.Group):
    """`evalkit finetune TESTSET ...` means `evalkit finetune train TESTSET ...`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["train", *args]
        return super().parse_args(ctx, args)


@main.group(cls=_TrainByDefault)
def finetune():
    """Fine-tune the fine-tuned rung's model: train (default), status, register."""


@finetune.command("train")
@click.argument("testset_dir", type=click.Path(file_okay=False))
@click.option("--provider", default="local", show_default=True)
@click.option("--finetune-dir", default="finetunes", show_default=True)
@click.option("--allow-leakage", is_flag=True)
@click.option("--model", "base_model", default="gpt-4o-mini-2024-07-18", show_default=True,
              help="openai: the base model to fine-tune.")
@click.option("--base-url", default=None, help="openai: an OpenAI-compatible fine-tuning API.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Experiment config (pricing.training_per_mtok).")
@click.option("--epochs", type=click.IntRange(1, 50), default=None)
@click.option("--dry-run", is_flag=True, help="openai: validate and estimate, upload nothing.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="openai: also write the training JSONL here (to train elsewhere).")
@click.option("--poll-interval", type=float, default=30.0, show_default=True)
@click.option("--force", is_flag=True, help="openai: start a new job even if the record names "
              "one in progress or an up-to-date model.")
def finetune_train(testset_dir, provider, finetune_dir, allow_leakage, base_model, base_url,
                   config_path, epochs, dry_run, out, poll_interval, force):
    """Train the fine-tuned rung's model on TESTSET_DIR's train split."""
    if provider not in ("local", "openai"):
        _fail(f"finetune --provider {provider}: known providers are local and openai")
    try:
        if provider == "openai":
            record = ft_openai.train(load_testset(testset_dir), finetune_dir,
                                     base_model=base_model, base_url=base_url,
                                     config_path=config_path, n_epochs=epochs,
                                     allow_leakage=allow_leakage, dry_run=dry_run, out=out,
                                     interval_s=poll_interval, force=force, echo=click.echo)
            if record is not None:
                _print_finetune(record, finetune_dir)
            return
        record = ft.train_local(load_testset(testset_dir), finetune_dir,
                                allow_leakage=allow_leakage)
    except (TestsetError, ft.LeakageError, ValueError, ft_openai.FineTuneError) as exc:
        _fail(str(exc))
    click.echo(f"trained {record.fine_tuned_model} on {record.trained_examples} examples in "
               f"{record.training_time_s:.2f}s (notional ${record.training_cost_usd:.6f}); "
               f"record: {ft.record_path(Path(finetune_dir), record.name)}")


@finetune.command("status")
@click.argument("name")
@click.option("--finetune-dir", default="finetunes", show_default=True)
@click.option("--base-url", default=None, help="Default: the one the record was started with.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@click.option("--poll-interval", type=float, default=30.0, show_default=True)
@click.option("--wait/--no-wait", default=True, help="Follow the job until it ends.")
def finetune_status(name, finetune_dir, base_url, config_path, poll_interval, wait):
    """Show (and keep following) the fine-tuning job recorded as finetunes/NAME.json."""
    try:
        record = ft_openai.status(finetune_dir, name, base_url=base_url, config_path=config_path,
                                  interval_s=poll_interval, timeout_s=None if wait else 0.0,
                                  echo=click.echo)
    except (ValueError, ft_openai.FineTuneError) as exc:
        _fail(str(exc))
    _print_finetune(record, finetune_dir)


@finetune.command("register")
@click.argument("name")
@click.option("--model", required=True, help="The name the server serves it under.")
@click.option("--base-url", default=None, help="Its server, if not the run's --base-url.")
@click.option("--base-model", default="", help="What it was trained from (for the record).")
@click.option("--gpu-hours", type=float, default=None)
@click.option("--usd-per-hour", type=float, default=None)
@click.option("--testset", "testset_dir", type=click.Path(file_okay=False), default=None,
              help="The test set whose train split it was trained on (records its hash).")
@click.option("--finetune-dir", default="finetunes", show_default=True)
@click.option("--allow-leakage", is_flag=True, help="Register even if test items leak into train.")
@click.option("--force", is_flag=True, help="Overwrite the record of a job still in progress.")
def finetune_register(name, model, base_url, base_model, gpu_hours, usd_per_hour, testset_dir,
                      finetune_dir, allow_leakage, force):
    """Record a model trained elsewhere (vLLM/Ollama/llama.cpp LoRA) as fine-tune NAME.

    Name it <testset>-openai for `evalkit run --provider openai` to use it."""
    try:
        record = ft_openai.register(
            finetune_dir, name, model=model, base_url=base_url, base_model=base_model,
            gpu_hours=gpu_hours, usd_per_hour=usd_per_hour,
            testset=load_testset(testset_dir) if testset_dir else None,
            allow_leakage=allow_leakage, force=force)
    except (TestsetError, ft.LeakageError, ft_openai.FineTuneError) as exc:
        _fail(str(exc))
    _print_finetune(record, finetune_dir)


@main.command()
@click.argument("testset_dir", type=click.Path(file_okay=False))
@click.option("--variants", default=",".join(LADDER), show_default=True)
@click.option("--provider", default="openai", show_default=True)
@click.option("--base-url", default=None)
@click.option("--model", default=None)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@click.option("--cache-dir", default=".evalkit-cache", show_default=True)
@click.option("--finetune-dir", default="finetunes", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate(testset_dir, variants, provider, base_url, model, config_path, cache_dir,
             finetune_dir, as_json):
    """Expected tokens and cost of `evalkit run` on TESTSET_DIR, before any call."""
    from evalkit.estimate import estimate_run, format_estimate
    try:
        est = estimate_run(testset_dir, variants=variants.split(","), provider=provider,
                           provider_options={"base_url": base_url, "model": model},
                           config_path=config_path, cache_dir=cache_dir,
                           finetune_dir=finetune_dir)
    except (TestsetError, ValueError) as exc:
        _fail(str(exc))
    click.echo(json.dumps(est.to_dict(), indent=2) if as_json else format_estimate(est))


@main.group()
def judge():
    """The LLM judge: grade a run's free-text answers, or check the judge against labels."""


def _judge_setup(provider, base_url, model, config_path, rubric_path):
    from evalkit.config import load_config
    from evalkit.judge import DEFAULT_RUBRIC
    from evalkit.providers import get_provider
    section = load_config(config_path).section("judge")
    model = model or section.get("model")
    options = {"base_url": base_url or section.get("base_url"), "model": model}
    if provider == "openai":
        from evalkit.providers.openai import options_from_config
        options = options_from_config(config_path, options)
    rubric = Path(rubric_path).read_text() if rubric_path else section.get("rubric",
                                                                           DEFAULT_RUBRIC)
    return get_provider(provider, **{k: v for k, v in options.items() if v is not None}), \
        model, rubric


_judge_options = [
    click.option("--provider", default="openai", show_default=True),
    click.option("--base-url", default=None),
    click.option("--model", default=None, help="Judge model (else config judge.model)."),
    click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None),
    click.option("--rubric", "rubric_path", type=click.Path(dir_okay=False), default=None),
    click.option("--cache-dir", default=".evalkit-cache", show_default=True),
    click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 1024)),
    click.option("--max-cost-usd", type=float, default=None),
]


def _with_judge_options(f):
    for option in reversed(_judge_options):
        f = option(f)
    return f


@judge.command("score")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--variants", default=None, help="Only these variants (comma-separated).")
@_with_judge_options
def judge_score(run_dir, variants, provider, base_url, model, config_path, rubric_path,
                cache_dir, concurrency, max_cost_usd):
    """Grade RUN_DIR's answers with the judge: judge_scores.csv and judge.json."""
    from evalkit.cache import ResponseCache
    from evalkit.judge import score_run
    try:
        llm, model, rubric = _judge_setup(provider, base_url, model, config_path, rubric_path)
        cache = ResponseCache(Path(cache_dir) / "responses.sqlite")
        try:
            summary = score_run(run_dir, llm, model=model, rubric=rubric, cache=cache,
                                variants=variants.split(",") if variants else None,
                                concurrency=concurrency, max_cost_usd=max_cost_usd)
        finally:
            cache.close()
    except (TestsetError, ValueError, OSError) as exc:
        _fail(str(exc))
    for name, v in summary["variants"].items():
        mean = "n/a" if v["mean"] is None else f"{v['mean']:.3f}"
        click.echo(f"{name:<16} judge {mean}  n={v['n']}  unparseable={v['unparseable']}  "
                   f"errors={v['errors']}")
    c = summary["judge_cost"]
    click.echo(f"judge cost (apart from the variants'): ${c['notional_usd']:.4f} over "
               f"{c['calls']} calls, {c['input_tokens']} in / {c['output_tokens']} out tokens")


@judge.command("check")
@click.argument("labels", type=click.Path(exists=True, dir_okay=False))
@click.option("--sample", type=click.IntRange(1), default=None, help="Judge a random sample.")
@click.option("--seed", type=int, default=0, show_default=True)
@_with_judge_options
def judge_check(labels, sample, seed, provider, base_url, model, config_path, rubric_path,
                cache_dir, concurrency, max_cost_usd):
    """Agreement of the judge with human LABELS (JSONL): accuracy and Cohen's kappa."""
    from evalkit.cache import ResponseCache
    from evalkit.judge import check, load_labels
    try:
        cases = load_labels(labels)
        llm, model, rubric = _judge_setup(provider, base_url, model, config_path, rubric_path)
        cache = ResponseCache(Path(cache_dir) / "responses.sqlite")
        try:
            result = check(cases, llm, model=model, rubric=rubric, cache=cache, sample=sample,
                           seed=seed, concurrency=concurrency, max_cost_usd=max_cost_usd)
        finally:
            cache.close()
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"{result.n} labelled answers: {result.n_scored} judged, "
               f"{result.n_unparseable} unparseable (NaN), {result.n_errors} failed calls")
    click.echo(f"accuracy {result.accuracy:.3f}  Cohen's kappa {result.kappa:.3f}")
    for truth, row in sorted(result.confusion.items()):
        click.echo(f"  human {truth:<18} judge " + ", ".join(f"{k}: {n}"
                                                           for k, n in sorted(row.items())))
    click.echo(f"judge cost: ${result.judge_cost['notional_usd']:.4f}")


def _print_finetune(record, finetune_dir) -> None:
    tokens = f", {record.trained_tokens} trained tokens" if record.trained_tokens else ""
    click.echo(f"{record.name}: {record.status}, model {record.fine_tuned_model or '-'}"
               f"{tokens}, training cost ${record.training_cost_usd:.4f}; "
               f"record: {ft.record_path(Path(finetune_dir), record.name)}")


main.add_command(gate)
main.add_command(baseline)


if __name__ == "__main__":
    main()
