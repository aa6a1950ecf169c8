"""The regression gate and baselines: each failure condition trips, passes pass, bad input exits 2.

Most tests build run folders by hand (summary.json + scores.csv written here from per-item
scores, with means computed independently of evalkit) so each condition is isolated; one module
fixture makes a real `evalkit run` of tests/fixtures/tiny-intents and a deliberately broken copy.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from evalkit.cli import main
from evalkit.gate.baseline import GateError, load_baseline, update_baseline
from evalkit.gate.check import Tolerances, paired_test

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def write_run(run_dir: Path, variants: dict[str, dict], *, testset: str = "toy",
              gate_section: dict | None = None) -> Path:
    """A run folder from per-item scores. Each variant spec: scores {metric: [values]}, and
    optionally cost (per query), p95 (s), errors, items."""
    run_dir.mkdir(parents=True, exist_ok=True)
    summary_variants, rows = {}, ["run,variant,item_id,metric,value"]
    for name, spec in variants.items():
        metrics = {}
        for m, values in spec["scores"].items():
            arr = np.array(values, dtype=float)
            ok = arr[~np.isnan(arr)]
            metrics[m] = {"mean": float(ok.mean()) if len(ok) else float("nan"),
                          "n": int(len(ok)), "n_nan": int(np.isnan(arr).sum())}
            rows += [f"{run_dir.name},{name},it-{i:03d},{m},{v}" for i, v in enumerate(values)]
        n_items = spec.get("items", len(next(iter(spec["scores"].values()))))
        summary_variants[name] = {
            "metrics": metrics,
            "latency": {"p50_s": spec.get("p95", 0.5) / 2, "p95_s": spec.get("p95", 0.5)},
            "tokens": {"input": 100.0, "output": 5.0},
            "cost": {"per_query_usd": spec.get("cost", 1e-4), "total_notional_usd": 0.0},
            "calls": {"items": n_items, "errors": spec.get("errors", 0), "cached": 0},
        }
    summary = {"schema_version": 1, "run_id": run_dir.name, "testset": testset,
               "task_type": "classification", "primary_metric": "accuracy",
               "ladder": list(variants), "variants": summary_variants}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "scores.csv").write_text("\n".join(rows) + "\n")
    run_json = {"run_id": run_dir.name, "testset": {"name": testset, "hash": "h1"},
                "experiment_config": {"gate": gate_section} if gate_section else {}}
    (run_dir / "run.json").write_text(json.dumps(run_json))
    return run_dir


def acc(n_right: int, n: int) -> list[float]:
    return [1.0] * n_right + [0.0] * (n - n_right)


BASE = {"prompt-only": {"scores": {"accuracy": acc(90, 100)}, "cost": 1e-4, "p95": 0.5},
        "rag": {"scores": {"accuracy": acc(95, 100), "recall_at_k": acc(80, 100)},
                "cost": 2e-4, "p95": 0.8}}


def variant(name: str, **changes) -> dict:
    return {**BASE, name: {**BASE[name], **changes}}


# The local provider's latency is CPU time on a shared machine: tests about other checks
# give it room, so a busy neighbour cannot fail them.
NO_LATENCY_CHECK = ("--latency-slack-s", "60")


def gate(*args: str):
    return CliRunner().invoke(main, ["gate", *args])


@pytest.fixture
def baseline(tmp_path) -> Path:
    run = write_run(tmp_path / "base-run", BASE)
    to = tmp_path / "baselines" / "all.json"
    result = CliRunner().invoke(main, ["baseline", "update", str(run), "--to", str(to)])
    assert result.exit_code == 0, result.output
    return to


def table(result) -> list[dict[str, str]]:
    """The console table's rows as dicts, cut at the columns the dashed rule marks."""
    lines = result.output.split("\n\n")[0].splitlines()  # the table ends at a blank line
    header, rule, body = lines[0], lines[1], lines[2:]
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]
    spans[-1] = (spans[-1][0], None)
    names = [header[a:b].strip() for a, b in spans]
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)}
            for line in body]


def row(result, variant: str, check: str) -> dict[str, str]:
    (found,) = [r for r in table(result) if r["variant"] == variant and r["check"] == check]
    return found


def failed(result) -> list[str]:
    """'variant check' of each FAIL row of the console table."""
    return [f"{r['variant']} {r['check']}" for r in table(result) if r["status"] == "FAIL"]


# ---- passes ---------------------------------------------------------------------------------

