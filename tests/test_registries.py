"""The registries at the seams: a task type and metrics registered from this file run end to end.

A new task type `echo` (expected: one word), two metrics (`echo_match`, 0/1; `answer_chars`,
lower-is-better and unbounded) and a local-provider answerer are registered here, never in
evalkit; a real run through the local provider must then show both metrics in summary.json,
with the interval each one's spec calls for, and the gate must read `answer_chars`'s
direction from the registry (a rise fails, a fall passes). Everything is unregistered after,
and a test set of type `echo` is then refused at load again.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from evalkit import tasks
from evalkit.config import ExperimentConfig
from evalkit.data.testset import TestsetError, load_testset
from evalkit.gate.baseline import update_baseline
from evalkit.gate.check import Tolerances, gate_runs
from evalkit.pipeline.experiment import RunConfig, run_experiment
from evalkit.providers import PROVIDERS, provider_class
from evalkit.providers.local import LOCAL_ANSWERERS
from evalkit.registry import Registry, UnknownName

# input -> (expected, what the echo answerer says: the input's first word)
ROWS = [("alpha beta", "alpha"), ("gamma delta", "gamma"), ("epsilon zeta", "epsilon"),
        ("eta theta", "iota"), ("kappa lambda", "kappa"), ("mu nu", "xi")]


def _check_word(expected, task) -> None:
    if not isinstance(expected, str) or " " in expected:
        raise ValueError(f"must be one word, got {expected!r}")


@pytest.fixture
def echo_registered():
    tasks.register_metric(tasks.Metric(
        "echo_match", "item", lambda ctx: float(ctx.parsed == ctx.item.expected),
        task_types=("echo",), binary=True))
    tasks.register_metric(tasks.Metric(
        "answer_chars", "item", lambda ctx: float(len(ctx.output)), task_types=("echo",),
        range=(0.0, math.inf), higher_is_better=False))
    tasks.register_task_type(tasks.TaskType(
        "echo", check_expected=_check_word, metrics=("echo_match", "answer_chars"),
        parse=lambda output, task: output.strip().lower()))
    LOCAL_ANSWERERS.register("echo", lambda request, ft, provider: request.input.split()[0])
    yield
    LOCAL_ANSWERERS.unregister("echo")
    tasks.TASK_TYPES.unregister("echo")
    tasks.METRICS.unregister("answer_chars")
    tasks.METRICS.unregister("echo_match")


def _echo_set(root: Path, *, expected_last: str = "xi") -> Path:
    root.mkdir(parents=True)
    (root / "task.yaml").write_text(
        "name: echo-set\ntype: echo\ninstructions: Say the first word.\n"
        "metrics:\n  primary: echo_match\n  secondary: [answer_chars]\n")
    rows = [*ROWS[:-1], (ROWS[-1][0], expected_last)]
    (root / "test.jsonl").write_text("".join(
        json.dumps({"id": f"e{i}", "input": text, "expected": exp}) + "\n"
        for i, (text, exp) in enumerate(rows)))
    return root


def test_a_registered_task_type_and_metric_reach_summary_and_gate(echo_registered, tmp_path,
                                                                   run_dirs):
    ts_dir = _echo_set(tmp_path / "echo-set")
    result = run_experiment(RunConfig(testset=str(ts_dir), variants=["prompt-only"],
                                      **run_dirs), progress=False)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    metrics = summary["variants"]["prompt-only"]["metrics"]
    answers = [text.split()[0] for text, _ in ROWS]
    assert summary["primary_metric"] == "echo_match"
    assert metrics["echo_match"]["mean"] == pytest.approx(
        sum(a == e for a, (_, e) in zip(answers, ROWS)) / len(ROWS))  # 4 of 6
    assert metrics["answer_chars"]["mean"] == pytest.approx(
        sum(map(len, answers)) / len(answers))
    assert metrics["answer_chars"]["method"] == "t"
    assert metrics["answer_chars"]["ci_high"] > 1.0  # unbounded: not clipped to [0, 1]

    base = tmp_path / "base.json"
    update_baseline([result.run_dir], base)

    def gated(mean: float) -> dict:
        raw = json.loads(base.read_text())
        raw["testsets"]["echo-set"]["variants"]["prompt-only"]["metrics"]["answer_chars"][
            "mean"] = mean
        base.write_text(json.dumps(raw))
        report = gate_runs([result.run_dir], [base], tolerances_for=lambda _: Tolerances())
        return {c.check: c for c in report.checks if c.kind == "metric"}

    run_mean = metrics["answer_chars"]["mean"]
    shorter_before = gated(run_mean - 1.0)  # the run's answers got longer: worse
    assert shorter_before["answer_chars"].status == "fail"
    assert "rose" in shorter_before["answer_chars"].reason
    assert shorter_before["echo_match"].status == "pass"
    longer_before = gated(run_mean + 1.0)  # the run's answers got shorter: better
    assert longer_before["answer_chars"].status == "pass"
    assert "fell" in longer_before["answer_chars"].reason


def test_a_type_the_local_provider_cannot_answer_is_refused_before_any_call(
        echo_registered, tmp_path, run_dirs):
    """A plug-in type without a LOCAL_ANSWERERS entry: run (and testset check, which shares
    the pre-flight) refuse it up front, instead of a failed call journaled for every item."""
    from evalkit.pipeline.preflight import cheap_refusals

    answerer = LOCAL_ANSWERERS.unregister("echo")
    try:
        ts_dir = _echo_set(tmp_path / "echo-set")
        with pytest.raises(ValueError, match="local provider cannot answer 'echo' tasks"):
            run_experiment(RunConfig(testset=str(ts_dir), variants=["prompt-only"],
                                     **run_dirs), progress=False)
        assert not any(Path(run_dirs["reports_dir"]).glob("*/predictions.jsonl"))
        testset = load_testset(ts_dir)
        refusals = cheap_refusals(testset, ["prompt-only"], provider="local",
                                  finetune_dir=run_dirs["finetune_dir"], config=ExperimentConfig())
        assert [r.check for r in refusals] == ["provider"]
        # a server model can be asked anything (a loopback URL: no key needed, none called)
        assert cheap_refusals(testset, ["prompt-only"], provider="openai",
                              finetune_dir=run_dirs["finetune_dir"], config=ExperimentConfig(),
                              provider_options={"base_url": "http://127.0.0.1:9/v1"}) == []
    finally:
        LOCAL_ANSWERERS.register("echo", answerer)  # the fixture removes it


def test_expected_is_checked_by_the_registered_type(echo_registered, tmp_path):
    root = _echo_set(tmp_path / "bad", expected_last="two words")
    with pytest.raises(TestsetError) as info:
        load_testset(root)
    assert "test.jsonl:6:" in str(info.value) and "field 'expected'" in str(info.value)
    assert "must be one word" in str(info.value)


def test_an_unregistered_type_is_refused_at_load(tmp_path):
    root = _echo_set(tmp_path / "echo-set")
    with pytest.raises(TestsetError) as info:
        load_testset(root)
    assert "field 'type'" in str(info.value) and "'echo'" in str(info.value)
    assert "classification" in str(info.value)  # lists the registered types


def test_metric_specs_declare_direction_range_and_kind():
    assert tasks.metric_names(task_type="classification", level="run") == ("macro_f1",)
    assert tasks.metric("accuracy").binary and not tasks.metric("token_f1").binary
    assert not tasks.higher_is_better("latency_s") and tasks.higher_is_better("accuracy")
    assert tasks.bounds("latency_s") is None and tasks.bounds("mrr") == (0.0, 1.0)
    assert set(tasks.metrics_in("cost")) == {"latency_s", "input_tokens", "output_tokens",
                                             "cost_usd"}


def test_registry_lists_names_and_refuses_doubles():
    reg: Registry[int] = Registry("widget")
    reg.register("one", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("one", 2)
    with pytest.raises(UnknownName, match=r"unknown widget 'onw'; did you mean 'one'\? known: one"):
        reg.get("onw")
    assert reg.names() == ("one",) and reg.unregister("one") == 1 and "one" not in reg


def test_provider_registry_builds_by_name_with_default_hooks():
    assert set(PROVIDERS.names()) >= {"local", "openai"}
    local = provider_class("local")
    assert local.name == "local" and not local.takes_server_options
    assert local(finetune_dir="unused").price_book() is None  # default hook: not token-priced
    with pytest.raises(ValueError, match=r"unknown provider 'nope';.* known: local, openai"):
        provider_class("nope")


def test_public_api_is_lazy_and_complete():
    """`import evalkit` loads no heavy library; every exported name resolves on first use."""
    import subprocess
    import sys

    import evalkit

    probe = ("import sys, evalkit; print([m for m in ('sklearn', 'pandas', 'scipy', 'numpy') "
             "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]"
    assert sorted(evalkit.__all__) == sorted(["__version__", *evalkit._EXPORTS])
    for name in evalkit._EXPORTS:
        assert getattr(evalkit, name) is not None
    assert evalkit.load_testset is load_testset and evalkit.run_experiment is run_experiment


def test_a_task_types_response_format_reaches_the_request_body_and_cache_key(echo_registered,
                                                                              tmp_path):
    """The structured-output hook: what a TaskType asks for is sent as `response_format`, and
    is part of the cache key (a JSON-mode answer is not a plain-text one)."""
    from evalkit.providers.openai import OpenAIProvider
    from evalkit.run.cache import request_key
    from evalkit.strategies.variants import VariantContext, default_variant

    schema = {"type": "json_schema", "json_schema": {"name": "echo", "schema": {
        "type": "object", "properties": {"word": {"type": "string"}}}}}
    plain = tasks.TASK_TYPES.unregister("echo")
    tasks.register_task_type(tasks.TaskType(
        "echo", check_expected=_check_word, metrics=plain.metrics,
        response_format=lambda task: schema))
    try:
        ts = load_testset(_echo_set(tmp_path / "echo-set"))
        request = default_variant("prompt-only", ts).build(ts.test[0], VariantContext(ts))
        provider = OpenAIProvider(base_url="http://127.0.0.1:9/v1", require_key=False)
        assert request.response_format == schema
        assert provider.body(request)["response_format"] == schema
        plain_request = replace(request, response_format=None)
        assert "response_format" not in provider.body(plain_request)
        assert request_key(provider, request) != request_key(provider, plain_request)
    finally:
        tasks.TASK_TYPES.unregister("echo")
        tasks.register_task_type(plain)
