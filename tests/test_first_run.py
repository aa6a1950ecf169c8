"""A first run that talks: one line per setup stage with its duration, a labelled progress
bar, and the report path as the last line."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from click.testing import CliRunner

from evalkit.cli import main
from evalkit.run import runner
from evalkit.run.journal import Journal


def test_first_run_transcript_shows_each_stage_and_ends_with_the_report(copy_fixture, run_dirs,
                                                                        tmp_path, monkeypatch):
    root = copy_fixture("tiny-intents")
    monkeypatch.chdir(tmp_path)  # a user's own folder, not the repo
    args = ["run", str(root), "--variants", "prompt-only,rag,fine-tuned", "--no-progress",
            "--reports-dir", run_dirs["reports_dir"],
            "--cache-dir", run_dirs["cache_dir"], "--finetune-dir", run_dirs["finetune_dir"]]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    stage = r" \(\d+\.\d\d s\)$"
    assert re.fullmatch(r"tiny-intents: loaded 8 test, 12 train, 4 docs" + stage, lines[0])
    assert re.fullmatch(r"tiny-intents: leakage check of 8 test x 12 train items: none" + stage,
                        lines[1])
    assert re.fullmatch(r"tiny-intents: fine-tune local-ft:tiny-intents-local@\w+: trained on "
                        r"12 examples" + stage, lines[2])
    assert re.fullmatch(r"tiny-intents: index of 4 docs" + stage, lines[3])
    report = Path(re.fullmatch(r"report: (.+)", lines[-1]).group(1))
    assert report.name == "index.html" and report.is_file()
    assert report.parent.parent == Path(run_dirs["reports_dir"])

    again = CliRunner().invoke(main, [*args, "--no-report"])
    assert "fine-tune local-ft:tiny-intents-local@" in again.output
    assert "recorded earlier, reused" in again.output  # not trained twice
    assert again.output.splitlines()[-1].startswith("report: not written (--no-report); "
                                                    "`evalkit report ")


def test_progress_bar_names_the_test_set_and_the_variant(intents_dir, tmp_path, monkeypatch):
    from conftest import FakeProvider

    from evalkit.data.testset import load_testset
    from evalkit.run.runner import Job
    from evalkit.strategies.request import Request

    described = []

    class Bar:
        def __init__(self, **kw):
            pass

        def set_description(self, text, refresh=True):
            described.append(text)

        def update(self, n=1):
            pass

        def close(self):
            pass

    monkeypatch.setattr(runner, "tqdm", Bar)
    items = load_testset(intents_dir).test[:3]

    def build(item):
        return Request(task_type="qa", instructions="Answer.", input=item.input)
    jobs = [Job(v, it, build) for v in ("prompt-only", "rag") for it in items]
    asyncio.run(runner.run_jobs(jobs, total=len(jobs), provider=FakeProvider(), cache=None,
                                journal=Journal(tmp_path / "p.jsonl"), concurrency=1,
                                label="tiny-intents"))
    assert described == ["tiny-intents prompt-only", "tiny-intents rag"]