def test_identical_run_passes_and_writes_gate_md(tmp_path, baseline):
    run = write_run(tmp_path / "run", BASE)
    result = gate(str(run), "--baseline", str(baseline))
    assert result.exit_code == 0, result.output
    assert "gate: PASS" in result.output and failed(result) == []
    md = (run / "gate.md").read_text()
    assert md.startswith("## ✅ evalkit gate: PASS")
    assert "| ok | toy | rag | recall_at_k | 0.8000 | 0.8000 |" in md


def test_within_tolerance_passes(tmp_path, baseline):
    # -0.01 accuracy (2 points allowed), +5% cost (10%), p95 +0.1 s = +20% (25%)
    run = write_run(tmp_path / "run", variant("prompt-only", scores={"accuracy": acc(89, 100)},
                                              cost=1.05e-4, p95=0.6))
    result = gate(str(run), "--baseline", str(baseline))
    assert result.exit_code == 0, result.output
    assert row(result, "prompt-only", "accuracy") == {
        "status": "ok", "test set": "toy", "variant": "prompt-only", "check": "accuracy",
        "baseline": "0.9000", "run": "0.8900", "change": "-0.0100", "allowed": "-0.0200",
        "paired test": "McNemar p=1 n=100"}
    assert row(result, "prompt-only", "cost/query")["change"] == "+5%"
    assert row(result, "prompt-only", "p95 latency")["run"] == "600.0 ms"
    assert {r["status"] for r in table(result)} == {"ok"}


# ---- each failure condition -----------------------------------------------------------------

def test_quality_drop_fails(tmp_path, baseline):
    run = write_run(tmp_path / "run", variant("rag", scores={"accuracy": acc(85, 100),
                                                             "recall_at_k": acc(80, 100)}))
    result = gate(str(run), "--baseline", str(baseline))
    assert result.exit_code == 1, result.output
    assert failed(result) == ["rag accuracy"]
    assert "accuracy fell 0.1000 (0.9500 -> 0.8500), more than the 0.0200 allowed" in \
        result.output
    assert "gate: FAIL - 1 of" in result.output


def test_significant_paired_drop_fails_when_significance_required(tmp_path):
    base = write_run(tmp_path / "b", {"v": {"scores": {"accuracy": acc(200, 200)}}})
    to = tmp_path / "base.json"
    update_baseline([base], to)
    run = write_run(tmp_path / "r", {"v": {"scores": {"accuracy": acc(170, 200)}}})
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("gate:\n  require_significance: true\n")
    result = gate(str(run), "--baseline", str(to), "--config", str(cfg))
    assert result.exit_code == 1, result.output
    assert failed(result) == ["v accuracy"]
    p = sps.binomtest(30, 30, 0.5).pvalue  # 30 lost, 0 gained
    assert f"more than the 0.0200 allowed and significant; McNemar exact p={p:.3g}" in \
        result.output


def test_insignificant_drop_beyond_tolerance_warns_when_significance_required(tmp_path):
    base = write_run(tmp_path / "b", {"v": {"scores": {"accuracy": acc(8, 8)}}})
    to = tmp_path / "base.json"
    update_baseline([base], to)
    run = write_run(tmp_path / "r", {"v": {"scores": {"accuracy": acc(7, 8)}}})
    strict = gate(str(run), "--baseline", str(to))
    assert strict.exit_code == 1 and failed(strict) == ["v accuracy"]
    lenient = gate(str(run), "--baseline", str(to), "--require-significance")
    assert lenient.exit_code == 0, lenient.output
    assert "more than the 0.0200 allowed but not significant at alpha=0.05" in lenient.output


def test_paired_tests_match_scipy():
    rng = np.random.default_rng(7)
    base = {f"i{k}": float(x) for k, x in enumerate(rng.integers(0, 2, 60))}
    run = {k: (1.0 - v if n % 5 == 0 else v) for n, (k, v) in enumerate(base.items())}
    t = paired_test(base, run)
    lost = sum(base[k] == 1 and run[k] == 0 for k in base)
    gained = sum(base[k] == 0 and run[k] == 1 for k in base)
    assert t.test == "McNemar exact" and (t.lost, t.gained) == (lost, gained)
    assert t.p_value == pytest.approx(sps.binomtest(lost, lost + gained, 0.5).pvalue)

    b = {f"i{k}": float(x) for k, x in enumerate(rng.uniform(0.3, 0.9, 40))}
    r = {k: v - 0.05 + rng.normal(0, 0.05) for k, v in b.items()}
    r["i0"] = float("nan")  # not scorable in the run: left out of the pairs
    t = paired_test(b, r)
    keys = [k for k in b if k != "i0"]
    ref = sps.ttest_rel([r[k] for k in keys], [b[k] for k in keys])
    assert t.test == "paired t" and t.n == 39
    assert t.p_value == pytest.approx(ref.pvalue)
    assert t.mean_diff == pytest.approx(np.mean([r[k] - b[k] for k in keys]))


