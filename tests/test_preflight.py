"""Pre-flight: `testset check` exits non-zero exactly when `run` (same options) would refuse,
reports each refusal cheap-first, and counts leakage as items and pairs."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import append_jsonl, write_jsonl

from evalkit.cli import main
from evalkit.data import leakage
from evalkit.pipeline import preflight


def _strip_docs(root: Path) -> None:
    """No docs/ corpus (and no gold doc ids pointing into it)."""
    shutil.rmtree(root / "docs")
    for name in ("test.jsonl", "train.jsonl"):
        rows = [json.loads(x) for x in (root / name).read_text().splitlines() if x.strip()]
        write_jsonl(root / name, [{k: v for k, v in r.items() if k != "doc_ids"} for r in rows])


def _no_train(root: Path) -> None:
    (root / "train.jsonl").unlink()


def _leak(root: Path) -> None:
    first = json.loads((root / "test.jsonl").read_text().splitlines()[0])
    append_jsonl(root / "train.jsonl", first | {"id": "tr-leak"})


def _bad_economics(root: Path) -> list[str]:
    cfg = root.parent / "exp.yaml"
    cfg.write_text("economics:\n  variants:\n    finetuned:\n      hours: {labelling: 40}\n")
    return ["--config", str(cfg)]


# (name, how the set is damaged -> extra flags, variants, the refusal check expected or None)
CASES = [
    ("clean", None, "prompt-only,few-shot,rag,fine-tuned", None),
    ("rag without docs/", _strip_docs, "prompt-only,rag", "docs"),
    ("few-shot without train", _no_train, "prompt-only,few-shot", "train"),
    ("local fine-tune without train", _no_train, "prompt-only,fine-tuned", "fine-tune"),
    ("unknown variant", None, "prompt-only,retrieval", "variant"),
    ("unknown provider", None, "prompt-only --provider nope", "provider"),
    ("economics naming no rung", _bad_economics, "prompt-only,few-shot", "config"),
    ("leakage", _leak, "prompt-only,few-shot", "leakage"),
    ("leakage allowed", _leak, "prompt-only,few-shot --allow-leakage", None),
]


@pytest.mark.parametrize("name,damage,variants,refusal", CASES, ids=[c[0] for c in CASES])
def test_check_exits_nonzero_exactly_when_run_refuses(copy_fixture, run_dirs, name, damage,
                                                      variants, refusal):
    root = copy_fixture("tiny-intents")
    extra = (damage(root) or []) if damage else []
    ladder, *flags = variants.split()
    opts = ["--variants", ladder, "--finetune-dir", run_dirs["finetune_dir"], *flags, *extra]
    check = CliRunner().invoke(main, ["testset", "check", str(root), *opts])
    run = CliRunner().invoke(main, ["run", str(root), "--no-progress", "--no-report",
                                    "--reports-dir", run_dirs["reports_dir"],
                                    "--cache-dir", run_dirs["cache_dir"], *opts])
    assert (check.exit_code != 0) == (run.exit_code != 0), (check.output, run.output)
    if refusal is None:
        assert check.exit_code == 0 and run.exit_code == 0, (check.output, run.output)
        assert "ok: `evalkit run` would start" in check.output
    else:
        assert check.exit_code == 1 and run.exit_code == 2, (check.output, run.output)
        assert f"refused ({refusal})" in check.output
        assert "run would refuse: 1 problem(s) above" in check.output


def test_openai_fine_tuned_rung_without_a_record_is_refused(intents_dir, run_dirs):
    """No call is needed to know: the record the run would read does not exist."""
    opts = ["--variants", "prompt-only,fine-tuned", "--provider", "openai",
            "--finetune-dir", run_dirs["finetune_dir"]]
    check = CliRunner().invoke(main, ["testset", "check", str(intents_dir), *opts])
    assert check.exit_code == 1
    assert "refused (fine-tune): variant 'fine-tuned':" in check.output
    assert "tiny-intents-openai.json: no fine-tuned model recorded" in check.output


def test_cheap_refusals_come_first_and_the_leakage_scan_waits(copy_fixture, monkeypatch):
    root = copy_fixture("tiny-intents")
    _leak(root)
    _strip_docs(root)
    scans = []
    real = leakage.find_leaks
    monkeypatch.setattr(preflight, "find_leaks", lambda *a, **k: scans.append(1) or real(*a, **k))
    cache = ["--cache-dir", str(root.parent / "cache")]  # no scan remembered from elsewhere
    result = CliRunner().invoke(main, ["testset", "check", str(root), *cache])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    refused = [i for i, line in enumerate(lines) if line.startswith("refused (")]
    assert [lines[i].split(")")[0] for i in refused] == ["refused (docs", "refused (docs"]
    assert ("leakage and detectable difference: not computed until the refusals above are "
            "fixed") in result.output
    assert scans == []
    anyway = CliRunner().invoke(main, ["testset", "check", str(root), "--scan-anyway", *cache])
    assert anyway.exit_code == 1 and scans == [1]
    assert "refused (leakage)" in anyway.output
    assert "run would refuse: 3 problem(s) above" in anyway.output


def test_leakage_counts_items_and_pairs_and_show_all_lists_every_pair(copy_fixture):
    """One test item copied into train 25 times: 1 item, 25 pairs; 20 listed, all on demand."""
    root = copy_fixture("tiny-intents")
    first = json.loads((root / "test.jsonl").read_text().splitlines()[0])
    for i in range(25):
        append_jsonl(root / "train.jsonl", first | {"id": f"tr-copy-{i:02d}"})
    result = CliRunner().invoke(main, ["testset", "check", str(root)])
    assert result.exit_code == 1
    assert "leakage: 1 test item leaks into train (25 pairs)" in result.output
    assert result.output.count("\nleak: ") == 20 and "5 more pairs with --show-all" in result.output
    every = CliRunner().invoke(main, ["testset", "check", str(root), "--show-all"])
    assert every.output.count("\nleak: ") == 25 and "more pairs" not in every.output
    run = CliRunner().invoke(main, ["run", str(root), "--no-progress", "--no-report",
                                    "--variants", "prompt-only"])
    assert run.exit_code == 2 and "1 test item leaks into train (25 pairs)" in run.output


def test_qa_set_without_train_does_not_claim_label_balance(copy_fixture):
    root = copy_fixture("tiny-qa")
    _no_train(root)
    result = CliRunner().invoke(main, ["testset", "check", str(root), "--variants",
                                       "prompt-only,rag"])
    assert result.exit_code == 0, result.output
    assert "label" not in result.output
    assert result.output.strip().endswith("no leakage; every doc id resolves")


def test_detectable_difference_line(intents_dir):
    result = CliRunner().invoke(main, ["testset", "check", str(intents_dir)])
    # 8 items: statsmodels TTestPower().solve_power(nobs=8, alpha=0.05, power=0.8) = 1.1560;
    # with 20 % of items changing, delta = 1.1560 * sqrt(0.2 / (1 + 1.1560^2)) = 0.338 > 0.2:
    # impossible, since a step of all 20 pts (every changed item one way) is only 0.5 sd
    # (0.2 / sqrt(0.2 - 0.04)), so no step is detectable: the line said "about 33.8 pts",
    # more than can move
    assert "detectable difference at 80% power: 1.156 sd of the paired differences with 8 " \
           "test items, none in points of accuracy when 20% of the items change between two " \
           "rungs (at most 20 pts can move, too small a step for 8 items)" in result.output


def test_missing_docs_on_10000_rows_is_reported_in_under_2_s(tmp_path):
    root = tmp_path / "big"
    root.mkdir()
    (root / "task.yaml").write_text("name: big\ntype: classification\ninstructions: Classify.\n"
                                    "labels: {a: first kind, b: second kind}\n")
    write_jsonl(root / "test.jsonl", [{"id": f"t{i}", "input": f"message number {i} about "
                                       f"thing {i % 97}", "expected": "ab"[i % 2]}
                                      for i in range(10_000)])
    write_jsonl(root / "train.jsonl", [{"id": f"r{i}", "input": f"another text {i} on "
                                        f"topic {i % 89}", "expected": "ab"[i % 2]}
                                       for i in range(10_000)])
    # CPU time, not wall time: eight helpers share two cores, and the claim is about the work
    start = time.process_time()
    result = CliRunner().invoke(main, ["testset", "check", str(root)])
    elapsed = time.process_time() - start
    assert result.exit_code == 1 and "refused (docs)" in result.output
    assert elapsed < 2.0, f"{elapsed:.2f}s"


@pytest.mark.parametrize("n", [2, 3, 8, 30, 392, 10_000])
def test_detectable_effect_matches_statsmodels(n):
    from statsmodels.stats.power import TTestPower

    from evalkit.analysis.stats import detectable_effect
    want = TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8)
    assert detectable_effect(n) == pytest.approx(want, rel=1e-5)


def test_estimate_resolves_the_provider_as_run_does(intents_dir):
    """Same default (local), same refusal of server flags for it: an estimate describes the
    run the same flags would start."""
    from evalkit.cli.estimate import estimate
    from evalkit.cli.run import run
    from evalkit.cli.testset import testset_check

    def default(cmd):
        return next(p.default for p in cmd.params if p.name == "provider")
    assert default(estimate) == default(run) == default(testset_check) == "local"
    plain = CliRunner().invoke(main, ["estimate", str(intents_dir)])
    assert plain.exit_code == 0, plain.output
    assert "estimate for provider local" in plain.output and "pays nothing" in plain.output
    for cmd in ("estimate", "run"):
        flagged = CliRunner().invoke(main, [cmd, str(intents_dir), "--model", "gpt-4o-mini"])
        assert flagged.exit_code == 2
        assert "--base-url and --model are for a server-backed provider" in flagged.output


def test_a_refusing_check_loads_no_sklearn_scipy_or_pandas(copy_fixture):
    """Cheap first, in a fresh process too: a set `run` would refuse for a missing docs/ is
    told so without importing scikit-learn, scipy.stats or pandas (seconds of start-up on a
    busy machine); the leakage scan and the power figures wait until it would run."""
    import subprocess
    import sys

    root = copy_fixture("tiny-intents")
    _strip_docs(root)
    probe = ("import sys\nsys.argv = ['evalkit', 'testset', 'check', sys.argv[1]]\n"
             "from evalkit.cli import main\n"
             "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
             "print(code, [m for m in ('sklearn', 'scipy.stats', 'pandas') "
             "if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", probe, str(root)], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[-1]
    assert out == "1 []"
