"""Property: whatever the latencies, failures, answer lengths, concurrency and cap, the runner
never pays more than the cap, and every job ends journaled exactly once or left for
`--resume` (skipped by the budget), never lost and never answered twice."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evalkit.data.testset import Item
from evalkit.providers.base import Completion, Provider, Usage
from evalkit.run.journal import Journal
from evalkit.run.runner import Job, run_jobs
from evalkit.strategies.request import Request

IN_PRICE, OUT_PRICE, LIMIT = 0.01, 0.03, 20  # dollars per token; output limit in tokens


class Planned(Provider):
    """Answers each item as its plan says; bills what it really used (within its bounds:
    input at most the bound, output at most the limit, as a server that honours limits)."""

    name = "planned"

    def __init__(self, plans: dict[str, tuple[float, bool, int, int]]):
        self.plans = plans
        self.billed_usd = 0.0
        self.calls: list[str] = []

    def model_for(self, request: Request) -> str:
        return "m"

    def estimate_cost(self, request: Request) -> float:
        return self.plans[request.input][3] * IN_PRICE + LIMIT * OUT_PRICE

    async def complete(self, request: Request) -> Completion:
        latency, fails, answer_tokens, input_bound = self.plans[request.input]
        self.calls.append(request.input)
        await asyncio.sleep(latency)
        if fails:
            raise RuntimeError("injected failure")
        used_in = input_bound  # the bound can be reached: a prompt of one-byte tokens
        cost = used_in * IN_PRICE + answer_tokens * OUT_PRICE
        self.billed_usd += cost
        return Completion("x" * answer_tokens, Usage(used_in, answer_tokens), latency, cost, "m")


# (latency s, fails, answer tokens, input tokens); answers at the limit are common, as are
# calls that cost exactly their worst case, so a cap that is off by one call shows
plan = st.tuples(st.sampled_from([0.0, 0.001, 0.004]), st.sampled_from([False] * 4 + [True]),
                 st.one_of(st.just(LIMIT), st.integers(0, LIMIT)), st.integers(1, 60))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(plans=[(0.004, False, LIMIT, 60)] * 40, cap=12.0, concurrency=32, before=0.0)
@given(plans=st.lists(plan, min_size=1, max_size=40), cap=st.floats(0.0, 12.0),
       concurrency=st.integers(1, 32), before=st.floats(0.0, 1.0))
def test_spent_never_crosses_the_cap_and_no_job_is_lost_or_doubled(plans, cap, concurrency,
                                                                     before):
    spent_before = cap * before  # what earlier sessions of the run spent, within the cap
    provider = Planned({f"item {n}": p for n, p in enumerate(plans)})
    jobs = [Job("v", Item(f"i{n}", f"item {n}", "x"),
                lambda it: Request("qa", "Answer.", it.input)) for n in range(len(plans))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.jsonl"
        stats = asyncio.run(run_jobs(jobs, total=len(jobs), provider=provider, cache=None,
                                     journal=Journal(path), concurrency=concurrency,
                                     max_cost_usd=cap, spent_before_usd=spent_before,
                                     progress=False))
        lines = path.read_text().splitlines() if path.is_file() else []
        rows = [json.loads(line) for line in lines]
    assert spent_before + provider.billed_usd <= cap + 1e-9  # the whole run's spend
    assert abs(stats.spent_usd - provider.billed_usd) < 1e-9
    ids = [r["item_id"] for r in rows]
    assert len(ids) == len(set(ids)), "an item was journaled twice"
    assert len(provider.calls) == len(set(provider.calls)), "an item was called twice"
    assert len(ids) + stats.skipped_budget == len(plans), "a job was lost"
    failed = {f"i{n}" for n, p in enumerate(plans) if p[1]}
    assert {r["item_id"] for r in rows if r["error_class"]} == failed & set(ids)
