"""`evalkit run --batch` against the loopback server's Batch API (issue 16 part 4).

A batch run submits each server's requests as batches, polls them, journals the answers at the
batch price, survives kill -9 mid-poll without a second submission, splits at the API's
per-batch limits, checks the budget at submission, and journals lines a batch refused as
errors for their items.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai_server import (
    FIXTURES,
    KEY,
    FakeOpenAI,
    assert_key_nowhere,
    cli,
    openai_env,
    read_jsonl,
    run_dirs_args,
)

from evalkit.run import batch as batch_mod
from evalkit.run.batch import STATE_FILE, BatchSettings

INTENTS = FIXTURES / "tiny-intents"
VARIANTS = "prompt-only,few-shot"
_env = openai_env  # autouse: the test key in the environment, no OPENAI_BASE_URL


def _batch_run(server, tmp_path, *extra, ok=True):
    return cli("run", INTENTS, "--provider", "openai", "--base-url", server.base_url,
               "--variants", VARIANTS, *run_dirs_args(tmp_path), "--batch",
               "--batch-poll-interval", "0.02", *extra, ok=ok)


def _run_dir(tmp_path: Path) -> Path:
    return (tmp_path / "reports" / "latest").resolve()


def _cost_per_query(run_dir: Path) -> dict[str, float]:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {v: s["cost"]["per_query_usd"] for v, s in summary["variants"].items()}


def test_a_batch_run_answers_every_item_at_half_the_live_price(tmp_path):
    with FakeOpenAI(api_key=KEY, cached_prompts=False) as server:
        _batch_run(server, tmp_path / "batch")
        assert server.batch_creations() == 1 and server.chat_calls() == []
        cli("run", INTENTS, "--provider", "openai", "--base-url", server.base_url,
            "--variants", VARIANTS, *run_dirs_args(tmp_path / "live"))
    batch_dir, live_dir = _run_dir(tmp_path / "batch"), _run_dir(tmp_path / "live")
    preds = read_jsonl(batch_dir / "predictions.jsonl")
    assert len(preds) == 16 and all(p["error_class"] is None for p in preds)
    batch_cost, live_cost = _cost_per_query(batch_dir), _cost_per_query(live_dir)
    for variant in VARIANTS.split(","):
        assert live_cost[variant] > 0
        assert batch_cost[variant] == pytest.approx(0.5 * live_cost[variant], rel=1e-9)
    state = json.loads((batch_dir / STATE_FILE).read_text())["batches"]
    assert [b["status"] for b in state] == ["completed"] and state[0]["journaled"]
    assert assert_key_nowhere(tmp_path) > 0


def test_kill_mid_poll_then_resume_polls_instead_of_resubmitting(tmp_path):
    with FakeOpenAI(api_key=KEY, batch_polls=10**6) as server:  # never finishes until told
        reports = tmp_path / "reports"
        cmd = [sys.executable, "-c", "from evalkit.cli import main; main()", "run",
               str(INTENTS), "--provider", "openai", "--base-url", server.base_url,
               "--variants", VARIANTS, *map(str, run_dirs_args(tmp_path)), "--batch",
               "--batch-poll-interval", "0.05"]
        env = {**os.environ, "OPENAI_API_KEY": KEY}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                polls = [b["polls"] for b in list(server.batches.values())]
                if polls and polls[0] >= 2:  # submitted, recorded, and polled: kill mid-poll
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the batch was never submitted and polled")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
        recorded = json.loads((run_dir / STATE_FILE).read_text())["batches"]
        assert [b["id"] for b in recorded] == ["batch_0001"] and not recorded[0]["journaled"]
        assert not (run_dir / "predictions.jsonl").exists() or \
            read_jsonl(run_dir / "predictions.jsonl") == []

        server.batch_polls = 0  # the batch finishes at its next poll
        cli("run", "--resume", run_dir.name, *run_dirs_args(tmp_path),
            "--batch-poll-interval", "0.02")
        assert server.batch_creations() == 1  # polled, never resubmitted
        assert server.chat_calls() == []
    preds = read_jsonl(run_dir / "predictions.jsonl")
    assert sorted((p["variant"], p["item_id"]) for p in preds) == sorted(
        (v, f"te-{i:02d}") for v in VARIANTS.split(",") for i in range(1, 9))
    assert json.loads((run_dir / "run.json").read_text())["config"]["batch"] is True


def test_runs_larger_than_the_per_batch_limit_are_split(tmp_path, monkeypatch):
    monkeypatch.setattr("evalkit.pipeline.experiment.BatchSettings",
                        functools.partial(BatchSettings, max_requests=5))
    with FakeOpenAI(api_key=KEY) as server:
        _batch_run(server, tmp_path)
        assert server.batch_creations() == 4  # 16 requests, 5 per batch
        sizes = [len(server.files[b["input_file_id"]].decode().splitlines())
                 for b in server.batches.values()]
    assert sizes == [5, 5, 5, 1]
    preds = read_jsonl(_run_dir(tmp_path) / "predictions.jsonl")
    assert len(preds) == 16 and all(p["output"] for p in preds)


def test_the_cap_is_applied_at_submission(tmp_path):
    with FakeOpenAI(api_key=KEY) as server:
        _batch_run(server, tmp_path, "--max-cost-usd", "0.0008")
        lines = [json.loads(x) for b in server.batches.values()
                 for x in server.files[b["input_file_id"]].decode().splitlines()]
    run_dir = _run_dir(tmp_path)
    totals = json.loads((run_dir / "run.json").read_text())["totals"]
    assert 0 < len(lines) < 16 and totals["skipped_budget"] == 16 - len(lines)
    assert totals["spent_usd"] <= 0.0008


def test_lines_a_batch_refuses_are_errors_for_their_items_only(tmp_path):
    refused = "refund please, renewed by accident"  # te-02's message
    with FakeOpenAI(api_key=KEY, permanent_400=(refused,)) as server:
        _batch_run(server, tmp_path)
    preds = read_jsonl(_run_dir(tmp_path) / "predictions.jsonl")
    errors = [p for p in preds if p["error_class"]]
    assert {(p["item_id"], p["error_class"]) for p in errors} == {("te-02", "BatchError")}
    assert "status 400" in errors[0]["error"] and len(preds) - len(errors) == 14


def test_batch_needs_a_provider_with_a_batch_api(tmp_path):
    result = cli("run", INTENTS, "--variants", "prompt-only", *run_dirs_args(tmp_path),
                 "--batch", ok=False)
    assert result.exit_code != 0 and "--batch needs a provider with a batch API" in result.output


def test_custom_ids_are_stable_per_variant_and_item():
    from types import SimpleNamespace

    job = SimpleNamespace(variant="few-shot", item=SimpleNamespace(id="te-01"))
    other = SimpleNamespace(variant="rag", item=SimpleNamespace(id="te-01"))
    assert batch_mod.custom_id(job) == batch_mod.custom_id(job) != batch_mod.custom_id(other)


def test_a_kill_between_upload_and_create_finds_the_batch_instead_of_creating_another(tmp_path):
    from evalkit.providers.openai import OpenAIProvider

    with FakeOpenAI(api_key=KEY) as server:
        _batch_run(server, tmp_path)
        path = _run_dir(tmp_path) / STATE_FILE
        doc = json.loads(path.read_text())
        doc["batches"][0].update(id=None, status="uploaded", journaled=False)
        path.write_text(json.dumps(doc))  # as if killed after create, before recording it
        state = batch_mod._State(path)
        state.heal(OpenAIProvider(base_url=server.base_url))
        assert state.records[0]["id"] == "batch_0001" and server.batch_creations() == 1
        doc["batches"][0]["input_file_id"] = server.upload(
            "multipart/form-data; boundary=x", b"")["id"]  # a file no batch was made over
        path.write_text(json.dumps(doc))
        state = batch_mod._State(path)
        state.heal(OpenAIProvider(base_url=server.base_url))
        assert state.records[0]["id"] == "batch_0002" and server.batch_creations() == 2
