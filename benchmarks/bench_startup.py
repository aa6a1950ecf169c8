"""`evalkit --help` and `evalkit gate --help`: CPU time of a fresh process (target < 0.3 s).

Each command runs as a child process five times; the figure is the median of the children's
user + system CPU (`resource.getrusage(RUSAGE_CHILDREN)` differences), which the noise of a
shared machine moves far less than wall time.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
from pathlib import Path

EVALKIT = Path(sys.executable).parent / "evalkit"
TARGET_S = 0.3


def cpu_of(args: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(EVALKIT), *args], check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    for args in (["--help"], ["gate", "--help"]):
        cpu = statistics.median(cpu_of(args) for _ in range(5))
        print(f"startup: evalkit {' '.join(args)}: {cpu:.3f} s CPU (target < {TARGET_S} s, "
              f"ratio {cpu / TARGET_S:.2f}, {'met' if cpu < TARGET_S else 'NOT met'})")


if __name__ == "__main__":
    main()
