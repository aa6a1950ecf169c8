"""What recording the messages sent costs (evalkit/run/sent.py): CPU per item and bytes.

N = 1,000 synthetic classification items (benchmarks/synth.py, 14 labels) with a 300-item train
split; for each of prompt-only and few-shot (the task's default k = 4, most similar) every
item's Request is built and rendered first (the runner does both anyway: the cache key hashes
the messages), then journaled twice into fresh folders, interleaved round by round: once as
before (the journal line only) and once with `messages=` (the texts and prompt written once
each to messages.jsonl, the journal line naming its prompt). Reported per item: the CPU
(`time.process_time`) the recording adds, the median of the rounds, against the journal line
alone and against evalkit's CPU per item on the wire (docs/benchmarks.md); and the bytes each
file grows by.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synth import LABELS, WORDS, make_testset  # noqa: E402

from evalkit.data.testset import load_testset  # noqa: E402
from evalkit.run.journal import Journal, Prediction  # noqa: E402
from evalkit.strategies.variants import VariantContext, default_variant  # noqa: E402

# evalkit's client CPU per item on the wire at L = 0 (bench_wire.py, make bench of 2026-12-04)
WIRE_US = 180


def _train(root: Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with (root / "train.jsonl").open("w") as fh:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
            fh.write(json.dumps({"id": f"train-{i:06d}", "input": text,
                                 "expected": rng.choice(LABELS)}) + "\n")


def _journal(folder: Path, preds, messages) -> float:
    folder.mkdir(parents=True)
    journal = Journal(folder / "predictions.jsonl")
    start = time.process_time()
    if messages is None:
        for p in preds:
            journal.append(p)
    else:
        for p, m in zip(preds, messages, strict=True):
            journal.append(p, messages=m)
    journal.close()
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_testset(Path(tmp) / "synth", args.items)
        _train(root, 300)
        ts = load_testset(root)
        ctx = VariantContext(ts)
        for name in ("prompt-only", "few-shot"):
            variant = default_variant(name, ts)
            requests = [variant.build(it, ctx) for it in ts.test]
            for r in requests:
                r.messages()  # rendered, as the runner's cache key has done by journal time
            preds = [Prediction(name, it.id, "intent_00", model="m", input_tokens=120,
                                output_tokens=3, latency_s=0.01, cost_usd=1e-5)
                     for it in ts.test]
            plain, recorded = [], []
            for k in range(args.rounds):
                base = Path(tmp) / f"{name}-{k}"
                # each round asks for the messages as the runner does (a fresh copy each)
                plain.append(_journal(base / "plain", preds, None))
                recorded.append(_journal(base / "sent", [Prediction(**p.__dict__)
                                                         for p in preds],
                                         [r.messages() for r in requests]))
            n = len(preds)
            p_us = statistics.median(plain) / n * 1e6
            r_us = statistics.median(recorded) / n * 1e6
            sent = Path(tmp) / f"{name}-0" / "sent"
            j0 = (Path(tmp) / f"{name}-0" / "plain" / "predictions.jsonl").stat().st_size
            j1 = (sent / "predictions.jsonl").stat().st_size
            m1 = (sent / "messages.jsonl").stat().st_size
            print(f"{name}: {n} items, {len(requests[0].messages())} messages each")
            print(f"  CPU per item: journal line {p_us:.1f} us, with messages {r_us:.1f} us "
                  f"-> recording adds {r_us - p_us:.1f} us "
                  f"({(r_us - p_us) / WIRE_US * 100:.1f} % of evalkit's {WIRE_US} us per "
                  f"item on the wire, docs/benchmarks.md)")
            print(f"  bytes: predictions.jsonl {j0:,} -> {j1:,} (+{(j1 - j0) / n:.0f} per item), "
                  f"messages.jsonl {m1:,} ({m1 / n:.0f} per item)")


if __name__ == "__main__":
    main()
