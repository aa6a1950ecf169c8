"""`evalkit run` end to end on the two fixtures with the local provider, offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import append_jsonl

from evalkit.cli import main
from evalkit.strategies.variants import LADDER


def _args(run_dirs: dict[str, str]) -> list[str]:
    return ["--no-progress", "--no-report", "--reports-dir", run_dirs["reports_dir"],
            "--cache-dir", run_dirs["cache_dir"], "--finetune-dir", run_dirs["finetune_dir"]]


def _run_folders(output: str) -> list[Path]:
    return [Path(m) for m in re.findall(r"^run folder: (.+)$", output, flags=re.M)]


def _table_rows(output: str, set_name: str) -> dict[str, list[str]]:
    """The per-variant rows printed under `set_name`'s header."""
    block = output.split(f"\n{set_name} (", 1)[1].split("calls made:", 1)[0]
    rows = {}
    for line in block.splitlines()[2:]:
        cells = line.split()
        if cells and cells[0] in LADDER:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The whole ladder on both fixtures, twice, sharing one cache (run once per module)."""
    fixtures = Path(__file__).parent / "fixtures"
    base = tmp_path_factory.mktemp("cli")
    run_dirs = {"reports_dir": str(base / "reports"), "cache_dir": str(base / "cache"),
                "finetune_dir": str(base / "finetunes")}
    sets = [str(fixtures / "tiny-intents"), str(fixtures / "tiny-qa")]
    first = CliRunner().invoke(main, ["run", *sets, *_args(run_dirs)])
    second = CliRunner().invoke(main, ["run", *sets, *_args(run_dirs)])
    reports = Path(run_dirs["reports_dir"])
    run_dirs["links"] = {p.name: p.resolve() for p in reports.iterdir() if p.is_symlink()}
    return first, second, run_dirs


def test_run_prints_a_table_per_variant_and_the_run_folder(two_runs):
    first, _, run_dirs = two_runs
    assert first.exit_code == 0, first.output
    folders = _run_folders(first.output)
    assert len(folders) == 2
    for folder, name, n_items in zip(folders, ("tiny-intents", "tiny-qa"), (8, 5),
                                     strict=True):
        assert folder.parent == Path(run_dirs["reports_dir"])
        assert folder.name.endswith(name)
        for f in ("run.json", "predictions.jsonl", "scores.csv", "summary.json"):
            assert (folder / f).is_file()
        assert re.search(rf"^{name} \((classification|qa)\), run {folder.name}$",
                         first.output, flags=re.M)
        rows = _table_rows(first.output, name)
        assert list(rows) == list(LADDER)
        summary = json.loads((folder / "summary.json").read_text())
        primary = summary["primary_metric"]
        header = first.output.split(f"run {folder.name}\n", 1)[1].splitlines()[0].split()
        for variant, cells in rows.items():
            printed = float(cells[header.index(primary)])
            assert printed == pytest.approx(summary["variants"][variant]["metrics"][primary]
                                            ["mean"], abs=1e-4)
            assert int(cells[header.index("n")]) == n_items
            assert int(cells[header.index("errors")]) == 0
    assert "calls made: 40, served from cache: 0, errors: 0" in first.output
    assert "calls made: 25, served from cache: 0, errors: 0" in first.output


def test_second_run_makes_no_calls(two_runs):
    first, second, run_dirs = two_runs
    assert second.exit_code == 0, second.output
    assert "calls made: 0, served from cache: 40, errors: 0" in second.output
    assert "calls made: 0, served from cache: 25, errors: 0" in second.output
    first_folders, second_folders = _run_folders(first.output), _run_folders(second.output)
    assert set(first_folders).isdisjoint(second_folders)
    assert run_dirs["links"] == {"latest": second_folders[1].resolve(),
                                 "latest-tiny-intents": second_folders[0].resolve(),
                                 "latest-tiny-qa": second_folders[1].resolve()}
    for old, new in zip(first_folders, second_folders, strict=True):
        totals = json.loads((new / "run.json").read_text())["totals"]
        assert totals["calls"] == 0 and totals["cache_hits"] == totals["jobs"] > 0
        old_sum = json.loads((old / "summary.json").read_text())
        new_sum = json.loads((new / "summary.json").read_text())
        p = old_sum["primary_metric"]
        assert {v: s["metrics"][p]["mean"] for v, s in new_sum["variants"].items()} == \
            {v: s["metrics"][p]["mean"] for v, s in old_sum["variants"].items()}


def test_fine_tuned_rung_trained_on_demand_and_recorded(two_runs):
    first, _, run_dirs = two_runs
    ft_dir = Path(run_dirs["finetune_dir"])
    for folder, name in zip(_run_folders(first.output), ("tiny-intents", "tiny-qa"),
                            strict=True):
        record = json.loads((ft_dir / f"{name}-local.json").read_text())
        assert (ft_dir / f"{name}-local.pkl").is_file()
        setup = json.loads((folder / "run.json").read_text())["setup"]
        assert setup["fine_tuned_model"] == record["fine_tuned_model"]
        assert setup["fine_tune"]["training_time_s"] == record["training_time_s"] > 0
        assert setup["indexing_time_s"] >= 0
        preds = [json.loads(line) for line in (folder / "predictions.jsonl").open()]
        tuned = {p["model"] for p in preds if p["variant"] in ("fine-tuned", "rag+fine-tuned")}
        assert tuned == {record["fine_tuned_model"]}


def test_rag_beats_prompt_only_on_the_qa_fixture(two_runs):
    """The facts are only in docs/, so retrieval is what lets the local reader answer."""
    first, _, _ = two_runs
    summary = json.loads((_run_folders(first.output)[1] / "summary.json").read_text())
    f1 = {v: s["metrics"]["token_f1"]["mean"] for v, s in summary["variants"].items()}
    assert f1["rag"] > f1["prompt-only"]
    assert summary["variants"]["rag"]["metrics"]["recall_at_k"]["mean"] == 1.0


def test_resume_of_a_finished_run_has_nothing_to_do(two_runs):
    first, _, run_dirs = two_runs
    folder = _run_folders(first.output)[0]
    lines_before = (folder / "predictions.jsonl").read_text()
    result = CliRunner().invoke(main, ["run", "--resume", folder.name, *_args(run_dirs)])
    assert result.exit_code == 0, result.output
    assert "calls made: 0, served from cache: 0, errors: 0" in result.output
    assert f"run folder: {folder}" in result.output
    assert (folder / "predictions.jsonl").read_text() == lines_before


def test_run_usage_errors_exit_2(copy_fixture, run_dirs):
    none = CliRunner().invoke(main, ["run", *_args(run_dirs)])
    assert none.exit_code == 2 and "give at least one test set" in none.output

    root = copy_fixture("tiny-intents")
    bad = CliRunner().invoke(main, ["run", str(root), "--variants", "prompt-only,sorcery",
                                    *_args(run_dirs)])
    assert bad.exit_code == 2 and "unknown variant 'sorcery'" in bad.output

    append_jsonl(root / "test.jsonl", {"id": "te-10", "input": "hello", "expected": "spam"})
    broken = CliRunner().invoke(main, ["run", str(root), *_args(run_dirs)])
    assert broken.exit_code == 2
    assert "test.jsonl:9:" in broken.output and "unknown label 'spam'" in broken.output


def test_resume_refuses_test_sets_and_flags_that_differ_from_the_run(two_runs):
    first, _, run_dirs = two_runs
    folder = _run_folders(first.output)[0]
    fixtures = Path(__file__).parent / "fixtures"
    with_set = CliRunner().invoke(main, ["run", "--resume", folder.name,
                                         str(fixtures / "tiny-qa"), *_args(run_dirs)])
    assert with_set.exit_code == 2 and "give no test sets" in with_set.output
    other = CliRunner().invoke(main, ["run", "--resume", folder.name, "--variants", "rag",
                                      "--provider", "openai", *_args(run_dirs)])
    assert other.exit_code == 2
    assert "--variants, --provider" in other.output and "run.json" in other.output
    same = CliRunner().invoke(main, ["run", "--resume", folder.name, "--variants",
                                     ",".join(LADDER), *_args(run_dirs)])
    assert same.exit_code == 0, same.output


def test_variant_lists_are_trimmed_and_repeats_refused(run_dirs):
    fixtures = Path(__file__).parent / "fixtures"
    twice = CliRunner().invoke(main, ["run", str(fixtures / "tiny-intents"), "--variants",
                                      "rag,rag", *_args(run_dirs)])
    assert twice.exit_code == 2 and "names rag more than once" in twice.output
    spaced = CliRunner().invoke(main, ["run", str(fixtures / "tiny-intents"), "--variants",
                                       "prompt-only, rag", *_args(run_dirs)])
    assert spaced.exit_code == 0, spaced.output
    assert "prompt-only → rag" in spaced.output


def test_local_provider_refuses_openai_flags(run_dirs):
    fixtures = Path(__file__).parent / "fixtures"
    result = CliRunner().invoke(main, ["run", str(fixtures / "tiny-intents"), "--base-url",
                                       "http://127.0.0.1:9/v1", *_args(run_dirs)])
    assert result.exit_code == 2 and "--provider openai" in result.output


def test_a_rung_that_cannot_work_is_one_error_and_leaves_no_run_folder(copy_fixture, run_dirs):
    root = copy_fixture("tiny-intents")
    (root / "train.jsonl").unlink()
    result = CliRunner().invoke(main, ["run", str(root), "--variants", "prompt-only,few-shot",
                                       *_args(run_dirs)])
    assert result.exit_code == 2
    assert "variant 'few-shot' needs a train.jsonl" in result.output  # the pre-flight's words
    assert "train.jsonl" in result.output
    reports = Path(run_dirs["reports_dir"])
    assert not reports.exists() or not [p for p in reports.iterdir() if p.is_dir()]


def test_allow_leakage_reaches_the_fine_tuned_rung(copy_fixture, run_dirs):
    root = copy_fixture("tiny-intents")
    first_test = (root / "test.jsonl").read_text().splitlines()[0]
    append_jsonl(root / "train.jsonl", json.loads(first_test) | {"id": "tr-leak"})
    refused = CliRunner().invoke(main, ["run", str(root), *_args(run_dirs)])
    assert refused.exit_code == 2 and "leak" in refused.output
    allowed = CliRunner().invoke(main, ["run", str(root), "--allow-leakage", *_args(run_dirs)])
    assert allowed.exit_code == 0, allowed.output
    assert "→ fine-tuned: " in allowed.output


def test_run_prints_the_recommendation_and_assumptions_right_after_the_table(two_runs):
    first, _, _ = two_runs
    for folder in _run_folders(first.output):
        summary = json.loads((folder / "summary.json").read_text())
        after = first.output.split(f"run {folder.name}\n", 1)[1].splitlines()
        table_end = 1 + len(summary["ladder"])  # header and one row per variant
        assert after[table_end] == summary["recommendation"]["sentence"]
        assert after[table_end].startswith(f"Ship {summary['recommendation']['variant']}: ")
        assert after[table_end + 1] == summary["economics"]["assumptions_line"]
        assert after[table_end + 1].startswith("assumed: 10,000 queries/month, 12 months, "
                                               "$0.05 per correct answer")
        # money in the table is the report's format, never scientific notation
        table = "\n".join(after[:table_end])
        assert "$0.0000" in table and not re.search(r"\de-\d", table)
