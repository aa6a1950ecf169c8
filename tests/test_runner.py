"""The runner: per-item errors, the response cache, the journal, resume, budget and the run folder.

Providers here are fakes that count their calls, installed where `run_experiment` gets its
provider, so every "no call was made" claim is counted, not assumed.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FakeProvider

from evalkit.data.testset import Item, load_testset
from evalkit.pipeline.experiment import RunConfig, run_experiment
from evalkit.providers.base import Completion, Provider, Usage
from evalkit.run.cache import ResponseCache, cache_key
from evalkit.run.journal import Journal, Prediction, latest
from evalkit.run.runner import Job, run_jobs
from evalkit.strategies.request import Request

FIXTURES_DIR = Path(__file__).parent / "fixtures"
FAIL_INPUT = "password reset link never shows up and I cannot sign in"  # te-03


def _config(testset, run_dirs, **kw) -> RunConfig:
    return RunConfig(testset=str(testset), variants=kw.pop("variants", ["prompt-only",
                                                                        "few-shot"]),
                     concurrency=kw.pop("concurrency", 4), **run_dirs, **kw)


def _journal(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


def _run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


# --- errors are per item ----------------------------------------------------------------------

def test_exception_in_one_item_is_recorded_and_the_others_finish(intents_dir, run_dirs,
                                                                 fake_provider_factory):
    provider = fake_provider_factory(fail_inputs=[FAIL_INPUT])
    result = run_experiment(_config(intents_dir, run_dirs), progress=False)
    rows = _journal(result.run_dir)
    assert len(rows) == 16 and len(provider.calls) == 16
    failed = [r for r in rows if r["error_class"]]
    assert {(r["variant"], r["item_id"]) for r in failed} == {("prompt-only", "te-03"),
                                                              ("few-shot", "te-03")}
    assert all(r["error_class"] == "RuntimeError" and "injected failure" in r["error"]
               and r["output"] is None for r in failed)
    ok = [r for r in rows if not r["error_class"]]
    assert len(ok) == 14 and all(r["output"] == "refund" for r in ok)

    assert result.stats.errors == 2 and result.stats.calls == 16
    totals = _run_json(result.run_dir)["totals"]
    assert totals["calls"] == 16 and totals["errors"] == 2 and totals["cache_hits"] == 0
    assert totals["jobs"] == 16

    summary = json.loads((result.run_dir / "summary.json").read_text())
    for name in ("prompt-only", "few-shot"):
        v = summary["variants"][name]
        assert v["calls"]["errors"] == 1 and v["calls"]["items"] == 8
        assert v["metrics"]["accuracy"]["n"] == 7 and v["metrics"]["accuracy"]["n_nan"] == 1
        assert v["metrics"]["accuracy"]["mean"] == pytest.approx(2 / 7)  # 2 refund items of 7

    scores = pd.read_csv(result.run_dir / "scores.csv")
    acc = scores[(scores.metric == "accuracy") & (scores.variant == "prompt-only")]
    assert math.isnan(acc.set_index("item_id").loc["te-03", "value"])


def test_a_variant_that_cannot_build_an_item_is_an_error_not_a_crash(tmp_path):
    items = [Item(f"i{n}", f"input {n}", "a") for n in range(4)]

    def build(item):
        if item.id == "i2":
            raise KeyError("template needs a field this item lacks")
        return Request("classification", "Classify.", item.input, labels=(("a", "x"),))

    provider = FakeProvider()
    journal = Journal(tmp_path / "predictions.jsonl")
    stats = asyncio.run(run_jobs([Job("v", it, build) for it in items], total=4,
                                 provider=provider, cache=None, journal=journal,
                                 concurrency=2, progress=False))
    rows = _journal(tmp_path)
    assert stats.errors == 1 and stats.calls == 3 and len(provider.calls) == 3
    assert [r["error_class"] for r in rows if r["item_id"] == "i2"] == ["KeyError"]
    assert sorted(r["item_id"] for r in rows) == ["i0", "i1", "i2", "i3"]


# --- the response cache -----------------------------------------------------------------------

def test_second_run_is_served_from_the_cache_with_zero_calls(intents_dir, run_dirs,
                                                             fake_provider_factory):
    first_provider = fake_provider_factory()
    first = run_experiment(_config(intents_dir, run_dirs), progress=False)
    assert len(first_provider.calls) == 16

    second_provider = fake_provider_factory()
    second = run_experiment(_config(intents_dir, run_dirs), progress=False)
    assert second.run_dir != first.run_dir
    assert second_provider.calls == []
    totals = _run_json(second.run_dir)["totals"]
    assert totals["calls"] == 0 and totals["cache_hits"] == 16 and totals["errors"] == 0
    assert totals["spent_usd"] == 0.0
    assert totals["notional_usd"] == pytest.approx(_run_json(first.run_dir)
                                                   ["totals"]["notional_usd"])
    rows = _journal(second.run_dir)
    assert len(rows) == 16 and all(r["cached"] for r in rows)
    assert all(r["cost_usd"] == pytest.approx(0.001) for r in rows)  # notional cost kept
    first_out = {(r["variant"], r["item_id"]): r["output"] for r in _journal(first.run_dir)}
    assert {(r["variant"], r["item_id"]): r["output"] for r in rows} == first_out


def test_failed_calls_are_not_cached(intents_dir, run_dirs, fake_provider_factory):
    fake_provider_factory(fail_inputs=[FAIL_INPUT])
    run_experiment(_config(intents_dir, run_dirs), progress=False)
    retry = fake_provider_factory()
    result = run_experiment(_config(intents_dir, run_dirs), progress=False)
    assert [r.input for r in retry.calls] == [FAIL_INPUT, FAIL_INPUT]
    assert result.stats.cache_hits == 14 and result.stats.errors == 0


def test_cache_key_changes_with_what_changes_the_answer():
    msgs = [{"role": "user", "content": "hi"}]
    base = dict(provider="p", model="m", messages=msgs, params={"t": 0})
    key = cache_key(**base)
    assert cache_key(**base) == key
    assert cache_key(**{**base, "params": {"t": 0}}) == key  # equal content, equal key
    for change in ({"provider": "q"}, {"model": "m2"}, {"params": {"t": 1}},
                   {"messages": [{"role": "user", "content": "hi!"}]}):
        assert cache_key(**{**base, **change}) != key


def test_the_runners_key_maker_gives_request_keys_own_keys():
    """KeyMaker serialises a provider's fixed part once; its keys must be cache_key's, byte
    for byte, or every existing cache would miss."""
    from evalkit.providers.openai import OpenAIProvider
    from evalkit.run.cache import KeyMaker

    def full(provider, request, epoch):  # cache_key over the whole payload, as it always was
        params = {**provider.cache_params(), "task_type": request.task_type}
        if request.response_format is not None:
            params["response_format"] = request.response_format
        if epoch:
            params["epoch"] = epoch
        return cache_key(provider=provider.name, model=provider.model_for(request),
                         messages=request.messages(), params=params)

    providers = [OpenAIProvider(base_url="http://127.0.0.1:9/v1", require_key=False),
                 OpenAIProvider(base_url="http://127.0.0.1:9/v1", temperature=0.7,
                                require_key=False), FakeProvider()]
    requests = [Request("classification", "Classify.", "refund \u00fcber \u65e5\u672c \"quoted\"",
                        labels=(("billing", "money"), ("login", "access"))),
                Request("qa", "Answer.", "line\u2028break\n\ttab", model="ft:abc"),
                Request("extraction", "Extract.", "x", response_format={"type": "json_object"})]
    maker = KeyMaker()
    keys = set()
    for _ in range(2):  # the second round answers from the memo
        for provider in providers:
            for request in requests:
                for epoch in (0, 3):
                    key = maker.key(provider, request, epoch=epoch)
                    assert key == full(provider, request, epoch)
                    keys.add(key)
    assert len(keys) == len(providers) * len(requests) * 2


def test_completion_to_dict_is_asdict():
    """to_dict spells its fields out (speed); a field added to Completion or Usage must be
    added there too, or the cache would drop it."""
    from dataclasses import asdict

    c = Completion("login", Usage(5, 1, 2), latency_s=0.3, cost_usd=0.02, model="m",
                   cached=True)
    assert c.to_dict() == asdict(c) and list(c.to_dict()) == list(asdict(c))
    assert list(c.to_dict()["usage"]) == list(asdict(c.usage))


def test_cache_round_trip_marks_hits_cached(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    c = Completion("login", Usage(5, 1, 2), latency_s=0.3, cost_usd=0.02, model="m")
    cache.put("k", c)
    cache.close()
    reopened = ResponseCache(tmp_path / "c.sqlite")
    hit = reopened.get("k")
    assert hit == Completion("login", Usage(5, 1, 2), 0.3, 0.02, "m", cached=True)
    assert reopened.get("other") is None
    reopened.close()


def test_a_prefetched_miss_answered_since_is_a_hit_after_the_writer_flushed(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    old = Completion("old", Usage(1, 1), cost_usd=0.01, model="m")
    cache.put("stored", old)
    cache.flush()
    cache.prefetch(["stored", "fresh", "stored"])
    new = Completion("new", Usage(2, 1), cost_usd=0.02, model="m")
    cache.put("fresh", new)  # answered after the batch was looked up (e.g. a twin request)
    cache.flush()            # and already out of the writer's queue
    assert cache.get("fresh") == Completion("new", Usage(2, 1), 0.0, 0.02, "m", cached=True)
    assert cache.get("stored") == Completion("old", Usage(1, 1), 0.0, 0.01, "m", cached=True)
    assert cache.get("stored") is not None  # asked again: its own query, still a hit
    assert cache.get("never") is None
    cache.close()


def test_a_row_still_queued_when_its_batch_is_looked_up_is_a_hit_after_the_flush(tmp_path):
    # variant B renders like variant A: A's answer is put, B's batch is prefetched while the
    # row is still in the writer's queue (not yet in SQLite), then the writer commits it
    cache = ResponseCache(tmp_path / "c.sqlite", flush_s=3600)
    cache.put("twin", Completion("a's answer", Usage(1, 1), cost_usd=0.01, model="m"))
    cache.prefetch(["twin"])
    cache.flush()
    assert cache.get("twin") == Completion("a's answer", Usage(1, 1), 0.0, 0.01, "m",
                                           cached=True)
    cache.close()


def test_the_runner_looks_a_batch_of_keys_up_in_one_query(tmp_path, monkeypatch):
    items = [Item(f"i{n}", f"input {n}", "a") for n in range(150)]

    def build(item):
        return Request("classification", "Classify.", item.input, labels=(("a", "x"),))

    def jobs():
        return [Job("v", it, build) for it in items]

    cache = ResponseCache(tmp_path / "c.sqlite")
    asyncio.run(run_jobs(jobs(), total=150, provider=FakeProvider(), cache=cache,
                         journal=Journal(tmp_path / "a.jsonl"), concurrency=8, progress=False))
    cache.flush()
    single, batched = [], []
    monkeypatch.setattr(cache._store, "fetchone", lambda *a: single.append(a))
    fetchall = cache._store.fetchall
    monkeypatch.setattr(cache._store, "fetchall",
                        lambda *a: batched.append(a) or fetchall(*a))
    again = FakeProvider()
    stats = asyncio.run(run_jobs(jobs(), total=150, provider=again, cache=cache,
                                 journal=Journal(tmp_path / "b.jsonl"), concurrency=8,
                                 progress=False))
    cache.close()
    assert stats.cache_hits == 150 and again.calls == [] and single == []
    assert len(batched) == 3  # 64 + 64 + 22 keys


# --- concurrency, budget, journal -------------------------------------------------------------

def test_concurrency_is_bounded_and_used(intents_dir, run_dirs, fake_provider_factory):
    provider = fake_provider_factory(delay_s=0.01)
    run_experiment(_config(intents_dir, run_dirs, concurrency=3), progress=False)
    assert provider.max_in_flight == 3


def test_budget_cap_stops_calls_before_crossing_and_resume_finishes(intents_dir, run_dirs,
                                                                   fake_provider_factory):
    provider = fake_provider_factory(cost_usd=0.01)
    cfg = _config(intents_dir, run_dirs, concurrency=1, max_cost_usd=0.035)
    result = run_experiment(cfg, progress=False)
    # 0 + 0 -> call; 0.01 + 0.01 -> call; 0.02 + 0.01 -> call; 0.03 + 0.01 > 0.035 -> stop
    assert len(provider.calls) == 3 and result.stats.calls == 3
    assert result.stats.skipped_budget == 13
    assert result.stats.spent_usd == pytest.approx(0.03)
    assert len(_journal(result.run_dir)) == 3  # skipped jobs are left for --resume

    # the cap is the run's: resuming with it (given again, or kept from run.json) adds nothing
    for cap in (0.035, None):
        again = fake_provider_factory(cost_usd=0.01)
        same = run_experiment(_config(intents_dir, run_dirs, concurrency=1, max_cost_usd=cap),
                              resume=result.run_dir.name, progress=False)
        assert again.calls == [] and same.stats.skipped_budget == 13
        assert _run_json(result.run_dir)["totals"]["spent_usd"] == pytest.approx(0.03)

    rest = fake_provider_factory(cost_usd=0.01)
    resumed = run_experiment(_config(intents_dir, run_dirs, concurrency=1, max_cost_usd=1.0),
                             resume=result.run_dir.name, progress=False)
    assert len(rest.calls) == 13 and resumed.stats.jobs == 13
    assert len(latest(Journal(result.run_dir / "predictions.jsonl").read())) == 16


def test_resume_retries_only_errors_and_unfinished_items(intents_dir, run_dirs,
                                                         fake_provider_factory):
    fake_provider_factory(fail_inputs=[FAIL_INPUT])
    first = run_experiment(_config(intents_dir, run_dirs), progress=False)
    retry = fake_provider_factory()
    resumed = run_experiment(_config(intents_dir, run_dirs), resume=first.run_dir.name,
                             progress=False)
    assert resumed.run_dir == first.run_dir
    assert [r.input for r in retry.calls] == [FAIL_INPUT, FAIL_INPUT]
    assert resumed.stats.jobs == 2
    run = _run_json(first.run_dir)
    assert [s["jobs"] for s in run["sessions"]] == [16, 2]
    assert run["totals"]["calls"] == 18 and run["totals"]["error_lines"] == 2
    assert run["totals"]["failed_items"] == run["totals"]["errors"] == 0  # both retried fine
    final = latest(Journal(first.run_dir / "predictions.jsonl").read())
    assert len(final) == 16 and not any(p.error_class for p in final)
    summary = json.loads((first.run_dir / "summary.json").read_text())
    assert summary["variants"]["prompt-only"]["calls"]["errors"] == 0


def test_resume_refuses_a_test_set_that_changed_since_the_run(tmp_path, run_dirs,
                                                             fake_provider_factory):
    import shutil

    copy = tmp_path / "tiny-intents"
    shutil.copytree(FIXTURES_DIR / "tiny-intents", copy)
    fake_provider_factory(fail_inputs=[FAIL_INPUT])
    first = run_experiment(_config(copy, run_dirs), progress=False)
    with (copy / "test.jsonl").open("a") as fh:
        fh.write(json.dumps({"id": "te-99", "input": "a new message", "expected": "bug"}) + "\n")
    retry = fake_provider_factory()
    with pytest.raises(ValueError, match=r"run\.json: field 'testset\.hash': .* changed"):
        run_experiment(_config(copy, run_dirs), resume=first.run_dir.name, progress=False)
    assert retry.calls == []


def test_journal_ignores_and_repairs_a_torn_last_line(tmp_path):
    path = tmp_path / "predictions.jsonl"
    good = json.dumps({"variant": "v", "item_id": "a", "output": "x"})
    path.write_text(good + "\n" + '{"variant": "v", "item_id": "b", "outp')
    journal = Journal(path)
    assert [p.item_id for p in journal.read()] == ["a"]
    journal.append(Prediction("v", "c", "y"))
    journal.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["item_id"] == "c"


def test_a_complete_last_line_without_newline_is_not_lost(tmp_path):
    """A kill between the JSON and its newline: the item counts as unfinished, and is redone."""
    path = tmp_path / "predictions.jsonl"
    a = json.dumps({"variant": "v", "item_id": "a", "output": "x"})
    b = json.dumps({"variant": "v", "item_id": "b", "output": "y"})
    path.write_text(a + "\n" + b)  # b is whole JSON, but its line was never finished
    journal = Journal(path)
    done = {p.item_id for p in journal.read()}
    journal.append(Prediction("v", "c", "z"))
    journal.close()
    finished = {p.item_id for p in Journal(path).read()}
    assert done == {"a"}  # b is not counted as finished, so a resume asks for it again ...
    assert finished == {"a", "c"}  # ... and the cut leaves no half line behind


def test_latest_keeps_the_last_prediction_per_item():
    preds = [Prediction("v", "a", None, error_class="E"), Prediction("v", "b", "1"),
             Prediction("v", "a", "2")]
    assert {(p.item_id, p.output) for p in latest(preds)} == {("a", "2"), ("b", "1")}


# --- the run folder ---------------------------------------------------------------------------

def test_run_folder_records_config_hashes_versions_and_counts(intents_dir, run_dirs,
                                                              fake_provider_factory):
    fake_provider_factory()
    result = run_experiment(_config(intents_dir, run_dirs), progress=False)
    run_dir = result.run_dir
    assert run_dir.parent == Path(run_dirs["reports_dir"])
    for name in ("run.json", "predictions.jsonl", "scores.csv", "summary.json"):
        assert (run_dir / name).is_file(), name
    latest_link = run_dir.parent / "latest"
    assert latest_link.is_symlink() and latest_link.resolve() == run_dir.resolve()

    run = _run_json(run_dir)
    ts = load_testset(intents_dir)
    assert run["run_id"] == run_dir.name
    assert run["config"]["variants"] == ["prompt-only", "few-shot"]
    assert run["testset"]["hash"] == ts.hash and run["testset"]["files"] == ts.file_hashes
    assert run["testset"]["n_test"] == 8
    assert {"python", "pandas", "scikit-learn"} <= set(run["versions"])
    assert "git_commit" in run
    assert len(run["sessions"]) == 1 and run["sessions"][0]["wall_s"] > 0

    scores = pd.read_csv(run_dir / "scores.csv")
    assert list(scores.columns) == ["run", "variant", "item_id", "metric", "value"]
    assert set(scores["run"]) == {run_dir.name}
    assert len(scores[scores.metric == "accuracy"]) == 16

    summary = json.loads((run_dir / "summary.json").read_text())
    assert isinstance(summary["schema_version"], int) and summary["schema_version"] >= 1
    assert summary["ladder"] == ["prompt-only", "few-shot"]
    acc = summary["variants"]["few-shot"]["metrics"]["accuracy"]
    assert acc == {**acc, "mean": pytest.approx(0.25), "n": 8}  # "refund" is right for 2 of 8


# --- SIGKILL mid-run, then --resume -----------------------------------------------------------

SCRIPT = textwrap.dedent('''
    """Run or resume an experiment with a slow provider that logs every call it receives."""
    import asyncio, json, os, sys

    from evalkit.pipeline import experiment, routing
    from evalkit.providers.base import Completion, Provider, Usage

    args = json.loads(sys.argv[1])

    class SlowCountingProvider(Provider):
        name = "slow-counting"
        cost_is_notional = False

        def model_for(self, request):
            return "slow-1"

        def cache_params(self):
            return {}

        async def complete(self, request):
            with open(args["calls_log"], "a") as fh:
                fh.write(json.dumps({"session": args["session"], "model": "slow-1",
                                     "input": request.input}) + "\\n")
                fh.flush()
                os.fsync(fh.fileno())
            await asyncio.sleep(0.05)
            return Completion(text=request.labels[0][0], usage=Usage(5, 1), model="slow-1")

    routing.build_provider = lambda name, setup: SlowCountingProvider()
    config = experiment.RunConfig(testset=args["testset"], variants=["prompt-only"],
                                  concurrency=args["concurrency"], **args["dirs"])
    result = experiment.run_experiment(config, resume=args["resume"], progress=False)
    print(result.run_dir)
''')

N_ITEMS, CONCURRENCY, KILL_AFTER = 120, 4, 30


def _big_testset(root: Path) -> dict[str, str]:
    """A classification set of N_ITEMS distinct inputs (no train split, so nothing leaks)."""
    root.mkdir(parents=True)
    (root / "task.yaml").write_text(
        "name: many\ntype: classification\ninstructions: Classify.\n"
        "labels: {even: an even number, odd: an odd number}\n")
    inputs = {}
    with (root / "test.jsonl").open("w") as fh:
        for n in range(N_ITEMS):
            item_id, text = f"m{n:03d}", f"message {n} asks about item {n * 7919 % 1000}"
            inputs[text] = item_id
            fh.write(json.dumps({"id": item_id, "input": text,
                                 "expected": "even" if n % 2 == 0 else "odd"}) + "\n")
    return inputs


def _journaled_ids(path: Path) -> set[str]:
    """Item ids of complete journal lines (an unfinished last line does not count)."""
    ids = set()
    for line in path.read_text().split("\n")[:-1]:  # only lines that got their newline
        try:
            ids.add(json.loads(line)["item_id"])
        except (json.JSONDecodeError, KeyError):
            pass
    return ids


def test_sigkill_then_resume_repeats_no_journaled_item(tmp_path, run_dirs):
    inputs = _big_testset(tmp_path / "many")
    script = tmp_path / "run_slow.py"
    script.write_text(SCRIPT)
    calls_log = tmp_path / "calls.jsonl"
    reports = Path(run_dirs["reports_dir"])

    def launch(session: str, resume: str | None) -> subprocess.Popen:
        args = {"testset": str(tmp_path / "many"), "calls_log": str(calls_log),
                "session": session, "resume": resume, "concurrency": CONCURRENCY,
                "dirs": run_dirs}
        return subprocess.Popen([sys.executable, str(script), json.dumps(args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    proc = launch("first", None)
    try:
        deadline = time.monotonic() + 30
        journal_path = None
        while time.monotonic() < deadline:
            runs = [p for p in reports.glob("*-many") if p.is_dir()] if reports.is_dir() else []
            if runs and (runs[0] / "predictions.jsonl").is_file():
                journal_path = runs[0] / "predictions.jsonl"
                if len(journal_path.read_text().splitlines()) >= KILL_AFTER:
                    break
            assert proc.poll() is None, f"run ended before the kill: {proc.communicate()}"
            time.sleep(0.01)
        else:
            pytest.fail("the run never journaled enough items to be killed mid-way")
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    journaled = _journaled_ids(journal_path)
    assert KILL_AFTER <= len(journaled) < N_ITEMS
    first_calls = calls_log.read_text().splitlines()
    run_id = journal_path.parent.name

    resumed = launch("second", run_id)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert out.strip().endswith(run_id)

    calls = [json.loads(line) for line in calls_log.read_text().splitlines()]
    second = [inputs[c["input"]] for c in calls if c["session"] == "second"]
    assert len(calls) - len(second) == len(first_calls)
    assert not set(second) & journaled, "a journaled item was called again after resume"
    assert len(second) == len(set(second))
    assert len(calls) <= N_ITEMS + CONCURRENCY  # only calls in flight at the kill repeat

    final = latest(Journal(journal_path).read())
    assert {p.item_id for p in final} == set(inputs.values())
    assert not any(p.error_class for p in final)
    assert len(journal_path.read_text().splitlines()) == N_ITEMS  # nothing journaled twice

    run = _run_json(journal_path.parent)
    killed, session = run["sessions"]
    in_flight_at_kill = len(first_calls) - len(journaled)  # called, never journaled
    # the killed session never wrote its counts: the next one rebuilt them from the journal
    # lines it wrote and the calls it left open in the ledger (calls.jsonl)
    assert killed["status"] == "killed" and session["status"] == "finished"
    assert killed["unjournaled_calls"] == in_flight_at_kill
    assert killed["jobs"] == killed["calls"] == len(first_calls)
    assert run["totals"]["unjournaled"]["calls"] == in_flight_at_kill
    assert session["jobs"] == N_ITEMS - len(journaled)  # journaled items never reached the cache
    assert session["calls"] == len(second)
    assert session["calls"] + session["cache_hits"] == session["jobs"]
    assert run["totals"]["jobs"] == len(first_calls) + session["jobs"]
    # the killed session's paid answers still count: totals come from the journal
    assert run["totals"]["calls"] + run["totals"]["cache_hits"] == N_ITEMS
    assert run["totals"]["calls"] == len(journaled) + session["calls"]


class _SlowOk(Provider):
    """Answers "ok" after 50 ms at `cost_usd`, counting its calls; `worst_usd`, if given, is
    the worst case the budget reserves per call (else the provider has no bound)."""

    name = "slow"
    cost_is_notional = False

    def __init__(self, *, cost_usd: float, worst_usd: float | None = None):
        self.calls, self.cost_usd, self.worst_usd = 0, cost_usd, worst_usd

    def model_for(self, request):
        return "m"

    def cache_params(self):
        return {}

    def estimate_cost(self, request):
        return self.worst_usd

    async def complete(self, request):
        self.calls += 1
        await asyncio.sleep(0.05)
        return Completion(text="ok", usage=Usage(3, 1), cost_usd=self.cost_usd, model="m")


def test_identical_requests_in_flight_are_paid_once(tmp_path):
    """Two jobs that render the same request at the same time share one call (a cache hit)."""

    provider = _SlowOk(cost_usd=0.01)
    same = Request(task_type="qa", instructions="i", input="the same question")
    jobs = [Job(v, Item("q1", "the same question", "ok"), lambda _it: same) for v in "abcd"]
    journal = Journal(tmp_path / "p.jsonl")
    cache = ResponseCache(tmp_path / "c.sqlite")
    stats = asyncio.run(run_jobs(jobs, total=4, provider=provider, cache=cache,
                                 journal=journal, concurrency=4, progress=False))
    cache.close()
    assert provider.calls == 1 and stats.calls == 1 and stats.cache_hits == 3
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert sorted(r["variant"] for r in rows) == ["a", "b", "c", "d"]
    assert [r["cached"] for r in rows].count(False) == 1
    assert all(r["cost_usd"] == 0.01 and r["output"] == "ok" for r in rows)


def test_an_identical_request_answered_while_its_twin_waited_for_budget_room_is_not_paid_again(
        tmp_path):
    """Under a cap that leaves room for one call at a time, two jobs rendering the same request
    (two variants alike, two judged answers alike) both miss the cache; the second waits for
    room while the first is answered. Once it has room, the answer is in the cache (no longer
    in flight): it must be served from there, not bought a second time."""

    provider = _SlowOk(cost_usd=0.001, worst_usd=0.01)  # worst: what the budget reserves
    other = Request(task_type="qa", instructions="i", input="another question")
    same = Request(task_type="qa", instructions="i", input="the same question")
    # the first job holds the room, so both twins find nothing in flight and queue for it
    jobs = [Job("a", Item("q0", "another question", "ok"), lambda _it: other),
            *(Job(v, Item("q1", "the same question", "ok"), lambda _it: same) for v in "ab")]
    cache = ResponseCache(tmp_path / "c.sqlite")
    stats = asyncio.run(run_jobs(jobs, total=3, provider=provider, cache=cache,
                                 journal=Journal(tmp_path / "p.jsonl"), concurrency=3,
                                 max_cost_usd=0.015, progress=False))
    cache.close()
    assert provider.calls == 2 and stats.calls == 2 and stats.cache_hits == 1
    assert stats.spent_usd == pytest.approx(0.002)
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert sorted(r["cached"] for r in rows if r["item_id"] == "q1") == [False, True]


def test_the_cache_key_follows_the_task_type_and_the_local_code(monkeypatch):
    from evalkit.providers import local
    from evalkit.providers.local import LocalProvider
    from evalkit.run.cache import request_key

    provider = LocalProvider()
    clf = Request(task_type="classification", instructions="i", input="x")
    qa = Request(task_type="qa", instructions="i", input="x")
    assert clf.messages() == qa.messages()
    assert request_key(provider, clf) != request_key(provider, qa)
    before = request_key(provider, clf)
    monkeypatch.setattr(local, "CODE_VERSION", "edited")
    assert request_key(provider, clf) != before  # an edited local provider is a new model


# --- latency and queueing apart (issue 16.2) ---------------------------------------------------

def test_client_side_wait_is_recorded_apart_from_latency(intents_dir, run_dirs,
                                                         fake_provider_factory):
    # the fake waits 40 ms before it "sends" and reports 1 ms of server latency: the wait must
    # land in queue_s and run.json's queue percentiles, never in latency_s
    fake_provider_factory(delay_s=0.04)
    first = run_experiment(_config(intents_dir, run_dirs), progress=False)
    rows = _journal(first.run_dir)
    assert len(rows) == 16 and all(r["latency_s"] == 0.001 for r in rows)
    assert all(0.035 <= r["queue_s"] < 5 for r in rows), [r["queue_s"] for r in rows]
    totals = _run_json(first.run_dir)["totals"]
    waits = [r["queue_s"] for r in rows]
    for key, q in (("queue_p50_s", 50), ("queue_p95_s", 95)):
        assert totals[key] == pytest.approx(float(np.percentile(waits, q)), abs=1e-6)
    # a cached re-run makes no call, so it has no wait to report
    again = run_experiment(_config(intents_dir, run_dirs), progress=False)
    assert all(r["queue_s"] is None for r in _journal(again.run_dir))
    assert _run_json(again.run_dir)["totals"]["queue_p50_s"] is None
