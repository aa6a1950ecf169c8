"""The bundled local ladder end to end, as `make eval` runs it: target under 60 s on 2 cores.

Runs `evalkit run testsets/*` then `evalkit report` for each test set, as child processes, into
a temporary reports/cache/finetunes folder, twice: the first run starts from an empty cache
(nothing trained, indexed or answered yet) and is the figure held to the target; the second
re-uses that cache and fine-tunes, for comparison. The environment is warmed first (one
`evalkit --version`: the interpreter, site-packages and bytecode in the page cache), as the
target says "environment warm".
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVALKIT = Path(sys.executable).parent / "evalkit"
TARGET_S = 60.0


def testsets() -> list[Path]:
    return sorted(p.parent for p in (ROOT / "testsets").glob("*/task.yaml"))


def ladder(work: Path) -> tuple[float, float]:
    """Seconds for `evalkit run` over every bundled test set, and for rendering the reports."""
    dirs = ["--reports-dir", str(work / "reports"), "--cache-dir", str(work / "cache"),
            "--finetune-dir", str(work / "finetunes")]
    start = time.perf_counter()
    _evalkit("run", *map(str, testsets()), *dirs, "--no-progress")
    ran = time.perf_counter()
    for ts in testsets():
        _evalkit("report", str(work / "reports" / f"latest-{ts.name}"))
    return ran - start, time.perf_counter() - ran


def _evalkit(*args: str) -> None:
    out = subprocess.run([str(EVALKIT), *args], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"evalkit {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")


def main() -> None:
    _evalkit("--version")  # warm: interpreter, imports and bytecode cached
    with tempfile.TemporaryDirectory() as tmp:
        fresh_run, fresh_report = ladder(Path(tmp))
        warm_run, warm_report = ladder(Path(tmp))
    fresh, warm = fresh_run + fresh_report, warm_run + warm_report
    names = ", ".join(ts.name for ts in testsets())
    print(f"local ladder ({names}) on {os.cpu_count()} cores, fresh cache: {fresh:.1f} s "
          f"(run {fresh_run:.1f} s + reports {fresh_report:.1f} s; target < {TARGET_S:g} s, "
          f"ratio {fresh / TARGET_S:.2f}); again with that cache: {warm:.1f} s "
          f"(run {warm_run:.1f} s + reports {warm_report:.1f} s)")


if __name__ == "__main__":
    main()
