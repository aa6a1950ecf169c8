"""Nothing derived from data or flags writes outside --reports-dir / --finetune-dir (issue 12.3).

The attack seen: a task.yaml `name: x/../../../trav-escape` put the run folder and a `latest`
symlink outside --reports-dir, after every call was paid. Each way in is refused before any
call or write, naming what was refused.
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from evalkit.cli import main
from evalkit.data.testset import TestsetError, load_task
from evalkit.paths import PathEscape, check_name, inside, is_safe_name
from evalkit.strategies import finetune as ft

TRAVERSAL = "x/../../../trav-escape"


@pytest.mark.parametrize("name", ["support-intents", "a.b_c-1", "Q3"])
def test_plain_names_are_safe(name):
    assert is_safe_name(name) and check_name(name, what="x") == name


@pytest.mark.parametrize("name", [TRAVERSAL, "..", "a/b", "a\\b", "/abs", ".hidden", "a..b",
                                  "", "x" * 121, "tab\there", ["a", "b"], None, "-flag"])
def test_names_that_could_leave_a_folder_are_refused(name):
    assert not is_safe_name(name)
    with pytest.raises(PathEscape, match="must be a plain name"):
        check_name(name, what="test set name")


def test_inside_follows_symlinks(tmp_path):
    root, outside = tmp_path / "reports", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    assert inside(root, root / "run-1", what="run folder") == root / "run-1"
    with pytest.raises(PathEscape, match="outside"):
        inside(root, root / "link" / "run-1", what="run folder")
    with pytest.raises(PathEscape):
        inside(root, root / ".." / "run-1", what="run folder")


def test_a_traversal_task_name_is_refused_at_load_with_file_line_field(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text(f"type: qa\nname: {TRAVERSAL}\ninstructions: answer\n")
    with pytest.raises(TestsetError) as err:
        load_task(path)
    assert err.value.line == 2 and err.value.field == "name"
    assert f"{path}:2:" in str(err.value) and "plain name" in str(err.value)


def test_run_with_a_traversal_name_writes_nothing_anywhere(copy_fixture, tmp_path):
    root = copy_fixture("tiny-intents")
    text = (root / "task.yaml").read_text()
    (root / "task.yaml").write_text(text.replace("name: tiny-intents", f"name: {TRAVERSAL}"))
    reports = tmp_path / "deep" / "a" / "b" / "reports"
    before = set(tmp_path.rglob("*"))
    result = CliRunner().invoke(main, ["run", str(root), "--no-progress", "--reports-dir",
                                       str(reports), "--cache-dir", str(tmp_path / "c"),
                                       "--finetune-dir", str(tmp_path / "ft")])
    assert result.exit_code != 0 and "plain name" in result.output
    assert "task.yaml:" in result.output and "field 'name'" in result.output
    assert set(tmp_path.rglob("*")) == before  # no run folder, no latest link, no cache
    assert not (tmp_path / "deep" / "trav-escape").exists()


def test_resume_with_a_path_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["run", "--resume", "../../etc", "--reports-dir",
                                       str(tmp_path / "reports")])
    assert result.exit_code != 0 and "a run id is one folder name" in result.output


@pytest.mark.parametrize("name", ["../escape", "a/b", ".."])
def test_fine_tune_names_cannot_leave_the_fine_tune_folder(tmp_path, name):
    with pytest.raises(PathEscape, match="fine-tune name"):
        ft.record_path(tmp_path / "ft", name)
    with pytest.raises(PathEscape):
        ft.load_local_model(tmp_path / "ft", f"{ft.LOCAL_MODEL_PREFIX}{name}")
    assert not (tmp_path / "escape").exists()
