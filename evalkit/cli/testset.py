"""`evalkit testset ...`: check and import test sets."""

from __future__ import annotations

import sys

import click

from evalkit.cli.app import fail, main
from evalkit.data.testset import TestsetError, load_testset
from evalkit.tasks import task_type


@main.group()
def testset() -> None:
    """Inspect and import test sets."""


@testset.command("check")
@click.argument("path", type=click.Path())
@click.option("--threshold", default=0.9, show_default=True,
              help="TF-IDF cosine at or above which a test/train pair is a near-duplicate.")
def testset_check(path, threshold):
    """Validate a test set: sizes, label balance, doc ids, and test/train leakage."""
    import pandas as pd  # deferred: keeps `evalkit --help` free of pandas and sklearn

    from evalkit.data.leakage import find_leaks
    try:
        ts = load_testset(path)
    except TestsetError as exc:
        fail(str(exc))
    problems = []
    click.echo(f"{ts.name}: {ts.task.type}, {len(ts.test)} test, {len(ts.train)} train, "
               f"{len(ts.docs)} docs, hash {ts.hash[:12]}")
    for note in ts.warnings:
        click.echo(f"warning: {note}")
    power_note = _power_warning(len(ts.test))
    if power_note:
        click.echo(f"warning: {power_note}")
    if task_type(ts.task.type).uses_labels:  # label balance per split
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
