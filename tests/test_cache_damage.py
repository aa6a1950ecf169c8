"""A damaged or locked cache never crashes a run (issue 12 part 5).

Each case plants one kind of damage seen in the wild — a file that is not a database, a
malformed page, a row that is not a completion, a write lock held by another process — and
checks that evalkit says so on stderr and carries on, recomputing what it cannot read.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from conftest import FakeProvider

from evalkit.pipeline.experiment import RunConfig, run_experiment
from evalkit.providers.base import Completion, Usage
from evalkit.providers.embeddings import VectorStore
from evalkit.providers.sqlite_store import SqliteStore
from evalkit.run.cache import ResponseCache, completion_from_row

SCHEMA = "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, completion TEXT NOT NULL)"
HIT = Completion("login", Usage(5, 1, 0), latency_s=0.1, cost_usd=0.01, model="m")


def _damaged_siblings(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".damaged-*"))


def test_a_file_that_is_not_a_database_is_moved_aside_and_a_fresh_cache_used(tmp_path, capsys):
    path = tmp_path / "responses.sqlite"
    path.write_bytes(b"this is not a database, it is a text file " * 100)
    cache = ResponseCache(path)
    cache.put("k", HIT)
    assert cache.get("k") == Completion(**{**HIT.to_dict(), "usage": HIT.usage, "cached": True})
    cache.close()
    moved = _damaged_siblings(path)
    assert len(moved) == 1 and moved[0].read_bytes().startswith(b"this is not a database")
    err = capsys.readouterr().err
    assert str(path) in err and str(moved[0]) in err and "damaged cache" in err


def test_a_malformed_database_is_moved_aside(tmp_path, capsys):
    path = tmp_path / "responses.sqlite"
    cache = ResponseCache(path)
    for i in range(400):  # enough rows for several pages, so the damage lands inside the file
        cache.put(f"k{i}", HIT)
    cache.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 8192
    data[4096:8192] = b"\xff" * 4096  # overwrite the second page
    path.write_bytes(bytes(data))
    reopened = ResponseCache(path)
    assert reopened.get("k1") is None  # fresh cache: a miss, not a traceback
    reopened.put("k1", HIT)
    assert reopened.get("k1") is not None
    reopened.close()
    assert len(_damaged_siblings(path)) == 1
    assert "damaged cache" in capsys.readouterr().err


def test_rows_that_are_not_completions_are_misses():
    good = json.dumps(HIT.to_dict())
    assert completion_from_row(good) is not None
    for bad in ('{"text": 5}', "not json", "[1, 2]", '{"text": "a", "usage": {"prompt": "x"}}',
                '{"text": "a", "latency_s": "slow"}', '{"text": "a", "surprise": 1}', "null"):
        assert completion_from_row(bad) is None, bad


def test_a_bad_row_is_recomputed_by_the_run_and_never_reaches_the_journal(
        intents_dir, run_dirs, fake_provider_factory):
    provider: FakeProvider = fake_provider_factory()
    cfg = RunConfig(testset=str(intents_dir), variants=["prompt-only"], concurrency=2,
                    **run_dirs)
    first = run_experiment(cfg, progress=False)
    calls = len(provider.calls)
    db = sqlite3.connect(Path(run_dirs["cache_dir"]) / "responses.sqlite")
    db.execute("UPDATE responses SET completion = ?", ('{"text": 5}',))
    db.commit()
    db.close()
    second = run_experiment(cfg, progress=False)
    assert len(provider.calls) == 2 * calls  # every damaged row recomputed
    assert second.stats.errors == 0 and first.stats.errors == 0
    lines = (Path(second.run_dir) / "predictions.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line)["output"], str) for line in lines)


_HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_lock_held_briefly_by_another_process_is_waited_for(tmp_path):
    path = tmp_path / "responses.sqlite"
    store = SqliteStore(path, schema=SCHEMA, busy_timeout_s=10)
    proc = _hold_lock(path, 1.0)
    start = time.monotonic()
    store.execute("INSERT INTO responses VALUES (?, ?)", ("k", "v"))
    waited = time.monotonic() - start
    proc.wait(timeout=10)
    assert store.fetchone("SELECT completion FROM responses WHERE key = ?", ("k",)) == ("v",)
    assert waited > 0.5  # it waited for the other writer rather than failing at once
    store.close()


def test_a_lock_held_past_the_timeout_skips_the_write_and_says_so(tmp_path, capsys):
    path = tmp_path / "responses.sqlite"
    store = SqliteStore(path, schema=SCHEMA, busy_timeout_s=0.3)
    proc = _hold_lock(path, 3.0)
    store.execute("INSERT INTO responses VALUES (?, ?)", ("k", "v"))  # no exception
    store.execute("INSERT INTO responses VALUES (?, ?)", ("k2", "v"))
    proc.wait(timeout=10)
    err = capsys.readouterr().err
    assert err.count("cache write failed") == 1 and str(path) in err  # said once, not per row
    assert store.fetchone("SELECT completion FROM responses WHERE key = ?", ("k",)) is None
    store.close()


def test_vector_rows_of_the_wrong_shape_are_misses(tmp_path):
    path = tmp_path / "vectors.sqlite"
    store = VectorStore(path)
    store.put("good", np.ones(4, dtype=np.float32), 3)
    store.close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO vectors VALUES (?, ?, ?)", ("odd", b"\x00\x01\x02", 1))
    db.execute("INSERT INTO vectors VALUES (?, ?, ?)", ("text", "not bytes", 1))
    db.commit()
    db.close()
    reopened = VectorStore(path)
    vector, tokens = reopened.get("good")
    assert vector.tolist() == [1.0] * 4 and tokens == 3.0
    assert reopened.get("odd") is None and reopened.get("text") is None
    reopened.close()


def test_writes_are_queued_off_the_loop_and_committed_together(tmp_path):
    cache = ResponseCache(tmp_path / "responses.sqlite", flush_s=60)  # no timed flush here
    for i in range(50):
        cache.put(f"k{i}", HIT)
    assert cache.get("k7") is not None  # answered from the queue before any commit
    db = sqlite3.connect(tmp_path / "responses.sqlite")
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone() == (0,)
    cache.close()  # flushes: one transaction for the lot
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone() == (50,)
    db.close()
    reopened = ResponseCache(tmp_path / "responses.sqlite")
    assert reopened.get("k49").text == HIT.text and reopened.get("k49").cached
    reopened.close()
