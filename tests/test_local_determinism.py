"""The local provider answers the same in every process (issue 11: gate baselines rely on it).

Python randomises string hashing per process, so anything that breaks a tie by set or dict
order of strings answers differently from run to run; the gate then sees drift that is no
change at all. The extraction rules did this (a cue word shared by two requested_action
values). Two processes with different hash seeds must journal identical outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SET = Path(__file__).parent.parent / "testsets" / "ticket-extraction"


def _outputs(tmp: Path, seed: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    subprocess.run([sys.executable, "-c", "from evalkit.cli import main; main()", "run",
                    str(SET), "--variants", "prompt-only,few-shot", "--limit", "60",
                    "--reports-dir", str(tmp / "r"), "--cache-dir", str(tmp / "c"),
                    "--finetune-dir", str(tmp / "f"), "--no-progress", "--no-report"],
                   env=env, check=True, capture_output=True)
    (journal,) = (tmp / "r").glob("2*/predictions.jsonl")
    rows = [json.loads(line) for line in journal.read_text().splitlines()]
    return {f"{r['variant']}/{r['item_id']}": r["output"] for r in rows}


def test_extraction_rules_answer_alike_under_any_hash_seed(tmp_path):
    first = _outputs(tmp_path / "a", "1")
    second = _outputs(tmp_path / "b", "2")
    assert len(first) == 120 and first == second
