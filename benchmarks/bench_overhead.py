"""Harness overhead against a loopback OpenAI-compatible server with a fixed latency.

Measures the runner with the real `openai` provider (official SDK over HTTP to 127.0.0.1):
1. N = 2,000 items at concurrency C = 64, latency L = 50 ms: wall time against the ideal
   N·L/C (target <= 1.15×);
2. the same at L = 0: wall time per item, which is all overhead (target < 1 ms) — client,
   SDK, HTTP and the test server together — and items per second;
3. the first run again, fully cached: no call reaches the server, >= 20× faster;
plus, for the reader, two floors that say where the time goes:
- evalkit's own share: the same jobs through a provider that answers in memory (request
  build, rendering, cache key, cache, journal, progress bar) — no SDK, no HTTP;
- the SDK alone: the same messages sent with `AsyncOpenAI.chat.completions.create` by C
  plain asyncio tasks, at L = 0 and at L = 50 ms — no evalkit at all.

Timed is the runner (`run_jobs`: every job built, looked up, called, cached, journaled), not
the once-per-run setup and scoring around it; `bench_local_ladder.py` times whole runs. Each
server gets a warm-up run of C items first (the SDK's import, the server's threads and the
connections), so the figures are steady-state, as N·L/C assumes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from loopback import LoopbackServer  # noqa: E402
from synth import make_testset  # noqa: E402

from evalkit.data.testset import load_testset  # noqa: E402
from evalkit.providers.base import Completion, Provider, Usage  # noqa: E402
from evalkit.providers.openai import OpenAIProvider  # noqa: E402
from evalkit.run.cache import ResponseCache  # noqa: E402
from evalkit.run.journal import Journal  # noqa: E402
from evalkit.run.runner import Job, RunStats, run_jobs  # noqa: E402
from evalkit.strategies.request import Request  # noqa: E402
from evalkit.strategies.variants import VariantContext, default_variant  # noqa: E402

N, C, L = 2_000, 64, 0.050
TARGET_RATIO, TARGET_MS, TARGET_SPEEDUP = 1.15, 1.0, 20.0
NO_KEY_ENV = "EVALKIT_BENCH_UNSET_KEY"  # loopback needs no key; never send a real one


class InMemoryProvider(Provider):
    """Answers at once without I/O: what is left of a run is evalkit's own per-item work."""

    name = "in-memory"
    model = "in-memory"

    def model_for(self, request: Request) -> str:
        return request.model or self.model

    def cache_params(self) -> dict:
        return {}

    async def complete(self, request: Request) -> Completion:
        return Completion(text=request.labels[0][0], usage=Usage(100, 1), cost_usd=1e-6,
                          model=self.model)


def jobs_for(testset_dir: Path, variant: str = "prompt-only") -> list[Job]:
    ts = load_testset(testset_dir)
    ctx = VariantContext(ts)
    v = default_variant(variant, ts)
    return [Job(v.name, item, lambda it, v=v: v.build(it, ctx)) for item in ts.test]


def run(jobs: list[Job], provider, cache_path: Path, journal_path: Path) -> RunStats:
    cache = ResponseCache(cache_path)
    try:
        return asyncio.run(run_jobs(jobs, total=len(jobs), provider=provider, cache=cache,
                                    journal=Journal(journal_path), concurrency=C))
    finally:
        cache.close()


def openai_provider(base_url: str) -> OpenAIProvider:
    return OpenAIProvider(model="gpt-4o-mini", base_url=base_url, api_key_env=NO_KEY_ENV)


