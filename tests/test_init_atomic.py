"""`evalkit init` writes all or nothing: a failure part-way (its own load check refusing the
folder, a disk error, Ctrl-C) left a half-written folder the next init would not overwrite
without --force, and with --force could leave an old set half-replaced."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_jsonl

from evalkit.cli import main
from evalkit.data import scaffold
from evalkit.data.testset import TestsetError


def _source(tmp_path: Path) -> Path:
    rng = random.Random(5)
    rows = [{"text": " ".join("".join(rng.choice("abcdefghij") for _ in range(6))
                              for _ in range(8)) + f" {label}", "label": label}
            for label in ("billing", "refund", "login") for _ in range(10)]
    return write_jsonl(tmp_path / "tickets.jsonl", rows)


def _refuse_once(monkeypatch) -> list[Path]:
    """The post-write load check refuses the first folder it is given, naming a file in it."""
    seen: list[Path] = []
    real = scaffold.load_testset

    def load(path):
        seen.append(Path(path))
        if len(seen) == 1:
            raise TestsetError(Path(path) / "test.jsonl", "refused for the test", line=1,
                               field="input")
        return real(path)
    monkeypatch.setattr(scaffold, "load_testset", load)
    return seen


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_refused_load_check_leaves_nothing_and_the_next_init_needs_no_force(
        tmp_path, monkeypatch):
    source, out = _source(tmp_path), tmp_path / "sets" / "tickets"
    seen = _refuse_once(monkeypatch)
    result = CliRunner().invoke(main, ["init", str(source), str(out), "--yes"])
    assert result.exit_code != 0
    assert seen[0] != out and seen[0].parent == out.parent  # checked in a temporary sibling
    # the message names the folder asked for, not the temporary one
    assert f"{out / 'test.jsonl'}:1: field 'input': refused for the test" in result.output
    assert seen[0].name not in result.output
    assert not out.exists() and not (tmp_path / "sets").exists()  # nor the parent it made
    ok = CliRunner().invoke(main, ["init", str(source), str(out), "--yes"])
    assert ok.exit_code == 0, ok.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["tickets"]  # no temp dir left
    assert {"task.yaml", "test.jsonl", "train.jsonl", "README.md"} <= set(_snapshot(out))


def test_with_force_a_failure_leaves_the_old_folder_intact(tmp_path, monkeypatch):
    source, out = _source(tmp_path), tmp_path / "sets" / "tickets"
    assert CliRunner().invoke(main, ["init", str(source), str(out), "--yes"]).exit_code == 0
    (out / "NOTES.md").write_text("mine\n", encoding="utf-8")
    (out / "task.yaml").write_text((out / "task.yaml").read_text() + "# edited\n")
    before = _snapshot(out)
    _refuse_once(monkeypatch)
    result = CliRunner().invoke(main, ["init", str(source), str(out), "--yes", "--force"])
    assert result.exit_code != 0 and "refused for the test" in result.output
    assert _snapshot(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["tickets"]


def test_with_force_a_success_replaces_the_folder_keeping_files_init_does_not_write(
        tmp_path):
    source, out = _source(tmp_path), tmp_path / "sets" / "tickets"
    assert CliRunner().invoke(main, ["init", str(source), str(out), "--yes"]).exit_code == 0
    (out / "NOTES.md").write_text("mine\n", encoding="utf-8")
    (out / "task.yaml").write_text("# broken\n")
    ok = CliRunner().invoke(main, ["init", str(source), str(out), "--yes", "--force"])
    assert ok.exit_code == 0, ok.output
    assert "name: tickets" in (out / "task.yaml").read_text()
    assert (out / "NOTES.md").read_text() == "mine\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["tickets"]


def test_a_failed_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    """The new folder cannot be renamed in after the old one was moved aside: the old one
    is moved back, not lost."""
    source, out = _source(tmp_path), tmp_path / "sets" / "tickets"
    assert CliRunner().invoke(main, ["init", str(source), str(out), "--yes"]).exit_code == 0
    before = _snapshot(out)
    real = scaffold.os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".tickets.init-"):
            raise OSError(28, "No space left on device")
        return real(src, dst)
    monkeypatch.setattr(scaffold.os, "rename", rename)
    with pytest.raises(OSError, match="No space left"):
        scaffold.write_testset(scaffold.draft(source), out, force=True)
    assert _snapshot(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["tickets"]


def test_an_interrupt_while_writing_leaves_nothing(tmp_path, monkeypatch):
    source, out = _source(tmp_path), tmp_path / "tickets"
    d = scaffold.draft(source)

    def interrupted(items, path):
        path.write_text('{"id": "half', encoding="utf-8")
        raise KeyboardInterrupt
    monkeypatch.setattr(scaffold.importers, "write_jsonl", interrupted)
    with pytest.raises(KeyboardInterrupt):
        scaffold.write_testset(d, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tickets.jsonl"]


def test_a_folder_that_cannot_be_made_is_one_error_naming_it_not_a_traceback(tmp_path):
    """A disk error while writing (here: the output's parent is a file, so no folder can be
    made in it; as root, permissions would not stop the test) is reported in one line naming
    the path, exit 2, with nothing left behind."""
    source = _source(tmp_path)
    (tmp_path / "taken").write_text("a file, not a folder\n")
    out = tmp_path / "taken" / "tickets"
    result = CliRunner().invoke(main, ["init", str(source), str(out), "--yes"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback: a clean exit
    assert f"cannot write {out}: " in result.output and "nothing was written" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "taken").read_text() == "a file, not a folder\n"


def test_the_written_set_has_the_mode_a_mkdir_gives_not_mkdtemps(tmp_path):
    """init builds the set in a mkdtemp folder (private, 0700) and renames it in: a CI
    account or a colleague could not read it. It now gets the umask's mode, or, written over
    an existing set, the mode that set had."""
    import os
    import stat

    source, out = _source(tmp_path), tmp_path / "tickets"
    old = os.umask(0o022)
    try:
        assert CliRunner().invoke(main, ["init", str(source), str(out), "--yes"]).exit_code == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
        out.chmod(0o750)
        again = CliRunner().invoke(main, ["init", str(source), str(out), "--yes", "--force"])
        assert again.exit_code == 0, again.output
        assert stat.S_IMODE(out.stat().st_mode) == 0o750
    finally:
        os.umask(old)


def _qa_rows(tmp_path: Path, doc_ids: list[str]) -> Path:
    return write_jsonl(tmp_path / "qa.jsonl", [
        {"id": f"q{i}", "question": f"what is fact {i}?", "answers": [f"fact {i}"],
         "doc_ids": [doc_ids[i % len(doc_ids)]]} for i in range(12)])


def test_docs_sharing_a_name_are_refused_not_written_one_over_the_other(tmp_path):
    """eiffel.md and eiffel.txt both had the id 'eiffel': init said '5 docs', wrote both to
    docs/eiffel.md (the second over the first: a gold document lost) and the loader took
    both. Now one error names both files, and nothing is written."""
    docs = tmp_path / "mydocs"
    docs.mkdir()
    (docs / "eiffel.md").write_text("The Eiffel Tower is in Paris. fact 0 fact 2")
    (docs / "eiffel.txt").write_text("Tokyo Tower trivia. fact 1")
    out = tmp_path / "qa"
    result = CliRunner().invoke(main, ["init", str(_qa_rows(tmp_path, ["eiffel"])), str(out),
                                       "--docs", str(docs), "--yes"])
    assert result.exit_code != 0 and not out.exists()
    assert f"{docs / 'eiffel.txt'}: a second document with the id 'eiffel'" in result.output
    assert "eiffel.md" in result.output


def test_docs_init_cannot_read_are_said_and_empty_ones_named_where_they_are(tmp_path):
    """Upper-case suffixes are read; .html files and subfolders, which are not, are listed
    (they were dropped without a word); every empty document is named in the user's folder
    (the error named docs/blank.md in the set, a file that never existed)."""
    docs = tmp_path / "mydocs"
    (docs / "sub").mkdir(parents=True)
    (docs / "ROME.MD").write_text("Rome is in Italy. fact 0")
    (docs / "tokyo.txt").write_text("Tokyo is in Japan. fact 1")
    (docs / "page.html").write_text("<p>fact 2</p>")
    (docs / "sub" / "nested.md").write_text("fact 3")
    d = scaffold.draft(_qa_rows(tmp_path, ["ROME", "tokyo"]), docs_dir=docs)
    assert sorted(doc_id for doc_id, _ in d.docs) == ["ROME", "tokyo"]
    assert "skipped" in d.summary() and "page.html, sub/" in d.summary()
    (docs / "blank.txt").write_text("   \n\n")
    (docs / "empty.md").write_text("")
    with pytest.raises(TestsetError) as info:
        scaffold.draft(_qa_rows(tmp_path, ["ROME", "tokyo"]), docs_dir=docs)
    assert str(info.value).startswith(f"{docs / 'blank.txt'}: document is empty; also empty.md")
