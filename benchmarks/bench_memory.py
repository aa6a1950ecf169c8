"""Peak memory of a 100,000-item run against the local provider: target under 1 GB.

Synthesizes a classification test set of 100,000 items (14 labels, no train split or corpus,
so the rung is prompt-only) and runs `evalkit run` on it as a child process, with a temporary
reports and cache folder. The peak is the child's maximum resident set size as the kernel
counts it (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`, read after it exits): the whole
process — interpreter, libraries, test set, jobs, cache, journal, scoring and analysis.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from synth import make_testset  # noqa: E402

N_ITEMS = 100_000
TARGET_MB = 600.0  # issue 16: peak RSS at 100k items under 600 MB
EVALKIT = Path(sys.executable).parent / "evalkit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=N_ITEMS)
    n = parser.parse_args().items
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss:
            raise SystemExit("bench_memory: another child ran first; its peak would count")
        elapsed = _run(make_testset(tmp / "synthetic-big", n), tmp / "big")
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        small = max(1, n // 100)
        elapsed_small = _run(make_testset(tmp / "synthetic-small", small), tmp / "small")
    peak_mb = peak_kb / 1024
    print(f"memory, {n} items against the local provider: peak RSS {peak_mb:.0f} MB "
          f"(target < {TARGET_MB:g} MB, ratio {peak_mb / TARGET_MB:.2f}); run took {elapsed:.1f} s")
    per_item_ms = 1000 * (elapsed - elapsed_small) / (n - small)
    print(f"scale: cost per added item from {small} to {n} items: {per_item_ms:.3f} ms "
          f"(whole runs, start-up excluded by the difference: {elapsed_small:.1f} s at {small})")


def _run(ts: Path, work: Path) -> float:
    """Seconds of one `evalkit run` child on test set `ts`."""
    # the run alone: no HTML report (when `run` writes one by default, --no-report skips it)
    helps = subprocess.run([str(EVALKIT), "run", "--help"], capture_output=True, text=True)
    no_report = ["--no-report"] if "--no-report" in helps.stdout else []
    start = time.perf_counter()
    out = subprocess.run([str(EVALKIT), "run", str(ts), "--variants", "prompt-only",
                          "--reports-dir", str(work / "reports"), *no_report,
                          "--cache-dir", str(work / "cache"), "--no-progress"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"evalkit run failed ({out.returncode}):\n{out.stderr}")
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
