"""Leakage: a planted near-duplicate is caught by find_leaks, `testset check` and `run`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import append_jsonl

from evalkit.cli import main
from evalkit.data.leakage import find_leaks, max_similarity
from evalkit.data.testset import Item, load_testset

# tr-05 is "my account is locked after too many sign in attempts"; this is it lightly edited
NEAR_DUP = "My account is locked after too many sign-in attempts!"


def _run(testset, run_dirs, *flags):
    """`evalkit run` on `testset` with the test's throw-away folders."""
    return CliRunner().invoke(main, [
        "run", str(testset), "--no-progress", "--reports-dir", run_dirs["reports_dir"],
        "--cache-dir", run_dirs["cache_dir"], "--finetune-dir", run_dirs["finetune_dir"],
        *flags])


@pytest.fixture
def leaking_set(copy_fixture):
    root = copy_fixture("tiny-intents")
    append_jsonl(root / "test.jsonl", {"id": "te-09", "input": NEAR_DUP, "expected": "login"})
    return root


def test_clean_fixture_has_no_leaks(intents_dir):
    ts = load_testset(intents_dir)
    assert find_leaks(ts.test, ts.train) == []
    assert max_similarity(ts.test, ts.train) < 0.9


def test_planted_near_duplicate_is_found(leaking_set):
    ts = load_testset(leaking_set)
    leaks = find_leaks(ts.test, ts.train)
    assert [(p.test_id, p.train_id) for p in leaks] == [("te-09", "tr-05")]
    assert 0.9 <= leaks[0].similarity < 1.0
    assert leaks[0].exact is False


def test_threshold_controls_near_duplicates(leaking_set):
    ts = load_testset(leaking_set)
    sim = find_leaks(ts.test, ts.train)[0].similarity
    assert find_leaks(ts.test, ts.train, threshold=sim + 0.01) == []
    assert find_leaks(ts.test, ts.train, threshold=sim - 0.01)[0].test_id == "te-09"


def test_exact_duplicate_after_case_and_space_folding():
    test = (Item("t1", "  Reset   my PASSWORD please ", "login"),
            Item("t2", "export everything to csv", "export"))
    train = (Item("r1", "reset my password please", "login"),
             Item("r2", "the page crashes on save", "bug"))
    leaks = find_leaks(test, train)
    assert [(p.test_id, p.train_id, p.exact) for p in leaks] == [("t1", "r1", True)]
    assert leaks[0].similarity == pytest.approx(1.0)


def test_pairs_are_sorted_most_similar_first():
    train = (Item("r1", "cancel my subscription today", "x"),
             Item("r2", "where do I change my billing address", "x"))
    test = (Item("t1", "Where do I change my billing address?", "x"),   # punctuation only
            Item("t2", "cancel my subscription today", "x"))             # exact
    leaks = find_leaks(test, train)
    assert [(p.test_id, p.train_id) for p in leaks] == [("t2", "r1"), ("t1", "r2")]
    assert leaks[0].similarity >= leaks[1].similarity


def test_empty_split_has_no_leaks():
    assert find_leaks((Item("t", "a b c", "x"),), ()) == []
    assert max_similarity((), (Item("t", "a b c", "x"),)) == 0.0


def test_testset_check_exits_1_and_lists_the_pair(leaking_set):
    result = CliRunner().invoke(main, ["testset", "check", str(leaking_set)])
    assert result.exit_code == 1, result.output
    assert "leak: te-09 ~ tr-05 cosine 0.9" in result.output
    assert "leakage: 1 test item leaks into train (1 pair) at cosine >= 0.9" in result.output
    assert "refused (leakage)" in result.output


def test_testset_check_passes_clean_fixture(intents_dir):
    result = CliRunner().invoke(main, ["testset", "check", str(intents_dir)])
    assert result.exit_code == 0, result.output
    assert "tiny-intents: classification, 8 test, 12 train, 4 docs" in result.output
    assert "leak:" not in result.output
    assert result.output.strip().endswith(
        "on tiny-intents: no leakage; every label in the test split and in train; every doc id "
        "resolves")


