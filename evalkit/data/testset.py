"""Test sets on disk: load, validate and hash `testsets/<name>/`.

A test set is a folder with `task.yaml`, `test.jsonl` (held out), `train.jsonl` and an optional
`docs/` corpus (one file per document, the file stem is its doc id). Every problem found while
loading is a `TestsetError` naming the file, the line and the field, because a user fixing a
400-line JSONL file needs to know exactly where to look.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TASK_TYPES = ("classification", "qa", "extraction", "generation")
DOC_SUFFIXES = (".md", ".txt")


class TestsetError(ValueError):
    """A problem in a test set's files, located by file, line and field."""

    __test__ = False  # not a pytest test class

    def __init__(self, path: Path | str, message: str, *, line: int | None = None,
                 field: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f":{line}" if line is not None else "")
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {message}")


@dataclass(frozen=True)
class Item:
    """One example: the model sees `input`; `expected` is only for scoring."""

    id: str
    input: str
    expected: Any
    doc_ids: tuple[str, ...] = ()
    cluster: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    line: int = field(default=0, compare=False)  # where it was read, for error messages

    @property
    def references(self) -> list[str]:
        """`expected` as a list of acceptable strings (for text metrics)."""
        if isinstance(self.expected, list):
            return [str(x) for x in self.expected]
        return [str(self.expected)]


@dataclass(frozen=True)
class Document:
    id: str
    text: str


@dataclass(frozen=True)
class CorpusSettings:
    chunk_size: int = 120  # words per chunk
    chunk_overlap: int = 30
    k: int = 3


@dataclass(frozen=True)
class Task:
    """What `task.yaml` says: the task's type, instructions, labels and metrics."""

    name: str
    type: str
    instructions: str
    labels: dict[str, str] = field(default_factory=dict)  # label -> one-line description
    primary_metric: str = "accuracy"
    secondary_metrics: tuple[str, ...] = ()
    corpus: CorpusSettings = field(default_factory=CorpusSettings)
    few_shot_k: int = 4
    json_schema: dict[str, Any] | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.primary_metric, *self.secondary_metrics)


@dataclass(frozen=True)
class Testset:
    """A loaded, validated test set."""

    __test__ = False

    path: Path
    task: Task
    test: tuple[Item, ...]
    train: tuple[Item, ...]
    docs: tuple[Document, ...]
    file_hashes: dict[str, str]

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def hash(self) -> str:
        """One hash over every file, so a run records exactly which data it saw."""
        h = hashlib.sha256()
        for name in sorted(self.file_hashes):
            h.update(f"{name}:{self.file_hashes[name]}\n".encode())
        return h.hexdigest()

    @property
    def corpus_hash(self) -> str:
        h = hashlib.sha256()
        for name in sorted(k for k in self.file_hashes if k.startswith("docs/")):
            h.update(f"{name}:{self.file_hashes[name]}\n".encode())
        return h.hexdigest()


def load_testset(path: str | Path) -> Testset:
    """Load and validate the test set in folder `path`."""
    root = Path(path)
    if not root.is_dir():
        raise TestsetError(root, "test set folder not found")
    task = load_task(root / "task.yaml")
    labels = set(task.labels) if task.type == "classification" else None
    test = load_items(root / "test.jsonl", labels=labels)
    train = load_items(root / "train.jsonl", labels=labels, required=False)
    docs = load_docs(root / "docs")
    _check_doc_ids(root, test, train, docs)
    return Testset(root, task, test, train, docs, _hash_files(root))


def load_task(path: Path) -> Task:
    if not path.is_file():
        raise TestsetError(path, "missing task.yaml (every test set needs one)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise TestsetError(path, f"invalid YAML: {exc}",
                           line=None if line is None else line + 1) from exc
    if not isinstance(raw, dict):
        raise TestsetError(path, "task.yaml must be a mapping")
    for key in ("name", "type", "instructions"):
        if not raw.get(key):
            raise TestsetError(path, "is required", field=key)
    if raw["type"] not in TASK_TYPES:
        raise TestsetError(path, f"must be one of {', '.join(TASK_TYPES)}, got {raw['type']!r}",
                           field="type")
    labels = raw.get("labels") or {}
    if raw["type"] == "classification":
        if not isinstance(labels, dict) or len(labels) < 2:
            raise TestsetError(path, "a classification task needs at least two labels, "
                               "each with a one-line description", field="labels")
    for section, keys in (("corpus", ("chunk_size", "chunk_overlap", "k")), ("few_shot", ("k",))):
        if not isinstance(raw.get(section) or {}, dict):
            raise TestsetError(path, "must be a mapping", field=section)
        for key, value in (raw.get(section) or {}).items():
            low = 1 if key == "chunk_size" else 0  # k: 0 is a legal "none" (a broken-RAG probe)
            if key in keys and (type(value) is not int or value < low):
                raise TestsetError(path, f"must be a whole number >= {low}, got {value!r}",
                                   field=f"{section}.{key}")
    primary, secondary = _metric_names(path, raw["type"], raw.get("metrics") or {})
    corpus = raw.get("corpus") or {}
    return Task(
        name=str(raw["name"]),
        type=raw["type"],
        instructions=str(raw["instructions"]),
        labels={str(k): str(v) for k, v in labels.items()},
        primary_metric=primary,
        secondary_metrics=secondary,
        corpus=CorpusSettings(**{k: int(v) for k, v in corpus.items()
                                 if k in ("chunk_size", "chunk_overlap", "k")}),
        few_shot_k=int((raw.get("few_shot") or {}).get("k", 4)),
        json_schema=raw.get("json_schema"),
    )


