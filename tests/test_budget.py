"""The budget cap is a guarantee: against a loopback server that answers long, counts more
tokens than chars/4 guesses, ignores output limits, or omits usage, at concurrency 32 and
across resumed sessions, what the server itself bills (its usage x the price) never exceeds
`--max-cost-usd`. Each case also checks that the run did real work (not a cap kept by
making no call) and that no job was lost or answered twice."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from openai_server import FIXTURES, FakeOpenAI, cli, openai_env, run_dirs_args

from evalkit.data.testset import Item
from evalkit.providers.openai import OpenAIProvider, approx_tokens, input_token_bound
from evalkit.providers.pricing import PriceBook
from evalkit.run.journal import Journal
from evalkit.run.runner import STOP_BUDGET, Job, run_jobs
from evalkit.strategies.request import Request

_env = openai_env
# dear tokens, so a few dozen calls reach a readable cap: $1 per 1k input, $4 per 1k output
PRICES = {"models": {"m": {"input_per_mtok": 1000.0, "output_per_mtok": 4000.0}}}
LABELS = (("refund", "money back for a charge"), ("login", "cannot sign in"))
INTENTS = FIXTURES / "tiny-intents"
CJK = "請問我上個月被重複扣款了怎麼辦🙂"  # 3-4 UTF-8 bytes a character; chars/4 sees 1/4 token


def _jobs(n: int, *, task: str = "qa", text: str = "what is the refund window") -> list[Job]:
    def build(item: Item) -> Request:
        labels = LABELS if task == "classification" else ()
        return Request(task, "Answer briefly.", item.input, labels=labels)

    return [Job("v", Item(f"i{k:03d}", f"{text} #{k}", "x"), build) for k in range(n)]


def _capped(server: FakeOpenAI, tmp_path: Path, *, cap: float, n: int = 60,
            concurrency: int = 8, **job_kw):
    provider = OpenAIProvider(model="m", base_url=server.base_url, pricing=PRICES)
    journal_path = tmp_path / "predictions.jsonl"
    stats = asyncio.run(run_jobs(_jobs(n, **job_kw), total=n, provider=provider, cache=None,
                                 journal=Journal(journal_path), concurrency=concurrency,
                                 max_cost_usd=cap, progress=False))
    rows = [json.loads(line) for line in journal_path.read_text().splitlines()]
    ids = [r["item_id"] for r in rows]
    assert len(ids) == len(set(ids)), "an item was journaled twice"
    assert len(ids) + stats.skipped_budget + stats.not_started == n, "a job was lost"
    billed = server.billed_usd(PriceBook.from_section(PRICES))
    assert stats.spent_usd >= billed - 1e-12  # our count is never below the server's
    return stats, billed, rows


def test_long_answers_are_cut_by_the_limit_every_request_carries(tmp_path):
    with FakeOpenAI(answer_tokens=650) as server:
        stats, billed, rows = _capped(server, tmp_path, cap=4.0)  # ~11 worst cases
        bodies = [r.body for r in server.chat_calls()]
    assert all(b["max_completion_tokens"] == b["max_tokens"] == 64 for b in bodies)  # qa
    assert all(r["output_tokens"] <= 64 for r in rows)
    assert stats.stop == STOP_BUDGET and len(rows) >= 8
    assert billed <= 4.0


def test_inputs_that_chars_over_4_undercounts_stay_under_the_cap(tmp_path):
    text = CJK * 20
    msgs = [{"role": "user", "content": text}]
    assert approx_tokens(msgs) * 3 < len(text.encode())  # what the old estimate was off by
    with FakeOpenAI(tokenizer="bytes") as server:  # a token per byte: the most BPE can count
        stats, billed, rows = _capped(server, tmp_path, cap=12.0, text=text)
        counted = [server.prompt_tokens[r.content_key] for r in server.chat_calls(200)]
    assert max(counted) <= input_token_bound([{"role": "system", "content": "Answer briefly."},
                                              {"role": "user", "content": text + " #59"}])
    assert stats.stop == STOP_BUDGET and len(rows) >= 5
    assert billed <= 12.0


@pytest.mark.parametrize("obeys,cap", [(("max_tokens",), 3.0), ((), 30.0)],
                         ids=["llama.cpp", "ignores-both"])
def test_a_server_that_ignores_max_completion_tokens(tmp_path, obeys, cap):
    with FakeOpenAI(answer_tokens=650, obeys=obeys) as server:
        stats, billed, rows = _capped(server, tmp_path, cap=cap, task="classification",
                                      concurrency=32)
    if obeys:  # llama.cpp's server honours max_tokens, which is sent too
        assert all(r["output_tokens"] <= 16 for r in rows) and not stats.output_limit_ignored
    else:      # the first answer shows it; the worst case then stops trusting the limit
        assert stats.output_limit_ignored == "the server answered 650 tokens to a 16-token limit"
        assert all(r["output_tokens"] == 650 for r in rows)
    assert stats.stop == STOP_BUDGET and len(rows) >= 5
    assert billed <= cap


def test_concurrency_32_and_no_usage_reported(tmp_path):
    with FakeOpenAI(report_usage=False, answer_tokens=10) as server:
        stats, _, rows = _capped(server, tmp_path, cap=3.0, n=200, concurrency=32)
        answered = server.chat_calls(200)
    # the server reports no usage: each answer is billed at its upper bounds, so what the
    # run counts (and caps) is at least what any byte-level tokenizer would have billed
    cost_bound = sum(r["cost_usd"] for r in rows)
    assert len(rows) == len(answered) >= 10 and stats.stop == STOP_BUDGET
    assert stats.spent_usd == pytest.approx(cost_bound) and cost_bound <= 3.0
    assert all(r["output_tokens"] >= len(r["output"]) for r in rows)


def _many(root: Path, n: int = 40) -> Path:
    root.mkdir(parents=True)
    (root / "task.yaml").write_text("name: many\ntype: qa\ninstructions: Answer briefly.\n")
    with (root / "test.jsonl").open("w") as fh:
        for k in range(n):
            fh.write(json.dumps({"id": f"q{k:02d}", "input": f"question {k} about refunds",
                                 "expected": ["30 days"]}) + "\n")
    return root


def test_resume_with_the_same_cap_spends_nothing_more(tmp_path):
    testset = _many(tmp_path / "many")
    config = tmp_path / "exp.yaml"
    config.write_text(json.dumps({"pricing": PRICES, "provider": {"model": "m"}}))
    with FakeOpenAI(answer_tokens=650) as server:
        args = ["--provider", "openai", "--base-url", server.base_url, "--config", config,
                "--variants", "prompt-only", "--concurrency", 32, *run_dirs_args(tmp_path)]
        first = cli("run", testset, *args, "--max-cost-usd", 3.0, ok=False)
        assert first.exit_code == 3, first.output
        run_id = (tmp_path / "reports" / "latest").resolve().name
        after_first = server.billed_usd(PriceBook.from_section(PRICES))
        resume = ["--resume", run_id, *run_dirs_args(tmp_path)]
        again = cli("run", *resume, "--max-cost-usd", 3.0, ok=False)
        kept = cli("run", *resume, ok=False)  # no flag: the run's own cap still holds
        billed = server.billed_usd(PriceBook.from_section(PRICES))
    assert again.exit_code == kept.exit_code == 3
    assert 0 < after_first == billed <= 3.0  # no session added anything: the cap is the run's
    assert "budget stop: spent $" in first.output and "of the $3.000 cap" in first.output
    assert f"evalkit run --resume {run_id}" in first.output
    summary = json.loads((tmp_path / "reports" / run_id / "summary.json").read_text())
    assert summary["partial"] is True and summary["partial_reason"].startswith("budget stop")
    assert "PARTIAL RUN (budget stop" in first.output  # the console says so ...
    assert "[partial] Ship prompt-only" in first.output  # ... on the recommendation too
    run = json.loads((tmp_path / "reports" / run_id / "run.json").read_text())
    assert run["totals"]["spent_usd"] == pytest.approx(billed)
    assert [s["status"] for s in run["sessions"]] == ["budget"] * 3


# --- a server that is not there ---------------------------------------------------------------

def test_a_closed_port_stops_the_run_within_seconds_naming_the_base_url(tmp_path):
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on: bind, note it, close
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    start = time.monotonic()
    result = cli("run", INTENTS, "--provider", "openai", "--base-url", url, "--variants",
                 "prompt-only,few-shot", "--concurrency", 4, *run_dirs_args(tmp_path), ok=False)
    elapsed = time.monotonic() - start
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"cannot reach the server at {url}" in errors[0]
    assert "5 connection attempts in a row failed" in errors[0]
    assert elapsed < 8, f"took {elapsed:.1f} s"  # the SDK's own backoff alone: ~15 s per item
    run = json.loads(((tmp_path / "reports").glob("*-tiny-intents").__next__()
                      / "run.json").read_text())
    assert run["sessions"][-1]["stop"] == "unreachable"
    assert run["totals"]["error_lines"] <= 4  # the calls in flight, not one per item


# --- Ctrl-C -----------------------------------------------------------------------------------

def test_ctrl_c_finishes_the_calls_in_flight_prints_the_resume_command_and_exits_130(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    with FakeOpenAI(slow={"": 0.4}) as server:  # every answer takes 0.4 s
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OPENAI_API_KEY": "k"}
        proc = subprocess.Popen(
            [sys.executable, "-c", "from evalkit.cli import main; main()", "run", str(INTENTS),
             "--provider", "openai", "--base-url", server.base_url, "--variants",
             "prompt-only,few-shot", "--concurrency", "4",
             *map(str, run_dirs_args(tmp_path))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60
        while not server.chat_calls() and time.monotonic() < deadline:
            time.sleep(0.02)  # wait for the first wave of calls to reach the server
        assert server.chat_calls(), "no call reached the server"
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        answered = server.chat_calls(200)
    assert proc.returncode == 130, err
    run_dir = next((tmp_path / "reports").glob("*-tiny-intents"))
    assert f"evalkit run --resume {run_dir.name} --reports-dir" in err
    assert "Traceback" not in err
    lines = (run_dir / "predictions.jsonl").read_text().splitlines()
    assert 1 <= len(lines) == len(answered) < 16  # every call in flight was journaled
    from evalkit.run.ledger import open_calls
    assert open_calls(run_dir / "calls.jsonl") == []
    session = json.loads((run_dir / "run.json").read_text())["sessions"][-1]
    assert session["status"] == "interrupted" and session["not_started"] > 0


def test_ledger_lines_read_back_whatever_the_cost_even_an_unbounded_worst_case(tmp_path):
    """The ledger writes its lines as strings, not through json: each must still be JSON
    that open_calls reads, for a float, an int and a worst case with no bound (inf)."""
    import math

    from evalkit.run.ledger import CallLedger, open_calls

    ledger = CallLedger(tmp_path / "calls.jsonl", 3)
    a, b, c = (ledger.open_call(k, w) for k, w in (("k1", 0.25), ("k\"2", 1), ("k3", math.inf)))
    ledger.close_call(b, 0.5)
    ledger.close()
    held = {call.key: call.worst_usd for call in open_calls(tmp_path / "calls.jsonl")}
    assert held == {"k1": 0.25, "k3": math.inf}
    assert all(call.session == 3 for call in open_calls(tmp_path / "calls.jsonl"))