def test_paired_test_is_clustered_when_the_run_has_clusters(tmp_path):
    base_scores = [0.9, 0.8, 0.7, 0.9, 0.6, 0.8, 0.5, 0.9]
    run_scores = [0.7, 0.8, 0.5, 0.9, 0.6, 0.5, 0.5, 0.8]
    clusters = ["a", "a", "b", "b", "c", "c", None, None]  # None: an item on its own
    base = write_run(tmp_path / "b", {"v": {"scores": {"token_f1": base_scores}}})
    update_baseline([base], tmp_path / "base.json")
    run = write_run(tmp_path / "r", {"v": {"scores": {"token_f1": run_scores}}})
    (run / "items.jsonl").write_text("".join(
        json.dumps({"id": f"it-{i:03d}", "cluster": c}) + "\n" for i, c in enumerate(clusters)))
    # CR1 clustered standard error of the paired differences, by hand
    d = np.array(run_scores) - np.array(base_scores)
    groups = ["a", "a", "b", "b", "c", "c", "own-6", "own-7"]
    sums = [sum(d[i] - d.mean() for i in range(8) if groups[i] == g) for g in set(groups)]
    n_groups = len(set(groups))
    se = np.sqrt(n_groups / (n_groups - 1) * sum(x * x for x in sums) / 8 ** 2)
    p = 2 * sps.t.sf(abs(d.mean() / se), n_groups - 1)
    result = gate(str(run), "--baseline", str(tmp_path / "base.json"))
    assert row(result, "v", "token_f1")["paired test"] == f"clustered t p={p:.3g} n=8"


def test_cost_rise_fails(tmp_path, baseline):
    run = write_run(tmp_path / "run", variant("rag", cost=2.3e-4))  # +15%
    result = gate(str(run), "--baseline", str(baseline))
    assert result.exit_code == 1 and failed(result) == ["rag cost/query"]
    assert "cost/query $0.0002 -> $0.00023 (+15%), a rise of more than 10%" in result.output
    assert gate(str(run), "--baseline", str(baseline),
                "--max-cost-increase", "0.2").exit_code == 0


def test_latency_rise_fails_beyond_relative_and_absolute_slack(tmp_path, baseline):
    run = write_run(tmp_path / "run", variant("prompt-only", p95=0.8))  # +60%, +300 ms
    result = gate(str(run), "--baseline", str(baseline))
    assert result.exit_code == 1 and failed(result) == ["prompt-only p95 latency"]
    # a tiny absolute rise is noise, however large in relative terms
    fast = write_run(tmp_path / "fast-base", {"v": {"scores": {"accuracy": acc(5, 5)},
                                                    "p95": 0.010}})
    update_baseline([fast], tmp_path / "fast.json")
    slow = write_run(tmp_path / "fast-run", {"v": {"scores": {"accuracy": acc(5, 5)},
                                                   "p95": 0.040}})
    assert gate(str(slow), "--baseline", str(tmp_path / "fast.json")).exit_code == 0


def test_error_rate_rise_fails(tmp_path, baseline):
    scores = {"accuracy": acc(89, 99) + [float("nan")], "recall_at_k": acc(80, 100)}
    run = write_run(tmp_path / "run", variant("rag", scores=scores, errors=1))
    result = gate(str(run), "--baseline", str(baseline), "--max-drop", "0.1")
    assert result.exit_code == 1 and failed(result) == ["rag error rate"]
    assert "error rate 0.0% -> 1.0% (1 of 100 items), a rise beyond" in result.output
    assert gate(str(run), "--baseline", str(baseline), "--max-drop", "0.1",
                "--max-error-rate-increase", "0.02").exit_code == 0


def test_missing_variant_fails(tmp_path, baseline):
    run = write_run(tmp_path / "run", {"prompt-only": BASE["prompt-only"]})
    result = gate(str(run), "--baseline", str(baseline))
    assert result.exit_code == 1
    assert failed(result) == ["rag variant"]
    assert "variant 'rag' is in the baseline but missing from the run" in result.output


def test_missing_metric_fails(tmp_path, baseline):
    run = write_run(tmp_path / "run", variant("rag", scores={"accuracy": acc(95, 100)}))
    result = gate(str(run), "--baseline", str(baseline))
    assert result.exit_code == 1 and failed(result) == ["rag recall_at_k"]
    assert "recall_at_k is in the baseline but missing from the run" in result.output