def test_testset_check_reports_label_missing_from_a_split(copy_fixture):
    root = copy_fixture("tiny-intents")
    lines = (root / "test.jsonl").read_text().splitlines()
    (root / "test.jsonl").write_text("\n".join(ln for ln in lines if '"bug"' not in ln) + "\n")
    result = CliRunner().invoke(main, ["testset", "check", str(root)])
    assert result.exit_code == 0, result.output  # run would start: a warning, not a refusal
    assert "warning: labels with no test items: bug" in result.output
    assert "every label in the test split" not in result.output


def test_testset_check_bad_set_exits_2_with_location(copy_fixture):
    root = copy_fixture("tiny-intents")
    append_jsonl(root / "test.jsonl", {"id": "te-01", "input": "dup", "expected": "bug"})
    result = CliRunner().invoke(main, ["testset", "check", str(root)])
    assert result.exit_code == 2
    assert "test.jsonl:9:" in result.output and "duplicate id" in result.output


def test_run_refuses_leaking_set_and_lists_pairs(leaking_set, run_dirs, tmp_path):
    refused = _run(leaking_set, run_dirs, "--variants", "prompt-only")
    assert refused.exit_code == 2
    assert "te-09 ~ tr-05" in refused.output
    assert "--allow-leakage" in refused.output
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())

    allowed = _run(leaking_set, run_dirs, "--variants", "prompt-only", "--allow-leakage")
    assert allowed.exit_code == 0, allowed.output
    assert "run folder:" in allowed.output
    assert "calls made: 9" in allowed.output


def test_a_run_let_through_with_leakage_says_so_beside_its_verdicts(leaking_set, run_dirs):
    """--allow-leakage used to leave no trace in run.json, summary.json or the report: a
    few-shot win on leaking items read as a win on unseen ones."""
    import json

    reports = Path(run_dirs["reports_dir"])
    result = _run(leaking_set, run_dirs, "--variants", "prompt-only,few-shot",
                  "--allow-leakage")
    assert result.exit_code == 0, result.output
    said = ("leakage allowed (--allow-leakage): 1 of the 9 test items leak into train (1 pair "
            "at cosine >= 0.9)")
    assert f"warning: {said}" in result.output
    run = json.loads((reports / "latest" / "run.json").read_text())
    assert run["setup"]["leakage"]["item_ids"] == ["te-09"]
    summary = json.loads((reports / "latest" / "summary.json").read_text())
    assert summary["leakage"]["test_items"] == 1 and summary["leakage"]["of"] == 9
    assert f"Caution: {said}" in summary["recommendation"]["sentence"]
    html = (reports / "latest" / "index.html").read_text()
    assert said.replace(">", "&gt;") in html


def test_blocks_find_the_same_pairs_as_one_matrix(intents_dir):
    """Splitting the test rows into blocks (for memory) changes no pair and no similarity."""
    from evalkit.data import leakage

    ts = load_testset(intents_dir)
    train = (*ts.train, ts.test[3], ts.test[6])  # two exact leaks, in different blocks
    whole = find_leaks(ts.test, train, threshold=0.3)
    original = leakage._similarity_blocks
    try:
        leakage._similarity_blocks = lambda a, b: original(a, b, max_cells=len(b) * 3)
        blocked = find_leaks(ts.test, train, threshold=0.3)
    finally:
        leakage._similarity_blocks = original
    assert blocked == whole
    assert {(p.test_id, p.exact) for p in whole if p.exact} == {("te-04", True), ("te-07", True)}


def _scans(monkeypatch) -> list[int]:
    """Count the real scans made through the pre-flight (the memo's misses)."""
    from evalkit.data import leakage
    from evalkit.pipeline import preflight

    scans: list[int] = []
    real = leakage.find_leaks
    monkeypatch.setattr(preflight, "find_leaks", lambda *a, **k: scans.append(1) or real(*a, **k))
    return scans


