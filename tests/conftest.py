"""Shared fixtures: the tiny fixture test sets, throw-away copies of them, and fake providers.

The fixture folders under tests/fixtures/ are read-only inputs; a test that needs to change a
file copies the set into tmp_path first (`copy_fixture`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from evalkit.providers.base import Completion, Provider, Usage
from evalkit.strategies.request import Request

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def intents_dir() -> Path:
    return FIXTURES / "tiny-intents"


@pytest.fixture
def qa_dir() -> Path:
    return FIXTURES / "tiny-qa"


@pytest.fixture
def copy_fixture(tmp_path: Path) -> Callable[[str], Path]:
    """Copy a fixture test set into tmp_path so a test may edit its files."""

    def copy(name: str) -> Path:
        dest = tmp_path / "sets" / name
        shutil.copytree(FIXTURES / name, dest)
        return dest

    return copy


def write_jsonl(path: Path, rows: Iterable[dict | str]) -> Path:
    """Write rows (dicts as JSON, strings verbatim) one per line."""
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def append_jsonl(path: Path, row: dict) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


@pytest.fixture
def run_dirs(tmp_path: Path) -> dict[str, str]:
    """Throw-away reports, cache and fine-tune folders for one test."""
    return {"reports_dir": str(tmp_path / "reports"), "cache_dir": str(tmp_path / "cache"),
            "finetune_dir": str(tmp_path / "finetunes")}


class FakeProvider(Provider):
    """A provider that counts its calls and fails on chosen inputs.

    It answers a classification request with its first label and a QA request with "unknown",
    so its answers depend on nothing but the Request (it cannot peek at `expected`).
    """

    name = "fake"
    cost_is_notional = False  # bills like a real server, so spend and budget are exercised

    def __init__(self, *, fail_inputs: Iterable[str] = (), cost_usd: float = 0.001,
                 delay_s: float = 0.0):
        self.fail_inputs = set(fail_inputs)
        self.cost_usd = cost_usd
        self.delay_s = delay_s
        self.calls: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def model_for(self, request: Request) -> str:
        return request.model or "fake-1"

    def cache_params(self) -> dict:
        return {"temperature": 0}

    async def complete(self, request: Request) -> Completion:
        self.calls.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            if request.input in self.fail_inputs:
                raise RuntimeError(f"boom: injected failure for {request.input!r}")
        finally:
            self.in_flight -= 1
        text = request.labels[0][0] if request.labels else "unknown"
        return Completion(text=text, usage=Usage(input_tokens=7, output_tokens=1),
                          latency_s=0.001, cost_usd=self.cost_usd,
                          model=self.model_for(request))


@pytest.fixture
def fake_provider_factory(monkeypatch) -> Callable[..., FakeProvider]:
    """Install a FakeProvider as what `run_experiment` gets from `build_provider`."""

    def install(**options) -> FakeProvider:
        provider = FakeProvider(**options)
        monkeypatch.setattr("evalkit.pipeline.routing.build_provider",
                            lambda name, setup: provider)
        return provider

    return install
