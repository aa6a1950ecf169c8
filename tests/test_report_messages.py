"""The explorer's "messages sent": rebuilt only when exact, else absent with a reason."""

from __future__ import annotations

import json
from pathlib import Path

from evalkit.data.testset import load_testset
from evalkit.pipeline.experiment import RunConfig, run_experiment
from evalkit.report import messages
from evalkit.run.journal import Journal, Prediction, latest
from evalkit.run.runfolder import read_items

FIXTURES = Path(__file__).parent / "fixtures"


def _run(tmp_path: Path) -> Path:
    cfg = RunConfig(testset=str(FIXTURES / "tiny-qa"), reports_dir=str(tmp_path / "r"),
                    cache_dir=str(tmp_path / "c"), finetune_dir=str(tmp_path / "ft"),
                    variants=["prompt-only", "rag"])
    return run_experiment(cfg, progress=False).run_dir


def _inputs(run_dir: Path):
    run = json.loads((run_dir / "run.json").read_text())
    preds = latest(Journal(run_dir / "predictions.jsonl").read())
    return run, read_items(run_dir / "items.jsonl"), preds


def test_messages_are_the_requests_the_run_sent(tmp_path):
    run_dir = _run(tmp_path)
    run, items, preds = _inputs(run_dir)
    got = messages.rebuild(run, ["prompt-only", "rag"], items, preds)
    assert got.note == "" and len(got.by) == len(items)
    task = load_testset(FIXTURES / "tiny-qa").task
    rag_of = {p.item_id: p.retrieved for p in preds if p.variant == "rag"}
    for row, cells in zip(items, got.by, strict=True):
        plain, rag = cells
        assert [r for r, _ in plain] == ["s", "u"]
        assert got.texts[plain[0][1]].startswith(task.instructions.strip()[:40])
        assert got.texts[plain[1][1]] == row["input"]
        user = got.texts[rag[-1][1]]
        assert user.endswith(f"Question: {row['input']}")
        assert all(f"({doc})" in user for doc in rag_of[row["id"]])
    # the system prompt is stored once, not once per item
    assert got.texts.count(got.texts[got.by[0][0][0][1]]) == 1


def test_a_cell_that_does_not_rebuild_exactly_is_left_out(tmp_path):
    run_dir = _run(tmp_path)
    run, items, preds = _inputs(run_dir)
    first = items[0]["id"]
    preds = [Prediction(**{**p.__dict__, "retrieved": ["not-what-it-retrieved"]})
             if p.variant == "rag" and p.item_id == first else p for p in preds]
    got = messages.rebuild(run, ["prompt-only", "rag"], items, preds)
    assert got.by[0][1] == 0 and got.by[0][0] != 0
    assert all(cells[1] != 0 for cells in got.by[1:])


def test_a_changed_test_set_shows_no_messages(tmp_path):
    run_dir = _run(tmp_path)
    run, items, preds = _inputs(run_dir)
    run["testset"]["hash"] = "0" * 64
    got = messages.rebuild(run, ["prompt-only", "rag"], items, preds)
    assert got.by == [] and "hash differs" in got.note
    run["testset"]["path"] = str(tmp_path / "gone")
    assert "is not here" in messages.rebuild(run, ["rag"], items, preds).note
