"""`evalkit init`: a test-set folder from a CSV or JSONL file (or a folder of items)."""

from __future__ import annotations

from pathlib import Path

import click

from evalkit.cli.app import fail, main
from evalkit.cli.options import DEFAULT_PROVIDER


class TaskTypeChoice(click.Choice):
    """The task types `evalkit init` can draft, read from the registry when the option is
    parsed or its help shown (not at import: a type registered later is offered too, and
    `evalkit --help` does not import the task modules)."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        from evalkit.tasks import scaffolded_types

        return scaffolded_types()

    @choices.setter
    def choices(self, value) -> None:  # click.Choice.__init__ assigns; the registry decides
        pass


KINDS = TaskTypeChoice()


@main.command("init")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--type", "kind", type=KINDS, default=None,
              help="The task type [default: inferred from the file, and confirmed].")
@click.option("--train", "train_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), default=None,
              help="A separate train file (e.g. OpenAI chat fine-tuning JSONL); SOURCE is "
                   "then the test split as it is.")
@click.option("--corpus", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Corpus JSONL (id, title, text) to write as docs/.")
@click.option("--docs", "docs_dir", type=click.Path(exists=True, file_okay=False,
              path_type=Path), default=None, help="A folder of .md/.txt documents for docs/.")
@click.option("--test-size", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True, help="Share held out when one file is split.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--name", default=None, help="Test-set name [default: the file's stem].")
@click.option("--text-column", default=None, help="The input column/key [default: guessed].")
@click.option("--label-column", default=None,
              help="The label (or answer, or JSON target) column/key [default: guessed].")
@click.option("--yes", "-y", is_flag=True, help="Write without asking to confirm.")
@click.option("--force", is_flag=True, help="Overwrite an existing task.yaml.")
def init(source, out, kind, train_file, corpus, docs_dir, test_size, seed, name, text_column,
         label_column, yes, force):
    """Write a test-set folder OUT (default testsets/<name>) from SOURCE: task.yaml with the
    type inferred, labels discovered, a seeded stratified split, docs/ and a data card."""
    from evalkit.data import scaffold  # deferred: yaml, the task registry
    from evalkit.data.testset import TestsetError
    try:
        d = scaffold.draft(source, name=name, kind=kind, train_file=train_file, corpus=corpus,
                           docs_dir=docs_dir, test_size=test_size, seed=seed,
                           text_column=text_column, label_column=label_column)
    except (TestsetError, ValueError) as exc:
        fail(str(exc))
    except OSError as exc:  # unreadable source, a folder where a file was expected, ...
        fail(f"cannot read {_os_error(exc, source)}")
    target = out or (source if source.is_dir() else Path("testsets") / d.name)
    click.echo(f"{source} -> {target}")
    click.echo(d.summary())
    if not yes and not click.confirm(f"write {target} as a {d.type} test set?", default=True):
        fail("nothing written (pass --type to choose another task type)", code=1)
    try:
        written = scaffold.write_testset(d, target, force=force)
    except (TestsetError, ValueError) as exc:
        fail(str(exc))
    except OSError as exc:  # disk full, read-only or missing parent: write_testset cleaned up
        fail(f"cannot write {target}: {_os_error(exc, target)}; nothing was written")
    click.echo(f"wrote {target}: task.yaml, test.jsonl ({len(d.test)}), train.jsonl "
               f"({len(d.train)}), {len(d.docs)} docs, README.md")
    click.echo(_next_steps(target, written))


def _os_error(exc: OSError, path: Path) -> str:
    """An OSError as one line naming the file at fault (the path asked for if it names none)."""
    return f"{exc.filename or path}: {exc.strerror or exc}"


def _next_steps(out: Path, testset) -> str:
    """The commands to run next, with the default ladder's rungs that the pre-flight would
    let start (no rag rungs without docs/, no few-shot without train)."""
    from evalkit.config import ExperimentConfig
    from evalkit.pipeline.preflight import cheap_refusals
    from evalkit.strategies.ladder import LADDER
    ladder = [v for v in LADDER if not cheap_refusals(testset, [v], provider=DEFAULT_PROVIDER,
                                                      finetune_dir="finetunes",
                                                      config=ExperimentConfig())]
    flags = "" if len(ladder) == len(LADDER) else f" --variants {','.join(ladder)}"
    return (f"next: evalkit testset check {out}{flags}   # what `run` would refuse\n"
            f"      evalkit run {out}{flags}")