def test_fewer_items_than_baseline_fails(tmp_path, baseline):
    run = write_run(tmp_path / "run", variant("prompt-only", scores={"accuracy": acc(45, 50)}))
    result = gate(str(run), "--baseline", str(baseline))
    assert result.exit_code == 1 and failed(result) == ["prompt-only items"]


# ---- several test sets, one baseline file ---------------------------------------------------

def test_one_baseline_file_gates_several_test_sets(tmp_path):
    a = write_run(tmp_path / "a", BASE, testset="set-a")
    b = write_run(tmp_path / "b", BASE, testset="set-b")
    to = tmp_path / "baseline.json"
    update_baseline([a], to)
    update_baseline([b], to)  # adds set-b, keeps set-a
    assert sorted(load_baseline(to)) == ["set-a", "set-b"]
    assert gate(str(a), str(b), "--baseline", str(to)).exit_code == 0
    only_a = gate(str(a), "--baseline", str(to))
    assert only_a.exit_code == 1
    assert "test set 'set-b' is in the baseline but no run of it was given" in only_a.output
    assert gate(str(a), "--baseline", str(to), "--subset").exit_code == 0
    broken_b = write_run(tmp_path / "b2", variant("rag", cost=1.0), testset="set-b")
    result = gate(str(a), str(broken_b), "--baseline", str(to))
    assert result.exit_code == 1 and failed(result) == ["rag cost/query"]
    # each run folder gets its own part, headed by its own verdict, plus the overall one
    a_md, b_md = (a / "gate.md").read_text(), (broken_b / "gate.md").read_text()
    assert a_md.startswith("## ✅ evalkit gate: PASS (set-a)") and "<summary>set-b" not in a_md
    assert "overall gate: FAIL - 1 of" in a_md
    assert b_md.startswith("## ❌ evalkit gate: FAIL (set-b)") and "cost/query" in b_md


def test_one_baseline_file_per_test_set(tmp_path):
    a = write_run(tmp_path / "a", BASE, testset="set-a")
    b = write_run(tmp_path / "b", variant("rag", cost=1.0), testset="set-b")
    update_baseline([a], tmp_path / "baselines" / "set-a.json")
    update_baseline([write_run(tmp_path / "b0", BASE, testset="set-b")],
                    tmp_path / "baselines" / "set-b.json")
    files = ["--baseline", str(tmp_path / "baselines" / "set-a.json"),
             "--baseline", str(tmp_path / "baselines" / "set-b.json")]
    result = gate(str(a), str(b), *files)
    assert result.exit_code == 1 and failed(result) == ["rag cost/query"]
    assert gate(str(a), *files).exit_code == 1  # set-b's run is missing
    update_baseline([a], tmp_path / "baselines" / "dup.json")
    dup = gate(str(a), str(b), *files, "--baseline", str(tmp_path / "baselines" / "dup.json"))
    assert dup.exit_code == 2 and "test set 'set-a' is also in" in dup.output


# ---- tolerances: config, recorded config, flags ---------------------------------------------

def test_config_section_then_flags_override(tmp_path, baseline):
    run = write_run(tmp_path / "run", variant("rag", scores={"accuracy": acc(85, 100),
                                                             "recall_at_k": acc(80, 100)}))
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("gate:\n  max_drop: 0.2\n")
    assert gate(str(run), "--baseline", str(baseline), "--config", str(cfg)).exit_code == 0
    assert gate(str(run), "--baseline", str(baseline), "--config", str(cfg),
                "--max-drop", "0.05").exit_code == 1
    cfg.write_text("gate:\n  metrics: {accuracy: 0.15}\n")
    assert gate(str(run), "--baseline", str(baseline), "--config", str(cfg)).exit_code == 0
    assert gate(str(run), "--baseline", str(baseline), "--config", str(cfg),
                "--metric-max-drop", "accuracy=0.05").exit_code == 1


def test_gate_section_recorded_in_run_json_is_used(tmp_path, baseline):
    scores = {"accuracy": acc(85, 100), "recall_at_k": acc(80, 100)}
    run = write_run(tmp_path / "run", variant("rag", scores=scores),
                    gate_section={"max_drop": 0.2})
    assert gate(str(run), "--baseline", str(baseline)).exit_code == 0


def test_tolerances_validate_and_name_the_field(tmp_path):
    assert Tolerances.from_section(None, None) == Tolerances()
    with pytest.raises(ValueError, match=r"exp.yaml: field 'gate.max_dorp': unknown key"):
        Tolerances.from_section({"max_dorp": 0.1}, "exp.yaml")
    with pytest.raises(ValueError, match=r"field 'gate.metrics.accuracy'"):
        Tolerances.from_section({"metrics": {"accuracy": -1}}, "exp.yaml")
    with pytest.raises(ValueError, match=r"field 'gate.alpha'"):
        Tolerances.from_section({"alpha": 1.5}, "exp.yaml")


