"""`evalkit run` reaches its first call without the heavy libraries (issue 16.3).

A prompt-only openai run needs, before its first request, only the test set, the prompt
(jinja2 renders it), the price (genai-prices) and the SDK. scikit-learn, scipy, pandas, numpy
and the report and metric libraries (seconds of CPU on import) load after the calls, for
scoring and analysis, or in the stage that needs them: a train split's leakage scan, an index,
a few-shot pool, a local model. A set with a train split whose scan is remembered (by an
earlier `testset check` or run with the same --cache-dir) needs no scan, so no scikit-learn.

A fresh interpreter runs the CLI against the loopback server; the provider's `complete` is
wrapped to note which heavy modules are loaded when the first call is made.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from evalkit.cli import main

HEAVY = ("sklearn", "scipy", "pandas", "numpy", "matplotlib", "jsonschema", "rouge_score",
         "statsmodels")
TESTS = Path(__file__).parent

PROBE = f"""
import json, os, sys
from pathlib import Path
sys.path.insert(0, {str(TESTS)!r})
from openai_server import FakeOpenAI
from evalkit.providers.openai import OpenAIProvider
from evalkit.cli import main

ts, work = Path(sys.argv[1]), Path(sys.argv[2])
seen = []
original = OpenAIProvider.complete

async def complete(self, request):
    if not seen:
        seen.append([m for m in {HEAVY!r} if m in sys.modules])
    return await original(self, request)

OpenAIProvider.complete = complete
os.environ["OPENAI_API_KEY"] = "sk-test-startup"
with FakeOpenAI() as server:
    try:
        main(["run", str(ts), "--provider", "openai", "--base-url", server.base_url,
              "--model", "gpt-4o-mini", "--variants", "prompt-only", "--no-progress",
              "--reports-dir", str(work / "reports"), "--cache-dir", str(work / "cache")],
             standalone_mode=False)
    finally:
        calls = len(server.chat_calls())
print(json.dumps({{"at_first_call": seen[0] if seen else None, "calls": calls,
                  "after_run": [m for m in {HEAVY!r} if m in sys.modules],
                  "summary": (work / "reports" / f"latest-{{ts.name}}" / "summary.json")
                  .is_file()}}))
"""


def _plain_set(root: Path, *, train: bool) -> Path:
    root.mkdir()
    root.joinpath("task.yaml").write_text(
        f"name: {root.name}\ntype: classification\ninstructions: Classify.\n"
        "labels: {refund: Wants money back., login: Cannot sign in.}\n"
        "metrics: {primary: accuracy}\n")
    root.joinpath("test.jsonl").write_text("".join(
        json.dumps({"id": f"t{i}", "input": f"message {i} about a refund",
                    "expected": "refund"}) + "\n" for i in range(3)))
    if train:
        root.joinpath("train.jsonl").write_text("".join(
            json.dumps({"id": f"r{i}", "input": text, "expected": label}) + "\n"
            for i, (text, label) in enumerate([("I was charged twice, refund it", "refund"),
                                               ("the login page rejects my password",
                                                "login")])))
    return root


def _probe(ts: Path, work: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(ts), str(work)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_run_makes_its_first_call_before_loading_heavy_libraries(tmp_path):
    seen = _probe(_plain_set(tmp_path / "plain", train=False), tmp_path / "work")
    assert seen["calls"] == 3 and seen["summary"], seen  # the run really ran and was scored
    assert seen["at_first_call"] == [], f"loaded before the first call: {seen['at_first_call']}"
    assert "pandas" in seen["after_run"]  # scoring still loads what it needs, after the calls


def test_a_remembered_leakage_scan_keeps_scikit_learn_out_of_the_start(tmp_path):
    """`testset check` (another process) scans the train split and remembers it under the
    cache folder; the run then starts its calls with no scan and none of the heavy modules."""
    ts = _plain_set(tmp_path / "trained", train=True)
    work = tmp_path / "work"
    check = CliRunner().invoke(main, ["testset", "check", str(ts), "--variants", "prompt-only",
                                      "--cache-dir", str(work / "cache")])
    assert check.exit_code == 0, check.output
    assert len(list((work / "cache" / "leakage").iterdir())) == 1
    seen = _probe(ts, work)
    assert seen["calls"] == 3 and seen["summary"], seen
    assert seen["at_first_call"] == [], f"loaded before the first call: {seen['at_first_call']}"


def test_without_the_memo_the_scan_still_runs_before_the_calls(tmp_path):
    """The memo is what keeps the scan out, not a skipped check: a fresh cache folder scans
    (scikit-learn is loaded at the first call) and leaves the memo behind."""
    ts = _plain_set(tmp_path / "trained", train=True)
    seen = _probe(ts, tmp_path / "work")
    assert seen["calls"] == 3 and "sklearn" in seen["at_first_call"], seen
    assert len(list((tmp_path / "work" / "cache" / "leakage").iterdir())) == 1
