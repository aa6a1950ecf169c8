"""A task type is one module plus one entry: a type registered from this file, and nothing else,
is inferred and offered by `evalkit init` and gets its own output limit from the openai provider.

The type `verdict` (is a claim true? `expected` is a JSON boolean) declares what every stage
asks of a type: how `expected` is checked, its metric, how an answer is parsed, its output
limit (`default_output_tokens`, 3) and its `Scaffold` (how a file of `claim`/`truth` rows fits
it, how such a file is read, the instructions init writes). No evalkit module names it: init
must infer it from the file (its fit beats every built-in's), list it among `--type`'s choices,
split by its stratum and write a task.yaml that loads; a run through the loopback
OpenAI-compatible server must send 3 as the output limit of every call, and the config's
`output_limits.verdict` must still override it. Unregistered after, init no longer offers it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import write_jsonl
from openai_server import FakeOpenAI, cli, openai_env, run_dirs_args

from evalkit import tasks
from evalkit.data import importers
from evalkit.data.testset import TestsetError, load_testset
from evalkit.providers.openai import OpenAIProvider
from evalkit.strategies.variants import VariantContext, default_variant

_env = openai_env  # autouse: the test key in the environment, no OPENAI_BASE_URL
INSTRUCTIONS = "Say whether the claim is true. Reply true or false."


def _check(expected, task) -> None:
    if not isinstance(expected, bool):
        raise ValueError(f"must be true or false, got {expected!r}")


def _fit(rows) -> float:
    """Certain for rows whose `truth` is a JSON boolean, else not at all."""
    return 1.0 if isinstance(rows[0].get("truth"), bool) else 0.0


def _read(path: Path, *, text_key: str | None = None, target_key: str | None = None):
    items = []
    for lineno, row in importers.read_jsonl(path):
        truth = row.get(target_key or "truth")
        if not isinstance(truth, bool):
            raise TestsetError(path, "must be true or false", line=lineno, field="truth")
        items.append({"id": str(row["id"]), "input": row[text_key or "claim"],
                      "expected": truth})
    return items


@pytest.fixture
def verdict_registered():
    tasks.register_metric(tasks.Metric(
        "verdict_match", "item", lambda ctx: float(ctx.parsed == ctx.item.expected),
        task_types=("verdict",), binary=True))
    tasks.register_task_type(tasks.TaskType(
        "verdict", check_expected=_check, metrics=("verdict_match",),
        parse=lambda output, task: "true" in output.lower(), default_output_tokens=3,
        scaffold=tasks.Scaffold(fit=_fit, read=_read, instructions=INSTRUCTIONS,
                                stratum=lambda item: item["expected"], stratum_name="truth")))
    yield
    tasks.TASK_TYPES.unregister("verdict")
    tasks.METRICS.unregister("verdict_match")


def _claims(path: Path) -> Path:
    """Twenty claims, half true: to the built-in types just texts with no label or answer."""
    return write_jsonl(path, [{"id": f"c{i}", "claim": f"claim number {i} holds",
                               "truth": i % 2 == 0} for i in range(20)])


def test_init_infers_offers_and_drafts_a_type_registered_here(verdict_registered, tmp_path):
    source = _claims(tmp_path / "claims.jsonl")
    assert "verdict" in cli("init", "--help").output  # --type's choices: the registry's
    out = tmp_path / "sets" / "claims"
    init = cli("init", source, out, "--yes")
    assert "type: verdict (inferred" in init.output
    assert "metrics: primary verdict_match" in init.output
    task = yaml.safe_load((out / "task.yaml").read_text())
    assert task["type"] == "verdict" and task["instructions"] == INSTRUCTIONS
    assert task["metrics"]["primary"] == "verdict_match"
    ts = load_testset(out)
    assert len(ts.test) == 4 and len(ts.train) == 16  # 20 % of each truth value held out
    assert sorted(it.expected for it in ts.test) == [False, False, True, True]
    assert "stratified by truth" in (out / "README.md").read_text()
    # its reader takes JSONL only: a CSV given as this type is refused, naming who reads CSV
    table = tmp_path / "claims.csv"
    table.write_text("text,label\nclaim one,yes\nclaim two,no\n")
    refused = cli("init", table, tmp_path / "csv", "--type", "verdict", "--yes", ok=False)
    assert refused.exit_code != 0
    assert "a CSV file imports as classification, not verdict" in refused.output


def test_the_openai_provider_sends_the_types_own_output_limit(verdict_registered, tmp_path):
    out = tmp_path / "claims"
    cli("init", _claims(tmp_path / "claims.jsonl"), out, "--yes")
    with FakeOpenAI() as server:
        cli("run", out, "--provider", "openai", "--base-url", server.base_url, "--model",
            "gpt-4o-mini", "--variants", "prompt-only", *run_dirs_args(tmp_path))
        calls = server.chat_calls(status=200)
    assert len(calls) == 4  # every test item, each asked for at most 3 tokens
    assert {(c.body["max_tokens"], c.body["max_completion_tokens"]) for c in calls} == {(3, 3)}
    summary = json.loads((tmp_path / "reports" / "latest" / "summary.json").read_text())
    assert "verdict_match" in summary["variants"]["prompt-only"]["metrics"]

    ts = load_testset(out)
    request = default_variant("prompt-only", ts).build(ts.test[0], VariantContext(ts))
    url = "http://127.0.0.1:9/v1"
    assert OpenAIProvider(base_url=url, require_key=False).output_limit(request) == 3
    tuned = OpenAIProvider(base_url=url, require_key=False, output_limits={"verdict": 7})
    assert tuned.output_limit(request) == 7  # the config's override per type, as before


def test_an_unregistered_type_is_no_longer_offered(tmp_path):
    result = cli("init", _claims(tmp_path / "claims.jsonl"), tmp_path / "x", "--type",
                 "verdict", "--yes", ok=False)
    assert result.exit_code == 2 and "'verdict' is not one of" in result.output
    assert "verdict" not in tasks.scaffolded_types()
    assert "verdict" not in OpenAIProvider(base_url="http://127.0.0.1:9/v1",
                                           require_key=False).output_limits