# ---- usage and configuration errors: exit 2 -------------------------------------------------

@pytest.mark.parametrize("content, message", [
    ("{not json", "invalid JSON"),
    ('{"schema_version": 99, "kind": "evalkit-baseline", "testsets": {}}', "schema_version"),
    ('{"schema_version": 1, "kind": "evalkit-baseline", "testsets": {"toy": {"variants": '
     '{"v": {"metrics": {"accuracy": {"mean": "high", "n": 1, "n_nan": 0}}}}}}}',
     "field 'testsets.toy.variants.v.metrics.accuracy.mean': 'high' is not a number"),
    ('{"schema_version": 1, "kind": "evalkit-baseline", "testsets": {"toy": {"variants": '
     '{"v": {"metrics": {}, "cost": {}, "latency": {}, "calls": {}}}}}}',
     "field 'testsets.toy.variants.v.cost.per_query_usd': missing"),
])
def test_malformed_baseline_exits_2(tmp_path, content, message):
    run = write_run(tmp_path / "run", BASE)
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = gate(str(run), "--baseline", str(bad))
    assert result.exit_code == 2
    assert message in result.output and str(bad) in result.output


def test_missing_files_exit_2(tmp_path, baseline):
    run = write_run(tmp_path / "run", BASE)
    no_base = gate(str(run), "--baseline", str(tmp_path / "nope.json"))
    assert no_base.exit_code == 2 and "baseline file not found" in no_base.output
    no_run = gate(str(tmp_path / "no-such-run"), "--baseline", str(baseline))
    assert no_run.exit_code == 2 and "run folder not found" in no_run.output
    (run / "summary.json").unlink()
    no_summary = gate(str(run), "--baseline", str(baseline))
    assert no_summary.exit_code == 2 and "summary.json not found" in no_summary.output
    assert gate("--baseline", str(baseline)).exit_code == 2  # no run given


def test_other_usage_errors_exit_2(tmp_path, baseline):
    other = write_run(tmp_path / "other", BASE, testset="unknown-set")
    result = gate(str(other), "--baseline", str(baseline))
    assert result.exit_code == 2 and "no entry for test set 'unknown-set'" in result.output
    run = write_run(tmp_path / "run", BASE)
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("gate:\n  max_drop: lots\n")
    bad_cfg = gate(str(run), "--baseline", str(baseline), "--config", str(cfg))
    assert bad_cfg.exit_code == 2 and "field 'gate.max_drop'" in bad_cfg.output
    summary = json.loads((run / "summary.json").read_text())
    del summary["schema_version"]
    (run / "summary.json").write_text(json.dumps(summary))
    no_version = gate(str(run), "--baseline", str(baseline))
    assert no_version.exit_code == 2 and "schema_version" in no_version.output
    assert gate(str(run), "--baseline", str(baseline), "--max-drop", "-1").exit_code == 2
    assert gate(str(run), "--baseline", str(baseline),
                "--metric-max-drop", "accuracy").exit_code == 2


# ---- baseline files -------------------------------------------------------------------------

def test_baseline_holds_per_item_scores_as_strict_json(tmp_path):
    run = write_run(tmp_path / "run", {"v": {"scores": {"accuracy": [1.0, float("nan"), 0.0]},
                                             "errors": 1}})
    to = tmp_path / "b.json"
    update_baseline([run], to)

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    doc = json.loads(to.read_text(), parse_constant=refuse)
    entry = doc["testsets"]["toy"]
    assert doc["schema_version"] == 1 and entry["source"]["testset_hash"] == "h1"
    v = entry["variants"]["v"]
    assert v["scores"]["accuracy"] == {"it-000": 1.0, "it-001": None, "it-002": 0.0}
    assert v["metrics"]["accuracy"] == {"mean": 0.5, "n": 2, "n_nan": 1}
    assert v["calls"] == {"items": 3, "errors": 1, "cached": 0}


def test_baseline_update_never_overwrites_a_malformed_file(tmp_path):
    run = write_run(tmp_path / "run", BASE)
    to = tmp_path / "b.json"
    to.write_text('{"schema_version": 1}')
    result = CliRunner().invoke(main, ["baseline", "update", str(run), "--to", str(to)])
    assert result.exit_code == 2 and "field 'kind'" in result.output
    assert to.read_text() == '{"schema_version": 1}'
    with pytest.raises(GateError, match="two runs of test set 'toy'"):
        update_baseline([run, run], tmp_path / "c.json")


