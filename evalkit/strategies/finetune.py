"""Fine-tunes: training the local model, and the record every fine-tuned rung runs on.

A record `finetunes/<name>.json` says which model the fine-tuned variants call, what it cost to
train and on which data; the same shape serves a local artifact, an API fine-tuning job, or a
model trained elsewhere and registered. The local "fine-tune" is a scikit-learn model trained
on the train split's inputs, exactly as the prompt-only rung presents them.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from evalkit.data.leakage import find_leaks
from evalkit.data.testset import Testset
from evalkit.data.text import make_vectorizer
from evalkit.paths import check_name, inside
from evalkit.registry import Registry
from evalkit.strategies.house_style import HouseStyleModel
from evalkit.tasks import task_type

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

LOCAL_MODEL_PREFIX = "local-ft:"
# The name local fine-tunes are filed under: the local provider's registered name (it reads
# this constant, since this stage comes before the providers).
LOCAL_PROVIDER = "local"
LOCAL_USD_PER_HOUR = 0.10  # the notional price of the CPU that trains the local model

# Task type -> how the local "fine-tune" of that type is trained from the train split: a
# function (testset) -> a picklable model the local provider's answerer for that type uses.
LOCAL_TRAINERS: Registry = Registry("local fine-tune trainer")


@dataclass
class FineTuneRecord:
    name: str
    provider: str
    base_model: str
    fine_tuned_model: str
    status: str
    train_hash: str
    trained_examples: int
    training_time_s: float = 0.0
    training_cost_usd: float = 0.0
    created_at: str = ""
    job_id: str | None = None
    trained_tokens: int | None = None
    base_url: str | None = None  # the server that serves fine_tuned_model, if not the run's
    training_file: str | None = None  # the uploaded file's id: finds a job a kill left unrecorded


class LeakageError(ValueError):
    """Test items found in the data a model would be trained on."""


def record_path(finetune_dir: Path, name: str) -> Path:
    """`<finetune_dir>/<name>.json`; a name that is not one plain path component is refused,
    so no record is ever written outside --finetune-dir."""
    return _in_dir(finetune_dir, name, ".json")


def _in_dir(finetune_dir: Path | str, name: str, suffix: str) -> Path:
    check_name(name, what="fine-tune name")
    return inside(finetune_dir, Path(finetune_dir) / f"{name}{suffix}", what="fine-tune file")


def load_record(finetune_dir: Path, name: str) -> FineTuneRecord | None:
    path = record_path(finetune_dir, name)
    if not path.is_file():
        return None
    return FineTuneRecord(**json.loads(path.read_text()))


def save_record(finetune_dir: Path, record: FineTuneRecord) -> Path:
    """Write the record atomically: a crash or full disk mid-write leaves the old one whole.

    The record may be the only pointer to a paid job, and polling rewrites it every interval,
    so it is written to a temp file in the same folder, flushed to disk and `os.replace`d.
    """
    path = record_path(finetune_dir, record.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{record.name}.", suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(record), indent=2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def default_name(testset: Testset, provider: str) -> str:
    return f"{testset.name}-{provider}"


def train_hash(testset: Testset) -> str:
    return testset.file_hashes.get("train.jsonl", "")


def check_record_for(testset: Testset, record: FineTuneRecord, *,
                     where: str | Path | None = None) -> list[str]:
    """Warnings about running `testset` on the model `record` describes ([] when none).

    A run's leakage check compares the test split with the *current* train split; that only
    covers the fine-tuned model if it was trained on that same split. So: warn when the train
    split's hash differs from the one recorded at training time (the model saw other data,
    perhaps items now in the test split), and when no hash was recorded at all (a model
    registered without --testset), since then leakage cannot be checked. `where` names the
    record in the messages (default: "fine-tune NAME").
    """
    where = where or f"fine-tune {record.name}"
    current = train_hash(testset)
    if not record.train_hash:
        return [f"{where}: no train hash recorded for {record.fine_tuned_model or record.name}, "
                f"so whether test items of {testset.name} leaked into its training data cannot "
                f"be checked; register it with --testset to record one"]
    if record.train_hash != current:
        now = current[:12] or "no train.jsonl"
        return [f"{where}: the train split of {testset.name} changed since "
                f"{record.fine_tuned_model or record.name} was trained (recorded train hash "
                f"{record.train_hash[:12]}, now {now}); its scores are for a model trained on "
                f"other data, which the leakage check did not see; retrain or re-register it"]
    return []


class QAMemory:
    """The local fine-tune for QA: recalls the answer of the most similar training question."""

    def __init__(self, questions: list[str], answers: list[str]):
        from sklearn.preprocessing import normalize  # on use: scikit-learn is ~1 s to import

        self.vectorizer = make_vectorizer().fit(questions)
        self.matrix = normalize(self.vectorizer.transform(questions))
        self.answers = answers

    def recall(self, question: str) -> tuple[str, float]:
        from sklearn.preprocessing import normalize

        sims = (self.matrix @ normalize(self.vectorizer.transform([question])).T).toarray().ravel()
        i = int(sims.argmax())  # the array's own argmax: no numpy import here
        return self.answers[i], float(sims[i])


def refuse_leakage(testset: Testset) -> None:
    """Raise LeakageError if any test item is (nearly) a training example."""
    leaks = find_leaks(testset.test, testset.train)
    if leaks:
        raise LeakageError(f"{len(leaks)} test items leak into the training data, e.g. "
                           f"{leaks[0].test_id} ~ {leaks[0].train_id} "
                           f"(cosine {leaks[0].similarity:.2f}); refusing to fine-tune")


@LOCAL_TRAINERS.decorator("classification")
def _train_classifier(testset: Testset) -> Pipeline:
    from sklearn.linear_model import LogisticRegression  # on use: ~1 s to import
    from sklearn.pipeline import Pipeline

    model = Pipeline([("tfidf", make_vectorizer()),
                      ("clf", LogisticRegression(C=10.0, max_iter=2000))])
    return model.fit([it.input for it in testset.train],
                     [str(it.expected) for it in testset.train])


@LOCAL_TRAINERS.decorator("qa")
def _train_qa(testset: Testset) -> QAMemory:
    target = task_type(testset.task.type).target  # an unanswerable item teaches abstaining
    return QAMemory([it.input for it in testset.train],
                    [target(it, testset.task) for it in testset.train])


@LOCAL_TRAINERS.decorator("generation")
def _train_generation(testset: Testset) -> HouseStyleModel:
    return HouseStyleModel([it.input for it in testset.train],
                           [it.references[0] for it in testset.train])


@LOCAL_TRAINERS.decorator("extraction")
def _train_extractor(testset: Testset):
    """A candidate tagger per field (evalkit.strategies.extract_local), trained on the train
    split's inputs and records, for the fields and schema the requests will carry."""
    from evalkit.strategies.extract_local import train_tagger
    from evalkit.tasks import task_type

    task = testset.task
    return train_tagger(tuple(task.fields.items()), task_type(task.type).response_format(task),
                        [it.input for it in testset.train], [it.expected for it in testset.train])


