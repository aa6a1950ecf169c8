"""Repeated sampling (issue 15.5): `--epochs K` runs each item K times and reports the noise."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openai_server import FIXTURES, FakeOpenAI, cli, openai_env, read_jsonl, run_dirs_args
from scipy import stats as sps

assert openai_env  # the autouse fixture: the test key in the environment

DOC = Path(__file__).parent.parent / "docs" / "summary-schema.md"


def _config(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(f"""\
variants:
  - name: sampled
    base: prompt-only
    provider: openai
    base_url: {base_url}
    model: gpt-4o-mini
    temperature: 0.9
  - name: greedy
    base: prompt-only
    provider: openai
    base_url: {base_url}
    model: gpt-4o-mini
    temperature: 0
""")
    return path


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("epochs")
    with FakeOpenAI(sampling=True) as server:
        cfg = _config(tmp, server.base_url)
        first = cli("run", FIXTURES / "tiny-intents", "--config", cfg, "--epochs", "3",
                    *run_dirs_args(tmp))
        calls = server.chat_calls(status=200)
        again = cli("run", FIXTURES / "tiny-intents", "--config", cfg, "--epochs", "3",
                    *run_dirs_args(tmp))
        calls_again = server.chat_calls(status=200)
    run_dir = Path(re.findall(r"^run folder: (.+)$", first.output, flags=re.M)[0])
    return run_dir, first.output, calls, len(calls_again), again.output


def test_every_item_runs_k_times_with_its_own_seed_and_cache_entry(sampled_run):
    run_dir, _, calls, n_after_rerun, again = sampled_run
    assert len(calls) == 2 * 8 * 3
    seeds = {(c.body["temperature"], c.body["seed"]) for c in calls}
    assert seeds == {(0.9, 0), (0.9, 1), (0.9, 2), (0, 0), (0, 1), (0, 2)}
    preds = read_jsonl(run_dir / "predictions.jsonl")
    assert sorted({p.get("epoch", 0) for p in preds}) == [0, 1, 2] and len(preds) == 48
    assert json.loads((run_dir / "run.json").read_text())["epochs"] == {"k": 3,
                                                                        "sampling": True}
    # a second run is served entirely from the cache: each epoch has its own entry
    assert n_after_rerun == len(calls)
    assert "calls made: 0, served from cache: 48" in again


def test_sampling_shows_spread_and_flaky_items(sampled_run):
    run_dir, output, _, _, _ = sampled_run
    summary = json.loads((run_dir / "summary.json").read_text())
    block = summary["epochs"]
    by_epoch = pd.read_csv(run_dir / "epoch_scores.csv", dtype={"item_id": str})
    acc = by_epoch[(by_epoch["metric"] == "accuracy") & (by_epoch["variant"] == "sampled")]
    wide = acc.pivot(index="item_id", columns="epoch", values="value")
    means = wide.mean().tolist()
    flaky = sorted(i for i, row in wide.iterrows() if row.nunique() > 1)
    sampled = block["variants"]["sampled"]
    assert sampled["means"] == pytest.approx(means)
    assert sampled["spread"] == pytest.approx(max(means) - min(means)) and sampled["spread"] > 0
    assert sampled["sd"] == pytest.approx(np.std(means, ddof=1))
    assert sampled["flaky_items"] == flaky and sampled["n_flaky"] == len(flaky) > 0
    greedy = block["variants"]["greedy"]
    assert greedy["spread"] == 0 and greedy["n_flaky"] == 0
    assert block["sampling"] is True and "note" not in block
    assert f"sampled: [{', '.join(f'{m:.3f}' for m in means)}], spread " in output
    assert f"{len(flaky)} flaky ({', '.join(flaky)})" in output
    # the variant's mean averages the epochs; its interval is a t interval over item means
    item_means = wide.mean(axis=1)
    st = summary["variants"]["sampled"]["metrics"]["accuracy"]
    assert st["mean"] == pytest.approx(float(np.mean(means)))
    low, high = sps.t.interval(0.95, len(item_means) - 1, loc=item_means.mean(),
                               scale=sps.sem(item_means))
    assert st["method"] == "t" and st["n"] == 8
    assert (st["ci_low"], st["ci_high"]) == pytest.approx((max(low, 0), min(high, 1)))
    scores = pd.read_csv(run_dir / "scores.csv", dtype={"item_id": str})
    mine = scores[(scores["variant"] == "sampled") & (scores["metric"] == "accuracy")]
    assert dict(zip(mine["item_id"], mine["value"], strict=True)) == \
        pytest.approx(item_means.to_dict())


def test_the_report_shows_the_spread_and_every_epochs_field_is_documented(sampled_run):
    run_dir = sampled_run[0]
    cli("report", run_dir)
    html = (run_dir / "index.html").read_text()
    assert 'id="epoch-spread"' in html and "Repeated sampling: 3 answers per item" in html
    flaky = json.loads((run_dir / "summary.json").read_text())["epochs"]["variants"][
        "sampled"]["flaky_items"]
    assert ", ".join(flaky) in html
    documented = set(re.findall(r"^\| `(epochs\.[^`]+)` \|", DOC.read_text(), re.M))
    block = json.loads((run_dir / "summary.json").read_text())["epochs"]
    written = {f"epochs.{k}" for k in block if k != "variants"} | {
        f"epochs.variants.<variant>.{k}" for k in block["variants"]["sampled"]}
    assert written <= documented and documented - written == {"epochs.note"}


def test_a_deterministic_provider_shows_zero_spread_and_says_why(tmp_path):
    result = cli("run", FIXTURES / "tiny-intents", "--variants", "prompt-only,few-shot",
                 "--epochs", "3", *run_dirs_args(tmp_path))
    run_dir = (tmp_path / "reports" / "latest-tiny-intents").resolve()
    block = json.loads((run_dir / "summary.json").read_text())["epochs"]
    assert block["k"] == 3 and block["sampling"] is False
    for v in block["variants"].values():
        assert v["spread"] == 0 and v["n_flaky"] == 0 and len(v["means"]) == 3
    assert "deterministic" in block["note"] and "says nothing about sampling noise" in \
        block["note"]
    assert "note: every provider of this run is deterministic" in result.output
    assert len(read_jsonl(run_dir / "predictions.jsonl")) == 2 * 8 * 3
    cli("report", run_dir)
    assert 'id="epochs-note"' in (run_dir / "index.html").read_text()


def test_a_variants_total_cost_sums_every_epochs_answers(sampled_run):
    """summary.json's total_notional_usd summed scores.csv's per-item means over the
    epochs: one epoch's worth, so after --epochs 3 the variants added up to a third of
    run.json's total (a helper's run: $0.00372 against $0.01115)."""
    run_dir = sampled_run[0]
    preds = read_jsonl(run_dir / "predictions.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text())
    for name in ("sampled", "greedy"):
        paid = sum(p["cost_usd"] for p in preds if p["variant"] == name)
        assert paid > 0
        assert summary["variants"][name]["cost"]["total_notional_usd"] == pytest.approx(paid)
    run = json.loads((run_dir / "run.json").read_text())
    assert sum(v["cost"]["total_notional_usd"] for v in summary["variants"].values()) == \
        pytest.approx(run["totals"]["notional_usd"])
