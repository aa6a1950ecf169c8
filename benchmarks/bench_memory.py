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
TARGET_MB = 1000.0
EVALKIT = Path(sys.executable).parent / "evalkit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=N_ITEMS)
    n = parser.parse_args().items
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ts = make_testset(tmp / "synthetic-100k", n)
        if resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss:
            raise SystemExit("bench_memory: another child ran first; its peak would count")
        start = time.perf_counter()
        out = subprocess.run([str(EVALKIT), "run", str(ts), "--variants", "prompt-only",
                              "--reports-dir", str(tmp / "reports"),
                              "--cache-dir", str(tmp / "cache"), "--no-progress"],
                             capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if out.returncode != 0:
            raise SystemExit(f"evalkit run failed ({out.returncode}):\n{out.stderr}")
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak_mb = peak_kb / 1024
    print(f"memory, {n} items against the local provider: peak RSS {peak_mb:.0f} MB "
          f"(target < {TARGET_MB:g} MB, ratio {peak_mb / TARGET_MB:.2f}); run took {elapsed:.1f} s")


if __name__ == "__main__":
    main()
