"""`evalkit judge ...`: grade a run with an LLM judge, or check the judge against labels."""

from __future__ import annotations

from pathlib import Path

import click

from evalkit.cli.app import fail, main
from evalkit.data.testset import TestsetError


@main.group()
def judge():
    """The LLM judge: grade a run's free-text answers, or check the judge against labels."""


def _judge_setup(provider, base_url, model, config_path, rubric_path):
    from evalkit.config import load_config, refuse_flag_secrets
    from evalkit.providers import ProviderSetup, build_provider
    from evalkit.scoring.judge import DEFAULT_RUBRIC
    refuse_flag_secrets({"base_url": base_url, "model": model})
    config = load_config(config_path)  # read once; the provider gets the same object
    section = config.section("judge")
    model = model or section.get("model")
    options = {"base_url": base_url or section.get("base_url"), "model": model}
    rubric = Path(rubric_path).read_text() if rubric_path else section.get("rubric",
                                                                           DEFAULT_RUBRIC)
    setup = ProviderSetup(options={k: v for k, v in options.items() if v is not None},
                          config=config)
    return build_provider(provider, setup), model, rubric


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
    """Grade RUN_DIR's answers with the judge: judge_scores.csv and judge.json, and the
    metric `judge` in scores.csv and summary.json (the run is re-scored, no other call)."""
    from evalkit.pipeline.experiment import rescorable, rescore
    from evalkit.run.cache import ResponseCache
    from evalkit.scoring.judge import score_run
    try:
        rescorable(run_dir)  # a run that cannot be re-scored is refused before any judge call
        llm, model, rubric = _judge_setup(provider, base_url, model, config_path, rubric_path)
        cache = ResponseCache(Path(cache_dir) / "responses.sqlite")
        try:
            summary = score_run(run_dir, llm, model=model, rubric=rubric, cache=cache,
                                variants=variants.split(",") if variants else None,
                                concurrency=concurrency, max_cost_usd=max_cost_usd)
        finally:
            cache.close()
        rescore(run_dir)
    except (TestsetError, ValueError, OSError) as exc:
        fail(str(exc))
    for name, v in summary["variants"].items():
        mean = "n/a" if v["mean"] is None else f"{v['mean']:.3f}"
        left = f"  not judged={v['not_judged']}" if v.get("not_judged") else ""
        click.echo(f"{name:<16} judge {mean}  n={v['n']}  unparseable={v['unparseable']}  "
                   f"errors={v['errors']}{left}")
    if summary.get("stopped"):
        click.echo(f"warning: the judge stopped early ({summary['stopped']['message']}): its "
                   f"means cover only the answers it judged; run it again (a higher "
                   f"judge.max_cost_usd) to judge the rest")
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
    from evalkit.run.cache import ResponseCache
    from evalkit.scoring.judge import check, load_labels
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
        fail(str(exc))
    click.echo(f"{result.n} labelled answers: {result.n_scored} judged, "
               f"{result.n_unparseable} unparseable (NaN), {result.n_errors} failed calls")
    click.echo(f"accuracy {result.accuracy:.3f}  Cohen's kappa {result.kappa:.3f}")
    for truth, row in sorted(result.confusion.items()):
        click.echo(f"  human {truth:<18} judge " + ", ".join(f"{k}: {n}"
                                                           for k, n in sorted(row.items())))
    click.echo(f"judge cost: ${result.judge_cost['notional_usd']:.4f}")