def test_a_remembered_scan_is_the_scan_and_is_keyed_by_what_it_depends_on(leaking_set, tmp_path,
                                                                          monkeypatch):
    from dataclasses import replace

    from evalkit.pipeline.preflight import leakage_refusal

    scans = _scans(monkeypatch)
    memo = tmp_path / "cache" / "leakage"
    ts = load_testset(leaking_set)
    first, refusal = leakage_refusal(ts, threshold=0.9, allow=False, memo_dir=memo)
    assert scans == [1] and len(list(memo.iterdir())) == 1 and refusal is not None
    again, refusal_again = leakage_refusal(ts, threshold=0.9, allow=False, memo_dir=memo)
    assert scans == [1], "the same items at the same threshold were scanned again"
    assert again == first == find_leaks(ts.test, ts.train)  # exact floats, exact flags
    assert refusal_again.message == refusal.message
    # another threshold, another input, another id, one item fewer: each is a new scan
    leakage_refusal(ts, threshold=0.95, allow=False, memo_dir=memo)
    edited = (*ts.test[:-1], replace(ts.test[-1], input=ts.test[-1].input + " today"))
    leakage_refusal(replace(ts, test=edited), threshold=0.9, allow=False, memo_dir=memo)
    renamed = (*ts.test[:-1], replace(ts.test[-1], id="te-10"))
    leakage_refusal(replace(ts, test=renamed), threshold=0.9, allow=False, memo_dir=memo)
    leakage_refusal(replace(ts, train=ts.train[:-1]), threshold=0.9, allow=False, memo_dir=memo)
    assert scans == [1] * 5 and len(list(memo.iterdir())) == 5
    assert leakage_refusal(replace(ts, test=renamed), threshold=0.9, allow=False,
                           memo_dir=memo)[0][0].test_id == "te-10"
    assert scans == [1] * 5
    # without a memo folder nothing is remembered
    leakage_refusal(ts, threshold=0.9, allow=False)
    assert scans == [1] * 6


def test_a_damaged_memo_is_a_miss_and_is_rewritten(leaking_set, tmp_path, monkeypatch):
    from evalkit.pipeline.preflight import leakage_refusal

    scans = _scans(monkeypatch)
    memo = tmp_path / "leakage"
    ts = load_testset(leaking_set)
    leaks, _ = leakage_refusal(ts, threshold=0.9, allow=False, memo_dir=memo)
    (path,) = memo.iterdir()
    for damage in ("", "{not json", '{"format": "other", "pairs": []}', '{"pairs": [[1]]}',
                   '{"format": "evalkit-leakage-memo/1", "pairs": [["a", "b"]]}'):
        path.write_text(damage)
        assert leakage_refusal(ts, threshold=0.9, allow=False, memo_dir=memo)[0] == leaks
    assert scans == [1] * 6
    assert leakage_refusal(ts, threshold=0.9, allow=False, memo_dir=memo)[0] == leaks
    assert scans == [1] * 6  # the last rescan wrote it back whole


def test_the_memo_key_covers_the_scan_code_and_libraries(leaking_set, tmp_path, monkeypatch):
    from importlib import metadata

    from evalkit.data import leakage

    ts = load_testset(leaking_set)
    key = leakage.memo_path(tmp_path, ts.test, ts.train, threshold=0.9)
    assert key == leakage.memo_path(tmp_path, ts.test, ts.train, threshold=0.9)
    edited = tmp_path / "text.py"
    edited.write_text(leakage._SCAN_CODE[1].read_text() + "\n# edited\n")
    monkeypatch.setattr(leakage, "_SCAN_CODE", (leakage._SCAN_CODE[0], edited))
    assert leakage.memo_path(tmp_path, ts.test, ts.train, threshold=0.9) != key
    monkeypatch.undo()
    real = metadata.version
    monkeypatch.setattr(metadata, "version",
                        lambda d: "0.0-other" if d == "scikit-learn" else real(d))
    assert leakage.memo_path(tmp_path, ts.test, ts.train, threshold=0.9) != key


def test_testset_check_then_run_scans_once(leaking_set, tmp_path, monkeypatch):
    """The user's order: `testset check` scans and remembers; `run` with the same cache
    folder reads it back (and still refuses the leak, and still runs with --allow-leakage)."""
    scans = _scans(monkeypatch)
    cache = str(tmp_path / "cache")
    check = CliRunner().invoke(main, ["testset", "check", str(leaking_set), "--cache-dir", cache])
    assert check.exit_code == 1 and "te-09 ~ tr-05" in check.output and scans == [1]
    args = ["run", str(leaking_set), "--variants", "prompt-only", "--no-progress",
            "--no-report", "--cache-dir", cache, "--reports-dir", str(tmp_path / "reports")]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "te-09 ~ tr-05" in refused.output
    allowed = CliRunner().invoke(main, [*args, "--allow-leakage"])
    assert allowed.exit_code == 0, allowed.output
    assert scans == [1]


