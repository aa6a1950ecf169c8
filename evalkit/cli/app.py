"""The `evalkit` command group and the one way a command fails; each command lives in its own
module under evalkit/cli/ and registers itself on `main`."""

from __future__ import annotations

import sys

import click


@click.group()
@click.version_option(package_name="evalkit")
def main() -> None:
    """Measure each step up the ladder: prompt -> few-shot -> RAG -> fine-tuned."""


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
