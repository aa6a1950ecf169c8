"""`evalkit compare RUN_A RUN_B`: two runs of one test set on one page (no model call)."""

from __future__ import annotations

from pathlib import Path

import click

from evalkit.cli.app import fail, main


@main.command()
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
@click.option("--baseline-variant", default=None, metavar="[A:|B:]NAME",
              help="Compare this variant against every other variant of both runs "
                   "(default: each variant name both runs share, A against B).")
@click.option("--metric", default=None, help="Metric to compare (default: run A's primary).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for compare.html and compare.md (default: "
                   "RUN_B/../compare-RUN_A-vs-RUN_B).")
def compare(run_a, run_b, baseline_variant, metric, out_dir):
    """Paired differences between the variants of RUN_A and RUN_B on their shared items."""
    from evalkit.analysis.compare import compare_runs, to_markdown
    from evalkit.report.compare_page import render_compare

    a, b = Path(run_a).resolve(), Path(run_b).resolve()
    try:
        result = compare_runs(a, b, baseline_variant=baseline_variant, metric=metric)
    except ValueError as exc:  # RunFolderError names file, line and field; a bad variant name
        fail(str(exc))
    out = Path(out_dir) if out_dir else b.parent / f"compare-{a.name}-vs-{b.name}"
    page, md = render_compare(result, out)
    click.echo(to_markdown(result))
    click.echo(f"compare: {page}\ncompare: {md}")
