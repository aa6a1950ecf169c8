"""The `evalkit` command group and the one way a command fails; each command lives in its own
module under evalkit/cli/ and registers itself on `main`."""

from __future__ import annotations

import sys

import click

from evalkit import DISTRIBUTION, __version__


@click.group()
# the version from the code, so it is right from a checkout on PYTHONPATH too; the packaging
# test checks it is the version the distribution's metadata carries
@click.version_option(version=__version__, package_name=DISTRIBUTION)
def main() -> None:
    """Measure each step up the ladder: prompt -> few-shot -> RAG -> fine-tuned."""


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
