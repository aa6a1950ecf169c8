"""`evalkit run` reaches its first call without the heavy libraries (issue 16.3): a prompt-only
openai run of a test set with no train split or corpus has no leakage scan, index or local
model, so scikit-learn, scipy and pandas (seconds of CPU on import) may load only after the
calls, for scoring and analysis.

A fresh interpreter runs the CLI against the loopback server; the provider's `complete` is
wrapped to note which heavy modules are loaded when the first call is made.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("sklearn", "scipy", "pandas")
TESTS = Path(__file__).parent

PROBE = f"""
import json, os, sys, tempfile
from pathlib import Path
sys.path.insert(0, {str(TESTS)!r})
from openai_server import FakeOpenAI
from evalkit.providers.openai import OpenAIProvider
from evalkit.cli import main

seen = []
original = OpenAIProvider.complete

async def complete(self, request):
    if not seen:
        seen.append([m for m in {HEAVY!r} if m in sys.modules])
    return await original(self, request)

OpenAIProvider.complete = complete
tmp = Path(tempfile.mkdtemp())
ts = tmp / "plain"
ts.mkdir()
ts.joinpath("task.yaml").write_text(
    "name: plain\\ntype: classification\\ninstructions: Classify.\\n"
    "labels: {{refund: Wants money back., login: Cannot sign in.}}\\n"
    "metrics: {{primary: accuracy}}\\n")
ts.joinpath("test.jsonl").write_text("".join(
    json.dumps({{"id": f"t{{i}}", "input": f"message {{i}} about a refund",
                "expected": "refund"}}) + "\\n" for i in range(3)))
os.environ["OPENAI_API_KEY"] = "sk-test-startup"
with FakeOpenAI() as server:
    try:
        main(["run", str(ts), "--provider", "openai", "--base-url", server.base_url,
              "--model", "gpt-4o-mini", "--variants", "prompt-only", "--no-progress",
              "--reports-dir", str(tmp / "reports"), "--cache-dir", str(tmp / "cache")],
             standalone_mode=False)
    finally:
        calls = len(server.chat_calls())
print(json.dumps({{"at_first_call": seen[0] if seen else None, "calls": calls,
                  "after_run": [m for m in {HEAVY!r} if m in sys.modules],
                  "summary": (tmp / "reports" / "latest-plain" / "summary.json").is_file()}}))
"""


def test_run_makes_its_first_call_before_loading_heavy_libraries():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["calls"] == 3 and seen["summary"], seen  # the run really ran and was scored
    assert seen["at_first_call"] == [], f"loaded before the first call: {seen['at_first_call']}"
    assert "pandas" in seen["after_run"]  # scoring still loads what it needs, after the calls
