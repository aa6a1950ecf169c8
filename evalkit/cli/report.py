"""`evalkit report`: redraw a run folder's HTML page (no model call)."""

from __future__ import annotations

from pathlib import Path

import click

from evalkit.cli.app import fail, main


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the HTML (default: RUN_DIR/index.html).")
def report(run_dir, out):
    """Write the self-contained HTML report of RUN_DIR (no model call)."""
    from evalkit.report import render_report

    for name in ("summary.json", "scores.csv", "run.json", "predictions.jsonl"):
        if not (Path(run_dir) / name).is_file():
            fail(f"{Path(run_dir) / name}: missing; is {run_dir} a finished run folder?")
    try:
        click.echo(f"report: {render_report(run_dir, out=out)}")
    except ValueError as exc:  # RunFolderError: a damaged file, named with its line and field
        fail(str(exc))
