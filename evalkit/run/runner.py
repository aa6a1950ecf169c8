"""The runner: every (variant, item) job through the provider, concurrently, exactly once.

A fixed pool of `concurrency` workers pulls jobs from one iterator, so memory stays flat for
any number of items. For each job: build the Request, look it up in the cache, else call the
provider; journal the result the moment it is known. A call that raises is journaled as an
error for that item and the run goes on. With `max_cost_usd`, no call is issued once the
spend so far, plus the expected cost of the calls still in flight, plus this call's expected
cost (the provider's `estimate_cost(request)` when it makes a guess, and never less than the dearest
call seen) would cross the cap; those jobs are left unjournaled, so `--resume` can finish them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from tqdm import tqdm

from evalkit.data.testset import Item
from evalkit.providers.base import Completion, Provider
from evalkit.run.cache import ResponseCache, request_key
from evalkit.run.journal import Journal, Prediction, shown
from evalkit.strategies.request import Request


@dataclass
class Job:
    variant: str
    item: Item
    build: Callable[[Item], Request]


@dataclass
class RunStats:
    jobs: int = 0
    calls: int = 0          # provider calls made (including failed ones)
    cache_hits: int = 0
    errors: int = 0
    skipped_budget: int = 0
    spent_usd: float = 0.0  # what this run actually paid (cache hits are free)
    notional_usd: float = 0.0  # what every answer would have cost uncached
    wall_s: float = 0.0


async def run_jobs(jobs: Iterable[Job], *, total: int, provider: Provider,
                   cache: ResponseCache | None, journal: Journal, concurrency: int = 8,
                   max_cost_usd: float | None = None, progress: bool = True,
                   label: str = "") -> RunStats:
    """Run every job; the progress bar reads `label` (the test set) and the current variant."""
    stats = RunStats()
    it = iter(jobs)
    # disable=None: tqdm draws only on a terminal, so CI logs are not flooded
    bar = tqdm(total=total, disable=None if progress else True, unit="item", leave=False)
    max_call_cost = 0.0
    reserved = 0.0  # expected cost of the calls in flight
    inflight: dict[str, asyncio.Future] = {}  # cache key -> the answer one worker is fetching
    start = time.perf_counter()
    shown = [""]  # the variant the bar names

    async def worker() -> None:
        nonlocal max_call_cost, reserved
        for job in it:  # a shared iterator: each job goes to exactly one worker
            stats.jobs += 1
            if job.variant != shown[0]:  # jobs come variant by variant: name the one started
                shown[0] = job.variant
                bar.set_description(f"{label} {job.variant}".strip(), refresh=False)
            try:
                request = job.build(job.item)
                key = request_key(provider, request)
            except Exception as exc:  # a variant that cannot build or render this item
                _record_error(journal, stats, job, exc)
                bar.update()
                continue
            completion = cache.get(key) if cache else None
            if completion is None and key in inflight:
                # the same request is already on its way (e.g. two variants rendering alike):
                # share that answer instead of paying for it twice, as a cache hit would
                try:
                    completion = replace(await asyncio.shield(inflight[key]), cached=True)
                except Exception:
                    completion = None  # that call failed: make our own attempt
            if completion is None:
                guess = 0.0  # this call's expected cost, reserved while it is in flight
                if max_cost_usd is not None:
                    try:
                        guess = max(max_call_cost, provider.estimate_cost(request) or 0.0)
                    except Exception as exc:  # e.g. no price known for the model: don't call
                        _record_error(journal, stats, job, exc)
                        bar.update()
                        continue
                    if stats.spent_usd + reserved + guess > max_cost_usd:
                        stats.skipped_budget += 1
                        bar.update()
                        continue
                stats.calls += 1
                reserved += guess
                shared = inflight[key] = asyncio.get_running_loop().create_future()
                try:
                    completion = await provider.complete(request)
                    shared.set_result(completion)
                except Exception as exc:
                    shared.set_exception(exc)
                    shared.exception()  # retrieved: no "never retrieved" warning without waiters
                    _record_error(journal, stats, job, exc)
                    bar.update()
                    continue
                finally:
                    reserved -= guess
                    inflight.pop(key, None)
                    if not shared.done():  # cancelled mid-call: release any waiters
                        shared.cancel()
                stats.spent_usd += completion.cost_usd
                max_call_cost = max(max_call_cost, completion.cost_usd)
                if cache:
                    cache.put(key, completion)
            else:
                stats.cache_hits += 1
            stats.notional_usd += completion.cost_usd
            journal.append(_prediction(job, request, completion))
            bar.update()

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    finally:
        bar.close()
        journal.close()
        await provider.aclose()  # HTTP clients close inside their loop
    stats.wall_s = time.perf_counter() - start
    return stats


def _prediction(job: Job, request: Request, c: Completion) -> Prediction:
    return Prediction(
        variant=job.variant, item_id=job.item.id, output=c.text, model=c.model,
        input_tokens=c.usage.input_tokens, output_tokens=c.usage.output_tokens,
        cached_input_tokens=c.usage.cached_input_tokens, latency_s=c.latency_s,
        cost_usd=c.cost_usd, cached=c.cached, **shown(request.passages),
    )


def _record_error(journal: Journal, stats: RunStats, job: Job, exc: Exception) -> None:
    stats.errors += 1
    journal.append(Prediction(variant=job.variant, item_id=job.item.id, output=None,
                              error_class=type(exc).__name__, error=str(exc)[:500]))