def train_local(testset: Testset, finetune_dir: Path | str, *, provider: str = LOCAL_PROVIDER,
                name: str | None = None, allow_leakage: bool = False) -> FineTuneRecord:
    """Train the local model on the train split, save artifact + record, return the record.
    `provider` is the name the record is filed under (the local provider's)."""
    finetune_dir = Path(finetune_dir)
    name = name or default_name(testset, provider)
    if not testset.train:
        raise ValueError(f"{testset.path}: cannot fine-tune without train.jsonl")
    if testset.task.type not in LOCAL_TRAINERS:
        raise ValueError(f"local fine-tuning has no trainer for task type "
                         f"{testset.task.type!r}; it has: {', '.join(LOCAL_TRAINERS.names())}")
    if not allow_leakage:
        refuse_leakage(testset)
    start = time.perf_counter()
    inputs = [it.input for it in testset.train]
    model = LOCAL_TRAINERS.get(testset.task.type)(testset)
    elapsed = time.perf_counter() - start
    finetune_dir.mkdir(parents=True, exist_ok=True)
    artifact = _in_dir(finetune_dir, name, ".pkl")
    with artifact.with_suffix(".tmp").open("wb") as fh:
        pickle.dump(model, fh)
    artifact.with_suffix(".tmp").replace(artifact)
    record = FineTuneRecord(
        name=name, provider=provider, base_model="local-tfidf",
        # the train hash in the id makes a retrained model a new model for the response cache
        fine_tuned_model=f"{LOCAL_MODEL_PREFIX}{name}@{train_hash(testset)[:12]}",
        status="succeeded",
        train_hash=train_hash(testset), trained_examples=len(inputs),
        training_time_s=round(elapsed, 4),
        training_cost_usd=elapsed * LOCAL_USD_PER_HOUR / 3600.0,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    save_record(finetune_dir, record)
    return record


def ensure_local(testset: Testset, finetune_dir: Path | str, *,
                 provider: str = LOCAL_PROVIDER, allow_leakage: bool = False) -> FineTuneRecord:
    """The local fine-tune for this test set, trained now if missing or stale."""
    record = load_record(Path(finetune_dir), default_name(testset, provider))
    artifact = _in_dir(finetune_dir, default_name(testset, provider), ".pkl")
    if record and record.train_hash == train_hash(testset) and artifact.is_file():
        return record
    return train_local(testset, finetune_dir, provider=provider, allow_leakage=allow_leakage)


def load_local_model(finetune_dir: Path, model: str):
    name = model.removeprefix(LOCAL_MODEL_PREFIX).split("@", 1)[0]
    path = _in_dir(finetune_dir, name, ".pkl")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no local fine-tune named {name!r}; "
                                f"run `evalkit finetune --provider local TESTSET`")
    with path.open("rb") as fh:
        return pickle.load(fh)
