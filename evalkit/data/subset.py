"""Subsets of a test set: try a ladder on 50 items before paying for 5,000 (issue 15.7).

Two ways, both recorded in run.json (`subset`) and shown in the report header:

- `limit`: the first N test items, in file order;
- `sample`: N items drawn with a seed, stratified where the set has strata, so a sample keeps
  the set's mix. Strata are the items' `cluster` when any item has one (items of one cluster are
  near-duplicates, so a sample should not be all one cluster), else the label of a task with
  labels, else none (a plain random sample). Each stratum gets its share of N by the largest
  remainder method, and at least one item while there are items to spare, so a rare label is
  not dropped from a small sample.

The chosen items keep their file order, so a sampled run reads like the full one. A subset that
covers the whole set is no subset (None): nothing is recorded and the gate treats it as full.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Literal

from evalkit.data.testset import Item, Testset


@dataclass(frozen=True)
class SubsetSpec:
    """What a run asked for: `mode` "limit" (first n) or "sample" (n drawn with `seed`)."""

    mode: Literal["limit", "sample"]
    n: int
    seed: int = 0

    def describe(self) -> str:
        if self.mode == "limit":
            return f"--limit {self.n}"
        return f"--sample {self.n} --seed {self.seed}"


def choose(items: tuple[Item, ...], spec: SubsetSpec, *, labelled: bool) -> tuple[Item, ...]:
    """The items `spec` selects from `items`, in their original order.

    `labelled`: the task has labels, so `expected` is a label a sample may stratify by.
    """
    if spec.n <= 0:
        raise ValueError(f"{spec.describe()}: the number of items must be at least 1")
    if spec.n >= len(items):
        return items
    if spec.mode == "limit":
        return items[:spec.n]
    groups = _strata(items, labelled=labelled)
    rng = random.Random(spec.seed)
    picked: set[int] = set()
    for key, share in _allocate({k: len(v) for k, v in groups.items()}, spec.n).items():
        picked.update(rng.sample(groups[key], share))
    return tuple(items[i] for i in sorted(picked))


def apply(testset: Testset, spec: SubsetSpec | None) -> tuple[Testset, dict | None]:
    """The test set cut to `spec`, and the record run.json keeps (None: the full set)."""
    if spec is None:
        return testset, None
    chosen = choose(testset.test, spec, labelled=bool(testset.task.labels))
    if len(chosen) == len(testset.test):
        return testset, None
    record = {"mode": spec.mode, "n": len(chosen), "of": len(testset.test),
              "seed": spec.seed if spec.mode == "sample" else None,
              "stratified_by": (_strata_name(testset.test, labelled=bool(testset.task.labels))
                                if spec.mode == "sample" else None),
              "flag": spec.describe()}
    return replace(testset, test=chosen), record


def _strata_name(items: tuple[Item, ...], *, labelled: bool) -> str | None:
    if any(it.cluster is not None for it in items):
        return "cluster"
    return "label" if labelled else None


def _strata(items: tuple[Item, ...], *, labelled: bool) -> dict[str, list[int]]:
    """Item positions per stratum (one stratum when the set has none)."""
    by = _strata_name(items, labelled=labelled)
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        key = ("" if by is None else str(it.cluster) if by == "cluster" else str(it.expected))
        groups.setdefault(key, []).append(i)
    return groups


def _allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Shares of n in proportion to the strata's sizes, summing to n (floors, then the largest
    remainders); a stratum left at 0 takes one item from the largest share, so a rare label
    stays in. With fewer than one item per stratum the largest strata get one each."""
    if n < len(sizes):
        return {k: 1 for k in sorted(sizes, key=lambda k: (-sizes[k], k))[:n]}
    total = sum(sizes.values())
    exact = {k: n * s / total for k, s in sizes.items()}
    share = {k: int(x) for k, x in exact.items()}
    by_remainder = sorted(sizes, key=lambda k: (-(exact[k] - share[k]), k))
    for k in by_remainder[:n - sum(share.values())]:
        share[k] += 1
    for k in sorted((k for k in share if share[k] == 0), key=lambda k: (-sizes[k], k)):
        donor = max(share, key=lambda d: (share[d], d))
        share[donor] -= 1
        share[k] = 1
    return share
