"""`evalkit testset ...`: check and import test sets."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from evalkit.cli.app import fail, main
from evalkit.cli.options import provider_option, server_options
from evalkit.data.testset import TestsetError, load_testset
from evalkit.strategies.ladder import LADDER


@main.group()
def testset() -> None:
    """Inspect and import test sets."""


def _read_config(path):
    """The experiment config, read once; a broken one is the first refusal (as in `run`)."""
    from evalkit.config import ExperimentConfig, load_config
    from evalkit.pipeline.preflight import Refusal
    try:
        return [], load_config(path)
    except ValueError as exc:
        return [Refusal("config", str(exc), exc)], ExperimentConfig()


@testset.command("check")
@click.argument("path", type=click.Path())
@click.option("--variants", default=",".join(LADDER), show_default=True,
              help="The ladder `run` would be given; its refusals are checked.")
@provider_option
@server_options
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Experiment config YAML, as given to `run`.")
@click.option("--finetune-dir", default="finetunes", show_default=True)
@click.option("--batch", is_flag=True, help="As `run --batch`: is there a batch API to use?")
@click.option("--epochs", type=click.IntRange(1), default=None, metavar="K",
              help="As `run --epochs` (else the config's epochs:, else 1).")
@click.option("--allow-leakage", is_flag=True, help="As `run --allow-leakage`: leaks warn.")
@click.option("--threshold", default=0.9, show_default=True,
              help="TF-IDF cosine at or above which a test/train pair is a near-duplicate.")
@click.option("--show-all", is_flag=True, help="List every leaking pair, not the first 20.")
@click.option("--scan-anyway", is_flag=True,
              help="Scan for leakage even when a cheaper refusal has been found.")
@click.option("--cache-dir", default=".evalkit-cache", show_default=True,
              help="As `run --cache-dir`: the leakage scan is remembered under "
                   "CACHE_DIR/leakage/, so a run of the same set need not scan again.")
def testset_check(path, variants, provider, base_url, model, config_path, finetune_dir,
                  batch, epochs, allow_leakage, threshold, show_all, scan_anyway,
                  cache_dir):
    """The run's pre-flight: every refusal `evalkit run` would make on PATH, cheapest first,
    then sizes, label balance, leakage and the smallest difference the set can detect.

    Exits 1 exactly when `run` with the same options would refuse to start."""
    from evalkit.cli.options import check_provider_options
    from evalkit.pipeline import preflight  # deferred: sklearn
    from evalkit.pipeline.preflight import balance_notes, detectable_line, ok_line

    ladder = [v.strip() for v in variants.split(",") if v.strip()]
    try:
        ts = load_testset(path)
    except TestsetError as exc:
        fail(str(exc))
    click.echo(f"{ts.name}: {ts.task.type}, {len(ts.test)} test, {len(ts.train)} train, "
               f"{len(ts.docs)} docs, hash {ts.hash[:12]}")
    for note in ts.warnings:
        click.echo(f"warning: {note}")
    refusals, config = _read_config(config_path)
    if click.get_current_context().get_parameter_source("variants") is \
            click.core.ParameterSource.DEFAULT and config.variants:
        ladder = [d.name for d in config.variants]  # as `run` would take them
    options = {}
    try:  # the flags `run` would refuse as a usage error (an unknown provider: below)
        options = check_provider_options(provider, base_url, model)
    except ValueError as exc:
        if _known(provider):
            refusals.append(preflight.Refusal("provider", str(exc), exc))
    refusals += preflight.cheap_refusals(ts, ladder, provider=provider,
                                         finetune_dir=finetune_dir, config=config,
                                         provider_options=options, batch=batch,
                                         epochs=epochs or config.epochs or 1)
    _echo_refusals(refusals)
    for line in balance_notes(ts):
        click.echo(line)
    leaks = []
    if refusals and not scan_anyway:
        # cheap first: the leakage scan and the power figures (scipy) wait for a set that
        # would run, so a refusal is said in about a second even on 10,000 items
        click.echo("leakage and detectable difference: not computed until the refusals above "
                   "are fixed (--scan-anyway)")
    else:
        leaks, refusal = preflight.leakage_refusal(ts, threshold=threshold, allow=allow_leakage,
                                                   memo_dir=Path(cache_dir) / "leakage")
        shown = leaks if show_all else leaks[:preflight.LEAKS_LISTED]
        for p in shown:
            click.echo(f"leak: {p.test_id} ~ {p.train_id} cosine {p.similarity:.3f}"
                       + (" (exact)" if p.exact else ""))
        if leaks:
            rest = len(leaks) - len(shown)
            click.echo(f"leakage: {preflight.leak_counts(leaks)} at cosine >= {threshold}"
                       + (f"; {rest} more pairs with --show-all" if rest else "")
                       + ("; allowed by --allow-leakage" if refusal is None else ""))
        if refusal:
            refusals.append(refusal)
            click.echo(f"refused ({refusal.check}): fix the split, or pass --allow-leakage")
    if not refusals or scan_anyway:
        power_note = _power_warning(len(ts.test))
        if power_note:
            click.echo(f"warning: {power_note}")
        click.echo(detectable_line(ts))
    if refusals:
        click.echo(f"run would refuse: {len(refusals)} problem(s) above")
        sys.exit(1)
    click.echo(ok_line(ts, ladder, leaks))


def _known(provider: str) -> bool:
    from evalkit.providers import provider_class
    try:
        provider_class(provider)
    except ValueError:
        return False
    return True


def _echo_refusals(refusals) -> None:
    for r in refusals:
        click.echo(f"refused ({r.check}): {r.message}")


def _power_warning(n: int) -> str | None:
    """Too small to detect a 5-pt difference between two rungs (80% power, paired test at
    0.05) when a typical share of the items changes between them; None when large enough."""
    from evalkit.analysis import stats
    from evalkit.analysis.verdicts import about
    need = stats.items_needed(stats.DETECTABLE_DELTA, stats.assumed_sd())
    if n >= need:
        return None
    share = stats.detectable_changed_share(n)
    pts = f"{stats.DETECTABLE_DELTA * 100:g}-pt difference between two rungs (80% power)"
    head = (f"{n} test items detect a {pts} only if at most {share:.0%} of the items change "
            f"between them" if share > stats.DETECTABLE_DELTA else
            f"{n} test items are too few to detect a {pts}")
    return (f"{head}; with {stats.ASSUMED_CHANGED:.0%} changing it takes about {about(need)} "
            f"items" + (f", and a step on fewer than {stats.MIN_PAIRED_ITEMS} gets no verdict"
                        if n < stats.MIN_PAIRED_ITEMS else ""))


@testset.command("import-csv")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("out_jsonl", type=click.Path(dir_okay=False))
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--id-column", default=None)
def testset_import_csv(csv_path, out_jsonl, text_column, label_column, id_column):
    """Convert a text,label CSV into test-set JSONL."""
    from evalkit.data.importers import from_csv, write_jsonl  # deferred: pandas
    try:
        items = from_csv(csv_path, text_column=text_column, label_column=label_column,
                         id_column=id_column)
    except TestsetError as exc:
        fail(str(exc))
    write_jsonl(items, out_jsonl)
    click.echo(f"wrote {len(items)} items to {out_jsonl}")
