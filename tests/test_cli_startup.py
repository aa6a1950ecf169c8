"""The CLI starts without the heavy libraries: `evalkit --help` and `evalkit gate --help` must not
import scikit-learn, scipy, pandas, matplotlib or openai (issue 16: they cost ~2 s of CPU).

Runs in a fresh interpreter so modules other tests imported do not hide a top-level import.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sklearn", "scipy", "pandas", "matplotlib", "openai")

PROBE = f"""
import contextlib, io, json, sys
import evalkit.cli
heavy = {HEAVY!r}
after_import = [m for m in heavy if m in sys.modules]
from evalkit.cli import main
out = io.StringIO()
for args in (["--help"], ["gate", "--help"], ["baseline", "--help"]):
    with contextlib.redirect_stdout(out):
        try:
            main(args, standalone_mode=False)
        except SystemExit:
            pass
print(json.dumps({{"after_import": after_import,
                  "after_help": [m for m in heavy if m in sys.modules],
                  "help": out.getvalue()}}))
"""


def test_cli_help_loads_no_heavy_library():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=60, check=True)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["after_import"] == [], f"importing evalkit.cli loaded {seen['after_import']}"
    assert seen["after_help"] == [], f"--help loaded {seen['after_help']}"
    # The help really ran (commands registered, ladder default shown) rather than failing early.
    assert "gate" in seen["help"] and "run" in seen["help"]
    assert "Compare RUNS" in seen["help"]


def test_python_m_evalkit_cli_is_the_command():
    """`python -m evalkit.cli` runs the same command group as the console script."""
    proc = subprocess.run([sys.executable, "-m", "evalkit.cli", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("evalkit, version "), proc.stdout
