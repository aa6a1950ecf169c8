"""evalkit against the wire: the same N chats through three clients, side by side, one run.

Against `fast_server.py` (an aiohttp server in its own process that answers after exactly L),
N = 1,000 prompt-only chats at concurrency C = 32, three clients interleaved round by round
(the machine is shared and noisy: ratios within one round are what this reports):
- **bare**: a plain aiohttp client — C tasks, one pooled session, each item's body
  serialised, posted, the answer parsed and one JSONL line written per item;
- **SDK**: `AsyncOpenAI.chat.completions.create` by C plain asyncio tasks (the SDK floor);
- **evalkit**: the runner (`run_jobs`: request built and rendered, cache looked up and
  written, call ledger and journal lines written, as `evalkit run` does) with the real
  `openai` provider.
For each: wall time over the ideal N·L/C at L = 50 ms, and client CPU ms per item at L = 0
(`time.process_time` of this process; the server's CPU is its own process's). Each client
is warmed up first (imports, connections), so the figures are steady-state.
Then evalkit's recorded p50 latency against a 5 ms server at C = 32 (target < 20 ms: the
latency recorded must be the server's, not the harness's queueing), beside the bare client's
own send-to-last-byte p50 in the same conditions (what any client on a busy loop adds).

Targets (issue 16): evalkit's wall within 1.15x the bare client's at L = 50 ms; its CPU per
item at L = 0 at most 1.5x the bare client's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fast_server import FastServer  # noqa: E402
from synth import make_testset  # noqa: E402

from evalkit.data.testset import load_testset  # noqa: E402
from evalkit.providers.openai import OpenAIProvider  # noqa: E402
from evalkit.run.cache import ResponseCache  # noqa: E402
from evalkit.run.journal import Journal  # noqa: E402
from evalkit.run.ledger import CallLedger  # noqa: E402
from evalkit.run.runner import Job, run_jobs  # noqa: E402
from evalkit.strategies.variants import VariantContext, default_variant  # noqa: E402

N, C, L = 1_000, 32, 0.050
ROUNDS = 3
TARGET_WALL, TARGET_CPU, TARGET_P50_MS = 1.15, 1.5, 20.0
NO_KEY_ENV = "EVALKIT_BENCH_UNSET_KEY"  # the loopback server needs no key; never send one


def jobs_for(testset_dir: Path) -> list[Job]:
    ts = load_testset(testset_dir)
    ctx = VariantContext(ts)
    v = default_variant("prompt-only", ts)
    return [Job(v.name, item, lambda it, v=v: v.build(it, ctx)) for item in ts.test]


def body(messages: list[dict[str, str]]) -> dict:
    return {"model": "gpt-4o-mini", "messages": messages, "temperature": 0.0, "seed": 0}


async def bare(base_url: str, messages: list, out: Path) -> None:
    import aiohttp

    todo = iter(messages)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=C)) as session:
        with out.open("w") as fh:
            async def worker() -> None:
                for m in todo:
                    data = json.dumps(body(m)).encode()
                    sent = time.perf_counter()
                    async with session.post(f"{base_url}/chat/completions", data=data,
                                            headers={"content-type": "application/json"}) as r:
                        answer = json.loads(await r.read())
                    fh.write(json.dumps({"output": answer["choices"][0]["message"]["content"],
                                         "usage": answer["usage"],
                                         "latency_s": time.perf_counter() - sent}) + "\n")

            await asyncio.gather(*(worker() for _ in range(C)))


async def sdk(base_url: str, messages: list, out: Path) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="not-needed", base_url=base_url)
    todo = iter(messages)

    async def worker() -> None:
        for m in todo:
            await client.chat.completions.create(**body(m))

    await asyncio.gather(*(worker() for _ in range(C)))
    await client.close()


async def evalkit_run(base_url: str, jobs: list[Job], out: Path) -> None:
    provider = OpenAIProvider(model="gpt-4o-mini", base_url=base_url, api_key_env=NO_KEY_ENV)
    cache = ResponseCache(out.with_suffix(".sqlite"))
    try:
        stats = await run_jobs(jobs, total=len(jobs), provider=provider, cache=cache,
                               journal=Journal(out), concurrency=C, progress=False,
                               ledger=CallLedger(out.with_suffix(".calls.jsonl"), 1))
    finally:
        cache.close()
    if stats.errors or stats.calls != len(jobs):
        raise SystemExit(f"bench_wire: evalkit run went wrong: {stats}")


def timed(fn, *args) -> tuple[float, float]:
    """(wall s, CPU s) of one client run."""
    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(fn(*args))
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(tmp: Path, n: int, latency: float) -> dict[str, list[tuple[float, float]]]:
    jobs = jobs_for(make_testset(tmp / "synthetic", n))
    messages = [job.build(job.item).messages() for job in jobs]
    results: dict[str, list[tuple[float, float]]] = {"bare": [], "sdk": [], "evalkit": []}
    with FastServer(latency_s=latency) as server:
        runs = {"bare": lambda o: (bare, server.base_url, messages, o),
                "sdk": lambda o: (sdk, server.base_url, messages, o),
                "evalkit": lambda o: (evalkit_run, server.base_url, jobs, o)}
        for name, args in runs.items():  # warm-up: imports, connections, server
            timed(*args(tmp / f"warm-{name}.jsonl"))
        for r in range(ROUNDS):
            for name, args in runs.items():
                results[name].append(timed(*args(tmp / f"{name}-{latency}-{r}.jsonl")))
        expected = n * (1 + ROUNDS) * 3
        if server.chat_calls() != expected:
            raise SystemExit(f"bench_wire: server saw {server.chat_calls()} chats, "
                             f"expected {expected}")
    return results


def p50_latency(tmp: Path, n: int) -> tuple[float, float, float]:
    """evalkit's recorded p50 latency (ms) against a 5 ms server, the bare client's (its
    send-to-last-byte on the same loop: the floor a busy asyncio client adds), and the
    server's 5 ms."""
    jobs = jobs_for(make_testset(tmp / "synthetic5", n))
    messages = [job.build(job.item).messages() for job in jobs]
    p50 = {}
    with FastServer(latency_s=0.005) as server:
        for name, run, args in (("evalkit", evalkit_run, jobs), ("bare", bare, messages)):
            out = tmp / f"p50-{name}.jsonl"
            asyncio.run(run(server.base_url, args, out))
            lat = [json.loads(line)["latency_s"] for line in out.read_text().splitlines()]
            p50[name] = 1000 * statistics.median(lat)
    return p50["evalkit"], p50["bare"], 5.0


