"""Start-up: `evalkit --help` CPU time (target < 0.3 s), and how soon `evalkit run` calls.

1. `evalkit --help` and `evalkit gate --help` run as child processes five times each; the
   figure is the median of the children's user + system CPU (`resource.getrusage
   (RUSAGE_CHILDREN)` differences), which a shared machine's noise moves far less than wall
   time.
2. `evalkit run` of a 1,000-item prompt-only set against the fast loopback server: wall time
   from starting the process to the server receiving its first chat request (target < 1 s),
   the median of three.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fast_server import FastServer  # noqa: E402
from synth import make_testset  # noqa: E402

EVALKIT = Path(sys.executable).parent / "evalkit"
TARGET_S = 0.3
TARGET_FIRST_CALL_S = 1.0


def cpu_of(args: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(EVALKIT), *args], check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def first_call_s(server: FastServer, testset: Path, work: Path) -> float:
    """Seconds from spawning `evalkit run` to the server's first chat request."""
    before = server.chat_calls()
    env = {**os.environ, "OPENAI_API_KEY": "not-needed"}
    start = time.perf_counter()
    proc = subprocess.Popen([str(EVALKIT), "run", str(testset), "--provider", "openai",
                             "--base-url", server.base_url, "--model", "gpt-4o-mini",
                             "--variants", "prompt-only", "--no-progress",
                             "--reports-dir", str(work / "reports"),
                             "--cache-dir", str(work / "cache")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while server.chat_calls() == before:
            if proc.poll() is not None:
                raise SystemExit(f"bench_startup: evalkit run exited ({proc.returncode}) "
                                 f"before any call")
            time.sleep(0.005)
        return time.perf_counter() - start
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    for args in (["--help"], ["gate", "--help"]):
        cpu = statistics.median(cpu_of(args) for _ in range(5))
        print(f"startup: evalkit {' '.join(args)}: {cpu:.3f} s CPU (target < {TARGET_S} s, "
              f"ratio {cpu / TARGET_S:.2f}, {'met' if cpu < TARGET_S else 'NOT met'})")
    with tempfile.TemporaryDirectory() as tmp, FastServer(latency_s=0.0) as server:
        tmp = Path(tmp)
        testset = make_testset(tmp / "synthetic-1k", 1000)
        first = statistics.median(first_call_s(server, testset, tmp / f"w{i}") for i in range(3))
    print(f"startup: evalkit run, process start to first call (1,000 items, prompt-only): "
          f"{first:.3f} s (target < {TARGET_FIRST_CALL_S:g} s, "
          f"{'met' if first < TARGET_FIRST_CALL_S else 'NOT met'})")


if __name__ == "__main__":
    main()
