"""Start-up: `evalkit --help` CPU time (target < 0.3 s), and how soon `evalkit run` calls.

1. `evalkit --help` and `evalkit gate --help` run as child processes five times each; the
   figure is the median of the children's user + system CPU (`resource.getrusage
   (RUSAGE_CHILDREN)` differences), which a shared machine's noise moves far less than wall
   time.
2. `evalkit run` (the console script, a fresh process) of a cached-ready test set, prompt-only,
   against the fast loopback server (target < 1 s): wall time from just before the process is
   spawned to the server's handler receiving the first chat request, as the server's own
   clock says (`FastServer.arrival`: CLOCK_MONOTONIC, one clock for every process here; no
   polling loop in this process competes with the one measured), and the CPU the process used
   until it was killed there. Median of three, after one untimed run.
   "Cached-ready" is the state of a set that has been run or checked before, with an empty
   response cache (so every item is a call): Python's bytecode is compiled (the children get
   a private PYTHONPYCACHEPREFIX and no PYTHONDONTWRITEBYTECODE, which some shells set; the
   untimed run writes it, as the first run after an install would), and a set with a train
   split has its leakage scan remembered by an earlier `evalkit testset check` (copied into
   each run's fresh --cache-dir). Two sets: a synthetic 1,000 items with no train split, and
   the bundled support-intents (392 test, 616 train).
"""

from __future__ import annotations

import os
import resource
import shutil
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
ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.3
TARGET_FIRST_CALL_S = 1.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_of(args: list[str]) -> float:
    before = _cpu()
    subprocess.run([str(EVALKIT), *args], check=True, capture_output=True)
    return _cpu() - before


def child_env(pycache: Path) -> dict[str, str]:
    """The environment of a user's shell after the first run: bytecode cached."""
    env = {**os.environ, "OPENAI_API_KEY": "not-needed", "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def first_call(server: FastServer, testset: Path, work: Path, env: dict[str, str], *,
               memo: Path | None = None) -> tuple[float, float]:
    """(wall s from spawning `evalkit run` to the server receiving its first chat request,
    CPU s of that process until it was killed right after)."""
    if memo is not None:  # the remembered leakage scan, into this run's empty cache folder
        shutil.copytree(memo, work / "cache" / "leakage")
    base_url = server.arm(work.name)  # this run's own URL: a killed run's stragglers are not it
    before = _cpu()
    start = time.monotonic()
    proc = subprocess.Popen([str(EVALKIT), "run", str(testset), "--provider", "openai",
                             "--base-url", base_url, "--model", "gpt-4o-mini",
                             "--variants", "prompt-only", "--no-progress",
                             "--reports-dir", str(work / "reports"),
                             "--cache-dir", str(work / "cache")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        arrived = server.arrival(alive=lambda: proc.poll() is None)
    except RuntimeError:
        raise SystemExit(f"bench_startup: evalkit run exited ({proc.returncode}) before any "
                         f"call") from None
    finally:
        proc.kill()
        proc.wait()
    return arrived - start, _cpu() - before


def measure(label: str, tag: str, server: FastServer, testset: Path, tmp: Path,
            env: dict[str, str], *, memo: Path | None = None) -> None:
    first_call(server, testset, tmp / f"{tag}-warm", env, memo=memo)  # bytecode, untimed
    runs = [first_call(server, testset, tmp / f"{tag}-{i}", env, memo=memo) for i in range(3)]
    wall = statistics.median(w for w, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    print(f"startup: evalkit run, process start to first request ({label}, prompt-only): "
          f"{wall:.3f} s wall, {cpu:.3f} s CPU (median of 3; target < "
          f"{TARGET_FIRST_CALL_S:g} s wall, {'met' if wall < TARGET_FIRST_CALL_S else 'NOT met'};"
          f" runs: {', '.join(f'{w:.3f}/{c:.3f}' for w, c in runs)} s wall/CPU)")


def main() -> None:
    print(f"startup: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for args in (["--help"], ["gate", "--help"]):
        cpu = statistics.median(cpu_of(args) for _ in range(5))
        print(f"startup: evalkit {' '.join(args)}: {cpu:.3f} s CPU (target < {TARGET_S} s, "
              f"ratio {cpu / TARGET_S:.2f}, {'met' if cpu < TARGET_S else 'NOT met'})")
    with tempfile.TemporaryDirectory() as tmp, FastServer(latency_s=0.0) as server:
        tmp = Path(tmp)
        env = child_env(tmp / "pycache")
        synthetic = make_testset(tmp / "synthetic-1k", 1000)
        measure("1,000 items, no train split", "synthetic", server, synthetic, tmp, env)
        intents = ROOT / "testsets" / "support-intents"
        subprocess.run([str(EVALKIT), "testset", "check", str(intents), "--variants",
                        "prompt-only", "--cache-dir", str(tmp / "checked")], env=env,
                       check=True, capture_output=True)
        measure("support-intents, 392 test + 616 train, scan remembered", "intents", server,
                intents, tmp, env, memo=tmp / "checked" / "leakage")
    print(f"startup: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