# ---- outputs: step summary and JUnit --------------------------------------------------------

def test_step_summary_and_junit(tmp_path, baseline, monkeypatch):
    run = write_run(tmp_path / "run", variant("rag", cost=1.0))
    step = tmp_path / "step.md"
    step.write_text("earlier step output\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    junit = tmp_path / "gate.xml"
    result = gate(str(run), "--baseline", str(baseline), "--junit", str(junit))
    assert result.exit_code == 1
    text = step.read_text()
    assert text.startswith("earlier step output\n## ❌ evalkit gate: FAIL")  # appended
    assert "- **toy / rag** — cost/query $0.0002 -> $1" in text
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    fails = [c.get("name") for c in cases if c.find("failure") is not None]
    assert fails == ["rag cost/query"]
    assert root.get("failures") == "1" and root.get("tests") == str(len(cases))


# ---- a real run of the tiny fixture ---------------------------------------------------------

@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """Real runs of tiny-intents: as shipped, with retrieval k set to 0, and with its RAG
    corpus replaced by text that answers nothing."""
    tmp = tmp_path_factory.mktemp("real")
    k0 = tmp / "k0" / "tiny-intents"
    shutil.copytree(FIXTURES / "tiny-intents", k0)
    task = k0 / "task.yaml"
    task.write_text(task.read_text().replace("k: 2}", "k: 0}"))
    assert "k: 0}" in task.read_text()
    junk = tmp / "junk" / "tiny-intents"
    shutil.copytree(FIXTURES / "tiny-intents", junk)
    docs = sorted((junk / "docs").glob("*.md"))
    assert len(docs) == 4
    for doc in docs:
        doc.write_text("# Notes\nOur office is open from nine to five on weekdays.\n")
    swap = tmp / "swap" / "tiny-intents"  # te-01 dropped, te-02/te-03 reworded, te-99 added
    shutil.copytree(FIXTURES / "tiny-intents", swap)
    rows = [json.loads(line) for line in (swap / "test.jsonl").read_text().splitlines()]
    rows[1]["input"] = "please refund me"
    rows[2]["input"] = "cannot log in at all"
    rows = rows[1:] + [{**rows[0], "id": "te-99"}]
    (swap / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--cache-dir", str(tmp / "cache"), "--finetune-dir", str(tmp / "ft"),
              "--no-progress"]
    runner = CliRunner()
    for src, reports in ((FIXTURES / "tiny-intents", "good"), (k0, "k0"), (junk, "junk"),
                         (swap, "swap")):
        result = runner.invoke(main, ["run", str(src), "--reports-dir", str(tmp / reports),
                                      *common])
        assert result.exit_code == 0, result.output
    return tmp


def test_real_run_passes_its_own_baseline_and_broken_retrieval_fails(real_runs):
    good = real_runs / "good" / "latest-tiny-intents"
    to = real_runs / "baselines.json"
    runner = CliRunner()
    made = runner.invoke(main, ["baseline", "update", str(good), "--to", str(to)])
    assert made.exit_code == 0, made.output
    assert "tiny-intents: run" in made.output and "with per-item scores" in made.output
    entry = load_baseline(to)["tiny-intents"]
    assert set(entry.variants) == {"prompt-only", "few-shot", "rag", "fine-tuned",
                                   "rag+fine-tuned"}
    assert len(entry.variants["rag"].scores["accuracy"]) == 8

    ok = gate(str(good), "--baseline", str(to))
    assert ok.exit_code == 0, ok.output
    assert (good / "gate.md").is_file()

    # k = 0: the rag rung retrieves nothing, answers like prompt-only, and has no retrieval
    # metrics at all; the rungs without retrieval are untouched
    # these runs are timed on a shared machine: latency is not what this test is about
    k0 = gate(str(real_runs / "k0" / "latest-tiny-intents"), "--baseline", str(to),
              "--allow-testset-change", *NO_LATENCY_CHECK)
    assert k0.exit_code == 1, k0.output
    fails = failed(k0)
    assert {"rag accuracy", "rag recall_at_k", "rag mrr", "rag+fine-tuned recall_at_k",
            "rag+fine-tuned mrr"} <= set(fails)
    assert not any(f.startswith(("prompt-only", "few-shot", "fine-tuned ")) for f in fails)
    assert ("the test set differs from the baseline's: the test items are the same but other "
            "files of the test set changed") in k0.output

    # a corpus that answers nothing: retrieval misses the gold docs
    junk = gate(str(real_runs / "junk" / "latest-tiny-intents"), "--baseline", str(to),
                "--allow-testset-change", *NO_LATENCY_CHECK)
    assert junk.exit_code == 1, junk.output
    assert sorted(failed(junk)) == ["rag mrr", "rag recall_at_k", "rag+fine-tuned mrr",
                                    "rag+fine-tuned recall_at_k"]
    assert float(row(junk, "rag", "recall_at_k")["run"]) < 0.98


def test_a_damaged_items_file_is_a_usage_error_naming_its_line(tmp_path):
    from evalkit.gate.baseline import GateError, _read_items

    path = tmp_path / "items.jsonl"
    path.write_text('{"id": "a", "cluster": "doc-1"}\n{"id": "b"}\nnot json\n')
    with pytest.raises(GateError, match=r"items\.jsonl:3: invalid JSON"):
        _read_items(path)
    path.write_text('{"id": "a", "cluster": "doc-1"}\n{"id": "b"}\n')
    assert [it["id"] for it in _read_items(path)] == ["a", "b"]


def test_a_run_on_a_swapped_test_set_fails_with_the_items_counted(real_runs, tmp_path):
    good = real_runs / "good" / "latest-tiny-intents"
    swap = real_runs / "swap" / "latest-tiny-intents"
    to = tmp_path / "baselines.json"
    made = CliRunner().invoke(main, ["baseline", "update", str(good), "--to", str(to)])
    assert made.exit_code == 0, made.output
    assert len(json.loads(to.read_text())["testsets"]["tiny-intents"]["source"]
               ["item_hashes"]) == 8

    refused = gate(str(swap), "--baseline", str(to))
    assert refused.exit_code == 1, refused.output
    assert failed(refused)[0] == "* test set"
    assert ("the test set differs from the baseline's: 1 item(s) added, 1 removed, 2 changed"
            in refused.output) and "--allow-testset-change" in refused.output

    allowed = gate(str(swap), "--baseline", str(to), "--allow-testset-change")
    assert "* test set" not in failed(allowed)
    assert "paired tests use the unchanged items both runs hold" in allowed.output

    # a baseline recorded before item hashes were kept: ids still counted, changes not
    doc = json.loads(to.read_text())
    del doc["testsets"]["tiny-intents"]["source"]["item_hashes"]
    to.write_text(json.dumps(doc))
    old = gate(str(swap), "--baseline", str(to))
    assert old.exit_code == 1 and "1 item(s) added, 1 removed, changes inside items not " \
        "counted" in old.output


def test_junit_xml_stays_well_formed_whatever_text_a_check_carries():
    """XML 1.0 has no way to write most C0 control characters (ESC, NUL, BEL...): ElementTree
    writes them raw, and the CI's JUnit parser then rejects the whole file. Names and reasons
    come from configs and run folders: the file must parse, and says where a character was."""
    from evalkit.gate.check import Check, GateReport
    from evalkit.gate.render import junit

    odd = "fast\x1b[31m\x00\x07\ud83d"
    report = GateReport([Check("set", odd, "accuracy", "metric", "fail", f"dropped {odd}"),
                         Check("set", odd, "error rate", "errors", "pass", f"ok {odd}")],
                        runs={}, tolerances={})
    root = ET.fromstring(junit(report).split("\n", 1)[1].encode("utf-8"))
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == ["fast\\x1b[31m\\x00\\x07\\ud83d accuracy",
                                              "fast\\x1b[31m\\x00\\x07\\ud83d error rate"]
    assert root.find(".//failure").get("message") == "dropped fast\\x1b[31m\\x00\\x07\\ud83d"
    assert root.find(".//system-out").text == "pass: ok fast\\x1b[31m\\x00\\x07\\ud83d"


def test_the_test_set_hash_is_of_its_inputs_only(tmp_path):
    """README.md (the data card init asks you to fill in), and a .evalkit-cache/ or reports/
    made by running from inside the folder, changed the test-set hash: the gate failed an
    unchanged set ('other files of the test set changed') and compare warned. Only the
    files the set is read from count, each of them does, and so does a schema file."""
    from evalkit.data.testset import load_testset

    ts = tmp_path / "tiny-intents"
    shutil.copytree(FIXTURES / "tiny-intents", ts)
    before = load_testset(ts).hash
    (ts / "README.md").write_text("# Data card\nfilled in later\n")
    (ts / ".evalkit-cache" / "leakage").mkdir(parents=True)
    (ts / ".evalkit-cache" / "responses.sqlite").write_bytes(b"SQLite format 3\0")
    (ts / "reports" / "r1").mkdir(parents=True)
    (ts / "reports" / "r1" / "index.html").write_text("<html></html>")
    (ts / "docs" / "notes.html").write_text("<p>not a document evalkit reads</p>")
    assert load_testset(ts).hash == before
    assert set(load_testset(ts).file_hashes) == {
        "task.yaml", "test.jsonl", "train.jsonl",
        *(f"docs/{p.name}" for p in (ts / "docs").glob("*.md"))}
    for name in ("task.yaml", "test.jsonl", "train.jsonl", "docs/" + next(
            p.name for p in (ts / "docs").glob("*.md"))):
        copy = tmp_path / f"edit-{name.replace('/', '-')}"
        shutil.copytree(ts, copy)
        with (copy / name).open("a") as fh:
            fh.write("\n" if name.endswith(".jsonl") else "\n# edited\n")
        assert load_testset(copy).hash != before, name


def test_a_set_run_from_inside_passes_its_own_baseline_and_an_old_baseline_warns(tmp_path):
    """Two runs of an unchanged set, each from inside the folder (its cache and reports
    there too): the second passes the first's baseline. A baseline recorded before the hash
    covered only the inputs (no testset_hash_of) cannot compare the other files: a warning
    that says to re-record it, not a failure, when its items are the same."""
    import os

    ts = tmp_path / "tiny-intents"
    shutil.copytree(FIXTURES / "tiny-intents", ts)
    runner = CliRunner()
    here = os.getcwd()
    try:
        os.chdir(ts)
        for _ in range(2):
            result = runner.invoke(main, ["run", ".", "--variants", "prompt-only",
                                          "--no-progress", "--no-report"])
            assert result.exit_code == 0, result.output
    finally:
        os.chdir(here)
    first, second = sorted(p for p in (ts / "reports").iterdir()
                           if p.is_dir() and not p.is_symlink())
    to = tmp_path / "base.json"
    assert runner.invoke(main, ["baseline", "update", str(first), "--to", str(to)]
                         ).exit_code == 0
    ok = gate(str(second), "--baseline", str(to), *NO_LATENCY_CHECK)
    assert ok.exit_code == 0, ok.output
    assert "test set" not in " ".join(failed(ok))
    doc = json.loads(to.read_text())
    source = doc["testsets"]["tiny-intents"]["source"]
    assert source.pop("testset_hash_of") == "inputs"
    source["testset_hash"] = "0" * 64  # as an older evalkit recorded it: every file
    to.write_text(json.dumps(doc))
    old = gate(str(second), "--baseline", str(to), *NO_LATENCY_CHECK)
    assert old.exit_code == 0, old.output
    assert "baseline's test-set hash is of every file in the folder" in old.output
    assert "re-record the baseline (evalkit baseline update)" in old.output


def test_a_run_recorded_with_the_old_hash_still_resumes(tmp_path):
    """run.json written before the hash covered only the inputs has no hash_of: --resume
    compares it with the hash of every file, as it was then computed."""
    from evalkit.data.testset import HASH_OF, all_files_hash, load_testset
    from evalkit.pipeline.experiment import same_testset

    ts = tmp_path / "tiny-intents"
    shutil.copytree(FIXTURES / "tiny-intents", ts)
    loaded = load_testset(ts)
    assert same_testset({"hash": loaded.hash, "hash_of": HASH_OF}, loaded)
    assert same_testset({"hash": all_files_hash(ts)}, loaded)
    (ts / "README.md").write_text("edited")  # an old record counted it; a new one does not
    assert same_testset({"hash": loaded.hash, "hash_of": HASH_OF}, load_testset(ts))
    assert not same_testset({"hash": loaded.hash}, load_testset(ts))


def test_the_old_hash_is_recomputed_in_the_order_it_was_made(tmp_path):
    """The old hash sorted files by their path string: `docs-src/` before `docs/`. Sorting
    Path objects put them the other way, so such a run could not be resumed."""
    import hashlib

    from evalkit.data.testset import all_files_hash

    ts = tmp_path / "tiny-qa"
    shutil.copytree(FIXTURES / "tiny-qa", ts)
    (ts / "docs-src").mkdir()
    (ts / "docs-src" / "a.html").write_text("<p>source</p>")
    h = hashlib.sha256()
    for p in sorted(ts.rglob("*"), key=lambda p: p.relative_to(ts).as_posix()):
        if p.is_file():  # as evalkit 685575b computed it
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            h.update(f"{p.relative_to(ts).as_posix()}:{digest}\n".encode())
    assert all_files_hash(ts) == h.hexdigest()