def main() -> None:
    global C
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=N)
    parser.add_argument("--concurrency", type=int, default=C)
    args = parser.parse_args()
    n, C = args.items, args.concurrency
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        at50 = measure(tmp / "l50", n, L)
        at0 = measure(tmp / "l0", n, 0.0)
        p50_ms, bare_p50_ms, server_ms = p50_latency(tmp / "p50", n)
    ideal = n * L / C
    print(f"wire N={n} C={C}: median of {ROUNDS} interleaved rounds; ideal N*L/C = {ideal:.3f} s")
    print(f"  {'client':<8} {'wall/ideal L=50ms':>18} {'CPU ms/item L=0':>16}")
    med = {k: (statistics.median(w for w, _ in at50[k]),
               statistics.median(c for _, c in at0[k])) for k in at50}
    for name, (wall, cpu) in med.items():
        print(f"  {name:<8} {wall / ideal:>18.3f} {1000 * cpu / n:>16.3f}")
    wall_ratio = med["evalkit"][0] / med["bare"][0]
    cpu_ratio = med["evalkit"][1] / med["bare"][1]
    print(f"evalkit / bare: wall at L=50 ms {wall_ratio:.3f}x (target <= {TARGET_WALL}, "
          f"{'met' if wall_ratio <= TARGET_WALL else 'NOT met'}); CPU per item at L=0 "
          f"{cpu_ratio:.3f}x (target <= {TARGET_CPU}, "
          f"{'met' if cpu_ratio <= TARGET_CPU else 'NOT met'})")
    print(f"evalkit recorded p50 latency against a {server_ms:g} ms server at C={C}: "
          f"{p50_ms:.2f} ms (target < {TARGET_P50_MS:g} ms, "
          f"{'met' if p50_ms < TARGET_P50_MS else 'NOT met'}); the bare client's: "
          f"{bare_p50_ms:.2f} ms")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"bench_wire took {time.perf_counter() - t0:.1f} s")
