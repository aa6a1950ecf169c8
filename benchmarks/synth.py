"""Synthetic run folders for benchmarks: a test set on disk and a journal for N items × V variants.

The answers are drawn at random with a per-variant accuracy, so everything downstream (scoring,
analysis, report) runs on the real code paths with realistic sizes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

LABELS = [f"intent_{i:02d}" for i in range(14)]
WORDS = ("refund invoice login export sso token charge plan seat error sync api limit data "
         "account password renewal receipt team upgrade cancel delete backup webhook").split()


def make_testset(root: Path, n_items: int, *, seed: int = 0) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "task.yaml").write_text(yaml.safe_dump({
        "name": root.name, "type": "classification", "instructions": "Classify the message.",
        "labels": {label: f"description of {label}" for label in LABELS},
        "metrics": {"primary": "accuracy", "secondary": ["macro_f1"]}}))
    with (root / "test.jsonl").open("w") as fh:
        for i in range(n_items):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
            fh.write(json.dumps({"id": f"item-{i:06d}", "input": text,
                                 "expected": rng.choice(LABELS)}) + "\n")
    return root


def make_run(run_dir: Path, testset_dir: Path, variants: list[str], *, seed: int = 0) -> Path:
    """Write run.json, items.jsonl, predictions.jsonl and messages.jsonl as a finished run
    would."""
    from evalkit.data.testset import load_testset
    from evalkit.run.sent import SentLog

    rng = random.Random(seed)
    ts = load_testset(testset_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "items.jsonl").open("w") as fh:
        for it in ts.test:
            fh.write(json.dumps({"id": it.id, "input": it.input, "expected": it.expected,
                                 "doc_ids": [], "cluster": None}) + "\n")
    sent = SentLog(run_dir / "messages.jsonl")  # what each request sent, as a run records it
    with (run_dir / "predictions.jsonl").open("w") as fh:
        for k, v in enumerate(variants):
            acc = 0.55 + 0.07 * k
            system = f"Classify the message ({v})."
            for it in ts.test:
                out = it.expected if rng.random() < acc else rng.choice(LABELS)
                prompt = sent.record([{"role": "system", "content": system},
                                      {"role": "user", "content": it.input}])
                fh.write(json.dumps({
                    "variant": v, "item_id": it.id, "output": out, "model": "synthetic",
                    "input_tokens": 100 + 40 * k, "output_tokens": 3,
                    "latency_s": rng.uniform(0.2, 1.5), "cost_usd": 1e-5 * (k + 1),
                    "cached": False, "prompt": prompt}) + "\n")
    sent.close()
    totals = {"jobs": len(ts.test) * len(variants), "calls": len(ts.test) * len(variants),
              "cache_hits": 0, "errors": 0, "skipped_budget": 0, "spent_usd": 0.0,
              "notional_usd": 0.0, "wall_s": 0.0}
    (run_dir / "run.json").write_text(json.dumps({
        "run_id": run_dir.name, "config": {"testset": str(testset_dir), "variants": variants,
                                            "provider": "synthetic"},
        "testset": {"name": ts.name, "hash": ts.hash, "n_test": len(ts.test),
                    "n_train": 0, "n_docs": 0, "path": str(testset_dir)},
        "task": {"type": "classification", "primary_metric": "accuracy", "labels": LABELS},
        "setup": {}, "git_commit": None, "versions": {}, "sessions": [totals],
        "totals": totals}))
    return run_dir