async def sdk_alone(base_url: str, messages: list[list[dict[str, str]]]) -> float:
    """Seconds for the SDK by itself to send these chats with C concurrent tasks."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="not-needed", base_url=base_url)
    todo = iter(messages)

    async def worker() -> None:
        for m in todo:
            await client.chat.completions.create(model="gpt-4o-mini", messages=m,
                                                 temperature=0.0, seed=0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(C)))
    elapsed = time.perf_counter() - start
    await client.close()
    return elapsed


def measure(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        jobs = jobs_for(make_testset(tmp / "synthetic", n))
        messages = [job.build(job.item).messages() for job in jobs]
        out: dict[str, float] = {}

        with LoopbackServer(latency_s=L) as server:
            _warm_up(jobs, server.base_url, tmp)
            first = run(jobs, openai_provider(server.base_url), tmp / "c50.sqlite", tmp / "a.jsonl")
            _check(first, n, calls=n)
            before = server.chat_calls()
            again = run(jobs, openai_provider(server.base_url), tmp / "c50.sqlite",
                        tmp / "b.jsonl")
            _check(again, n, calls=0)
            out["cached_server_calls"] = server.chat_calls() - before
            out["sdk50_s"] = asyncio.run(sdk_alone(server.base_url, messages))
        out["first_s"], out["cached_s"] = first.wall_s, again.wall_s

        with LoopbackServer(latency_s=0.0) as server:
            _warm_up(jobs, server.base_url, tmp)
            zero = run(jobs, openai_provider(server.base_url), tmp / "c0.sqlite", tmp / "z.jsonl")
            _check(zero, n, calls=n)
            out["sdk0_s"] = asyncio.run(sdk_alone(server.base_url, messages))
        out["zero_s"] = zero.wall_s

        own = run(jobs, InMemoryProvider(), tmp / "cm.sqlite", tmp / "m.jsonl")
        _check(own, n, calls=n)
        out["own_s"] = own.wall_s
        return out


def _warm_up(jobs: list[Job], base_url: str, tmp: Path) -> None:
    """C items through a throwaway cache: imports, server threads and connections ready."""
    warm = run(jobs[:C], openai_provider(base_url), tmp / "warm.sqlite", tmp / "warm.jsonl")
    _check(warm, min(C, len(jobs)), calls=min(C, len(jobs)))
    (tmp / "warm.sqlite").unlink()
    (tmp / "warm.jsonl").unlink()


def _check(stats: RunStats, n: int, *, calls: int) -> None:
    """A benchmark of a broken run measures nothing: every item answered, as expected."""
    if stats.errors or stats.jobs != n or stats.calls != calls:
        raise SystemExit(f"bench_overhead: run went wrong: {stats}")


def main() -> None:
    global C  # the runs read it; a flag may change it for a sweep
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=N)
    parser.add_argument("--concurrency", type=int, default=C, help="C (the target is at 64)")
    args = parser.parse_args()
    n, C = args.items, args.concurrency
    m = measure(n)
    ideal = n * L / C
    ratio = m["first_s"] / ideal
    per_item_ms = 1000 * m["zero_s"] / n
    own_ms = 1000 * m["own_s"] / n
    speedup = m["first_s"] / m["cached_s"]
    print(f"overhead N={n} C={C} L={L * 1000:g} ms: wall {m['first_s']:.3f} s, ideal N*L/C "
          f"{ideal:.3f} s, ratio {ratio:.3f} (target <= {TARGET_RATIO}, "
          f"ratio to target {ratio / TARGET_RATIO:.2f})")
    print(f"overhead at L=0: {per_item_ms:.3f} ms/item (target < {TARGET_MS:g} ms, ratio "
          f"{per_item_ms / TARGET_MS:.2f}), {n / m['zero_s']:.0f} items/s "
          f"[client + SDK + HTTP + test server]")
    print(f"  where it goes: the SDK alone {1000 * m['sdk0_s'] / n:.3f} ms/item at L=0 "
          f"({n / m['sdk0_s']:.0f} items/s), ratio {m['sdk50_s'] / ideal:.3f} to N*L/C at "
          f"L={L * 1000:g} ms; evalkit alone (in-memory provider) {own_ms:.3f} ms/item "
          f"({n / m['own_s']:.0f} items/s)")
    print(f"cached re-run: {m['cached_s']:.3f} s, {m['cached_server_calls']:.0f} server calls "
          f"(target 0), {speedup:.1f}x faster than the first run (target >= "
          f"{TARGET_SPEEDUP:g}x, ratio {TARGET_SPEEDUP / speedup:.2f})")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"bench_overhead took {time.perf_counter() - t0:.1f} s")