# Per task type: the metrics an item can be scored on (the first is the default primary), and
# the run-level ones that may be secondary only (macro-F1 is not a mean over items).
ITEM_METRICS = {"classification": ("accuracy",), "qa": ("token_f1", "exact_match", "contains")}
RUN_METRICS = {"classification": ("macro_f1",), "qa": ()}


def _metric_names(path: Path, task_type: str, metrics: Any) -> tuple[str, tuple[str, ...]]:
    """`metrics.primary` and `metrics.secondary`, checked against what the task type scores."""
    if not isinstance(metrics, dict):
        raise TestsetError(path, "must be a mapping with 'primary' and 'secondary'",
                           field="metrics")
    item_level = ITEM_METRICS.get(task_type, ())
    if not item_level:
        return metrics.get("primary", ""), tuple(metrics.get("secondary") or ())
    primary = metrics.get("primary", item_level[0])
    if primary not in item_level:
        raise TestsetError(path, f"{primary!r} cannot be the primary metric of a {task_type} "
                           f"task; choose one of {', '.join(item_level)}",
                           field="metrics.primary")
    allowed = (*item_level, *RUN_METRICS[task_type])
    secondary = metrics.get("secondary",
                            [m for m in allowed if m != primary])
    if not isinstance(secondary, list) or not all(isinstance(m, str) for m in secondary):
        raise TestsetError(path, "must be a list of metric names", field="metrics.secondary")
    unknown = [m for m in secondary if m not in allowed]
    if unknown:
        raise TestsetError(path, f"unknown metric {unknown[0]!r} for a {task_type} task; "
                           f"known: {', '.join(allowed)}", field="metrics.secondary")
    return primary, tuple(m for m in secondary if m != primary)


def load_items(path: Path, *, labels: set[str] | None = None,
               required: bool = True) -> tuple[Item, ...]:
    """Read a JSONL file of items; every error names the file, line and field."""
    if not path.is_file():
        if required:
            raise TestsetError(path, "file not found")
        return ()
    items: list[Item] = []
    seen: dict[str, int] = {}
    with path.open("rb") as fh:  # decoded per line, so a bad byte is reported with its line
        for lineno, raw_line in enumerate(fh, start=1):
            try:
                line = raw_line.decode("utf-8-sig")  # -sig: accept a leading BOM
            except UnicodeDecodeError as exc:
                raise TestsetError(path, f"not valid UTF-8 (byte {exc.start + 1} of the line)",
                                   line=lineno) from None
            if not line.strip():
                continue
            item = parse_item(line, path=path, lineno=lineno, labels=labels)
            if item.id in seen:
                raise TestsetError(path, f"duplicate id {item.id!r} (first on line "
                                   f"{seen[item.id]})", line=lineno, field="id")
            seen[item.id] = lineno
            items.append(item)
    if not items:
        raise TestsetError(path, "file is empty: a test set needs at least one item")
    return tuple(items)


def parse_item(line: str, *, path: Path, lineno: int, labels: set[str] | None) -> Item:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TestsetError(path, f"malformed JSON: {exc.msg} (column {exc.colno})",
                           line=lineno) from exc
    if not isinstance(raw, dict):
        raise TestsetError(path, "each line must be a JSON object", line=lineno)
    for key in ("id", "input", "expected"):
        if key not in raw or raw[key] is None or raw[key] == "":
            raise TestsetError(path, "missing required field", line=lineno, field=key)
    if not isinstance(raw["input"], str):
        raise TestsetError(path, "must be a string", line=lineno, field="input")
    if labels is not None and not isinstance(raw["expected"], str):
        raise TestsetError(path, "must be one label (a string)", line=lineno, field="expected")
    if labels is None and not isinstance(raw["expected"], (str, int, float, list)):
        raise TestsetError(path, "must be a string or a list of acceptable answers",
                           line=lineno, field="expected")
    if labels is not None and raw["expected"] not in labels:
        raise TestsetError(path, f"unknown label {raw['expected']!r}; task.yaml defines "
                           f"{', '.join(sorted(labels))}", line=lineno, field="expected")
    doc_ids = raw.get("doc_ids") or []
    if not isinstance(doc_ids, list):
        raise TestsetError(path, "must be a list of doc ids", line=lineno, field="doc_ids")
    if not isinstance(raw.get("metadata") or {}, dict):
        raise TestsetError(path, "must be a JSON object", line=lineno, field="metadata")
    return Item(
        id=str(raw["id"]),
        input=raw["input"],
        expected=raw["expected"],
        doc_ids=tuple(str(d) for d in doc_ids),
        cluster=None if raw.get("cluster") is None else str(raw["cluster"]),
        metadata=dict(raw.get("metadata") or {}),
        line=lineno,
    )


def load_docs(folder: Path) -> tuple[Document, ...]:
    if not folder.is_dir():
        return ()
    docs = []
    for p in sorted(folder.iterdir()):
        if p.suffix in DOC_SUFFIXES and p.is_file():
            try:
                text = p.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as exc:
                raise TestsetError(p, f"not valid UTF-8 (byte {exc.start + 1})") from None
            if not text.strip():
                raise TestsetError(p, "document is empty")
            docs.append(Document(p.stem, text))
    return tuple(docs)


def _check_doc_ids(root: Path, test, train, docs) -> None:
    known = {d.id for d in docs}
    for name, items in (("test.jsonl", test), ("train.jsonl", train)):
        for item in items:
            for d in item.doc_ids:
                if d not in known:
                    raise TestsetError(root / name, f"doc id {d!r} is not a file in docs/ "
                                       f"(item {item.id!r})", line=item.line, field="doc_ids")


def _hash_files(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
