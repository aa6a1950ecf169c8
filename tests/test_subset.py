"""Subsets (issue 15.7): --limit N, --sample N --seed S, recorded and refused by the gate."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from openai_server import read_jsonl

from evalkit.cli import main
from evalkit.data.subset import SubsetSpec, _allocate, apply, choose
from evalkit.data.testset import Item, load_testset

FIXTURES = Path(__file__).parent / "fixtures"


def _items(labels: str) -> tuple[Item, ...]:
    return tuple(Item(f"i{n}", f"text {n}", label) for n, label in enumerate(labels))


def test_limit_takes_the_first_items_in_file_order():
    items = _items("aabbbcccc")
    assert [it.id for it in choose(items, SubsetSpec("limit", 4), labelled=True)] == \
        ["i0", "i1", "i2", "i3"]
    assert choose(items, SubsetSpec("limit", 50), labelled=True) == items


def test_sample_is_stratified_seeded_and_keeps_file_order():
    items = _items("a" * 10 + "b" * 30 + "c" * 60)
    one = choose(items, SubsetSpec("sample", 20, seed=1), labelled=True)
    assert Counter(it.expected for it in one) == {"a": 2, "b": 6, "c": 12}
    ids = [int(it.id[1:]) for it in one]
    assert ids == sorted(ids)
    assert choose(items, SubsetSpec("sample", 20, seed=1), labelled=True) == one
    assert choose(items, SubsetSpec("sample", 20, seed=2), labelled=True) != one
    # unlabelled: one stratum, still exactly n
    assert len(choose(items, SubsetSpec("sample", 7, seed=0), labelled=False)) == 7


def test_allocation_sums_to_n_and_keeps_rare_strata():
    assert _allocate({"a": 1, "b": 98, "c": 1}, 10) == {"a": 1, "b": 8, "c": 1}
    assert sum(_allocate({"a": 3, "b": 3, "c": 3}, 2).values()) == 2
    assert _allocate({"a": 5, "b": 5}, 3) in ({"a": 2, "b": 1}, {"a": 1, "b": 2})


def test_sample_stratifies_by_cluster_when_items_have_one():
    items = tuple(Item(f"i{n}", "t", "x", cluster=f"c{n % 4}") for n in range(40))
    ts = load_testset(FIXTURES / "tiny-qa")
    cut, record = apply(ts, SubsetSpec("sample", 3, seed=5))
    assert len(cut.test) == 3 and record["n"] == 3 and record["of"] == len(ts.test)
    assert record["stratified_by"] == ("cluster" if any(it.cluster for it in ts.test)
                                       else None)
    picked = choose(items, SubsetSpec("sample", 8, seed=0), labelled=False)
    assert Counter(it.cluster for it in picked) == {"c0": 2, "c1": 2, "c2": 2, "c3": 2}
    assert apply(ts, SubsetSpec("limit", 99)) == (ts, None)  # covers everything: no subset


def _run(tmp: Path, reports: str, *extra: str) -> Path:
    result = CliRunner().invoke(main, [
        "run", str(FIXTURES / "tiny-intents"), "--variants", "prompt-only,few-shot",
        "--reports-dir", str(tmp / reports), "--cache-dir", str(tmp / "cache"),
        "--finetune-dir", str(tmp / "ft"), "--no-progress", *extra])
    assert result.exit_code == 0, result.output
    return (tmp / reports / "latest-tiny-intents").resolve(), result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("subset")
    full, _ = _run(tmp, "full")
    limited, out_limit = _run(tmp, "limit", "--limit", "3")
    sampled, out_sample = _run(tmp, "sample", "--sample", "4", "--seed", "1")
    return tmp, full, (limited, out_limit), (sampled, out_sample)


def test_limit_and_sample_run_that_many_items_and_say_so(runs):
    _, _, (limited, out_limit), (sampled, out_sample) = runs
    for folder, n, flag, out in ((limited, 3, "--limit 3", out_limit),
                                 (sampled, 4, "--sample 4 --seed 1", out_sample)):
        record = json.loads((folder / "run.json").read_text())
        assert record["subset"]["n"] == n and record["subset"]["of"] == 8
        assert record["subset"]["flag"] == flag
        assert record["testset"]["n_test"] == n
        per_variant = Counter(p["variant"] for p in read_jsonl(folder / "predictions.jsonl"))
        assert per_variant == {"prompt-only": n, "few-shot": n}
        assert len(read_jsonl(folder / "items.jsonl")) == n
        assert f"subset: {n} of 8 test items ({flag})" in out
        report = CliRunner().invoke(main, ["report", str(folder)])
        assert report.exit_code == 0, report.output
        html = (folder / "index.html").read_text()
        assert f"{n} of 8 held-out items ({flag}" in html
    sampled_record = json.loads((sampled / "run.json").read_text())["subset"]
    assert sampled_record["seed"] == 1 and sampled_record["stratified_by"] == "label"


def test_the_gate_refuses_a_subset_run_against_a_full_baseline(runs):
    tmp, full, (limited, _), (sampled, _) = runs
    to = tmp / "base.json"
    made = CliRunner().invoke(main, ["baseline", "update", str(full), "--to", str(to)])
    assert made.exit_code == 0, made.output
    for folder, flag in ((limited, "--limit 3"), (sampled, "--sample 4 --seed 1")):
        refused = CliRunner().invoke(main, ["gate", str(folder), "--baseline", str(to)])
        assert refused.exit_code == 1, refused.output
        assert f"the run covers {3 if 'limit' in flag else 4} of 8 items ({flag}) and the " \
               f"baseline the full test set" in refused.output
        assert "--allow-item-subset" in refused.output
        # separate local runs: their latency is CPU time on a shared machine, not the point
        allowed = CliRunner().invoke(main, ["gate", str(folder), "--baseline", str(to),
                                            "--allow-item-subset", "--latency-slack-s", "60"])
        assert allowed.exit_code == 0, allowed.output
        assert "gated on the items both hold" in allowed.output
    full_ok = CliRunner().invoke(main, ["gate", str(full), "--baseline", str(to)])
    assert full_ok.exit_code == 0, full_ok.output


def _snap(scores: dict[str, float], subset: dict | None, *, f1: float) -> object:
    from evalkit.gate.baseline import MetricStats, Snapshot, VariantStats

    ok = list(scores.values())
    stats = VariantStats(metrics={"accuracy": MetricStats(sum(ok) / len(ok), len(ok), 0),
                                  "macro_f1": MetricStats(f1, len(ok), 0)},
                         per_query_usd=0.001, p50_s=0.1, p95_s=0.1, items=len(ok), errors=0,
                         cached=0, scores={"accuracy": scores})
    return Snapshot("toy", {"v": stats}, "x", testset_hash="h", subset=subset,
                    item_hashes={i: i for i in scores})


def test_the_allowed_gate_compares_the_baseline_on_the_runs_items():
    from evalkit.gate.check import Tolerances, compare

    full = {f"i{n}": float(n < 3) for n in range(10)}  # 0.3 over 10; 1.0 over the first 3
    base = _snap(full, None, f1=0.3)
    run = _snap({i: full[i] for i in ("i0", "i1", "i2")},
                {"mode": "limit", "n": 3, "of": 10, "flag": "--limit 3"}, f1=0.9)
    refused = compare(run, base, Tolerances())
    assert [c.status for c in refused if c.kind == "testset"] == ["fail"]
    checks = {(c.variant, c.check): c for c in compare(run, base, Tolerances(),
                                                       allow_item_subset=True)}
    assert checks[("*", "test set")].status == "warn"
    acc = checks[("v", "accuracy")]
    assert acc.status == "pass" and acc.baseline == pytest.approx(1.0) and acc.run == 1.0
    assert not any(c.status == "fail" for c in checks.values()), checks
    assert checks[("v", "macro_f1")].status == "warn"
    assert "no per-item scores" in checks[("v", "macro_f1")].reason