def test_no_memo_when_the_scan_code_cannot_be_read(leaking_set, tmp_path, monkeypatch):
    """A zipped install cannot hash the scan's source: then every check scans, none is kept."""
    from evalkit.data import leakage
    from evalkit.pipeline.preflight import leakage_refusal

    scans = _scans(monkeypatch)
    monkeypatch.setattr(leakage, "_SCAN_CODE", (tmp_path / "missing.py",))
    ts = load_testset(leaking_set)
    for _ in range(2):
        leaks, _refusal = leakage_refusal(ts, threshold=0.9, allow=False,
                                          memo_dir=tmp_path / "leakage")
        assert [(p.test_id, p.train_id) for p in leaks] == [("te-09", "tr-05")]
    assert scans == [1, 1] and not (tmp_path / "leakage").exists()


def test_labels_train_never_shows_are_warned_of_on_the_console_summary_and_report(
        copy_fixture, run_dirs):
    """Test items whose label no train item has: few-shot and fine-tuned cannot give it, so
    their loss against prompt-only is partly the split's; the run said nothing of it."""
    import json

    root = copy_fixture("tiny-intents")
    lines = (root / "train.jsonl").read_text().splitlines()
    (root / "train.jsonl").write_text("\n".join(ln for ln in lines if '"bug"' not in ln) + "\n")
    reports = Path(run_dirs["reports_dir"])
    result = _run(root, run_dirs, "--variants", "prompt-only,few-shot")
    assert result.exit_code == 0, result.output
    said = ("2 of the 8 test items have a label the train split never shows (bug: 2); "
            "few-shot cannot learn it from train")
    assert f"warning: {said}" in result.output
    summary = json.loads((reports / "latest" / "summary.json").read_text())
    assert said in summary["notes"]
    assert f"<li>{said}</li>" in (reports / "latest" / "index.html").read_text()


def _weights_set(root: Path) -> Path:
    """A pair whose cosine is 0.83 under the whole set's TF-IDF weights (the test set says
    the words of its first item thirty times more) and 0.96 under the first five items'."""
    import json

    root.mkdir()
    (root / "task.yaml").write_text("name: w\ntype: classification\ninstructions: Classify.\n"
                                    "labels: {declined: a declined card, other: anything else}\n")
    base = "hello my card payment was declined"
    test = ([(base, "declined")] + [(f"zz{i} qq{i}", "other") for i in range(1, 5)]
            + [(f"{base} again {i}", "declined") for i in range(30)])
    train = [(f"{base} - thanks", "declined")] + [(f"thanks for item {i}", "other")
                                                  for i in range(1, 40)]
    for name, rows in (("test.jsonl", test), ("train.jsonl", train)):
        (root / name).write_text("".join(json.dumps({"id": f"{name[:2]}{i}", "input": text,
                                                     "expected": label}) + "\n"
                                         for i, (text, label) in enumerate(rows)))
    return root


def test_a_subset_run_sees_the_pairs_the_whole_sets_check_sees(tmp_path, run_dirs):
    """`testset check` passed and `run --limit 5` refused the same set: the scan of the
    five items alone fitted other TF-IDF weights, and a pair crossed the threshold. The scan
    is now the whole set's, cut to the items kept, so a subset never refuses (or passes)
    what the whole set's check does not."""
    ts = _weights_set(tmp_path / "w")
    whole = load_testset(ts)
    five = tuple(whole.test[:5])
    assert find_leaks(five, whole.train) and not find_leaks(whole.test, whole.train)
    check = CliRunner().invoke(main, ["testset", "check", str(ts), "--variants", "prompt-only"])
    assert check.exit_code == 0, check.output
    run = CliRunner().invoke(main, ["run", str(ts), "--variants", "prompt-only", "--limit", "5",
                                    "--no-progress", "--no-report",
                                    *[a for k, v in run_dirs.items()
                                      for a in (f"--{k.replace('_', '-')}", v)]])
    assert run.exit_code == 0, run.output
    assert "leakage check of 5 test x 40 train items: none" in run.output
