"""`evalkit init`: a test-set folder from a user's own file, with no file written by hand.

From one CSV or JSONL (or a folder that already holds test.jsonl), `draft` infers the task
type, reads the items with the importer for that shape, discovers the labels, splits one file
into a stratified, seeded train/test split, and `write_testset` writes task.yaml (labels with
descriptions stubbed from their names, the type's metrics), test.jsonl, train.jsonl, docs/
and a README.md data-card stub, then loads the folder back so anything it wrote that the
loader would refuse fails here, named, not at the first run.

Type inference, in order: chat `messages` -> the assistant answers' type (a train split);
a JSON-object target -> extraction; answers, gold passage ids or unanswerable flags -> qa; a
label column -> classification; a text `expected` -> classification when it takes few
distinct values (at most LABEL_LIMIT and a fifth of the rows), else qa.

The split keeps exact duplicates (same text after case and whitespace folding) on one side, so
a source with repeated rows does not make the run refuse for leakage.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from evalkit.data import importers
from evalkit.data.testset import DOC_SUFFIXES, Testset, TestsetError, load_testset
from evalkit.tasks import metric, task_type

LABEL_LIMIT = 200  # more distinct answers than this is free text, not labels
INSTRUCTIONS = {
    "classification": "Classify the text into exactly one of the labels. Reply with the label "
                      "only.",
    "qa": 'Answer the question from the passages you are given, with a short answer only. If '
          'the answer is not in them, reply "unknown".',
    "extraction": "Extract the fields below from the text. Reply with one JSON object.",
}


@dataclass
class Draft:
    """A test set before it is written: what `init` shows the user to confirm."""

    name: str
    type: str
    test: list[dict]
    train: list[dict]
    instructions: str
    labels: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    docs: list[tuple[str, str]] = field(default_factory=list)  # (doc id, text)
    sources: dict[str, str] = field(default_factory=dict)  # file -> sha256
    split: str = ""  # how test and train were made, for the data card
    docs_from: Path | None = None  # the folder the docs were read from (left as it is)

    def summary(self) -> str:
        """One line per fact the user confirms before anything is written."""
        lines = [f"type: {self.type} (inferred; --type to override)",
                 f"items: {len(self.test)} test, {len(self.train)} train ({self.split})"]
        if self.labels:
            shown = ", ".join(list(self.labels)[:8]) + (", ..." if len(self.labels) > 8 else "")
            lines.append(f"labels: {len(self.labels)} ({shown}); descriptions stubbed from "
                         f"the names")
        if self.type == "qa":
            none = sum(it["expected"] is None for it in (*self.test, *self.train))
            lines.append(f"unanswerable: {none} items (expected: null)")
        if self.fields:
            lines.append(f"fields: {', '.join(self.fields)}")
        lines.append(f"docs: {len(self.docs)}")
        kind = task_type(self.type)
        lines.append(f"metrics: primary {kind.default_primary}, secondary "
                     f"{', '.join(_secondary(self.type)) or 'none'}")
        return "\n".join(lines)


def infer_type(path: Path, rows: list[dict]) -> str:
    """The task type (or "chat") a file's rows look like; see the module docstring."""
    if path.suffix.lower() == ".csv":
        return "classification"
    first = rows[0]
    if "messages" in first:
        return "chat"
    target = importers.pick_key(first, importers.TARGET_KEYS)
    if target and isinstance(first[target], dict):
        return "extraction"
    if any(k in first for k in ("answers", "answer", "is_impossible", "answerable",
                                *importers.DOC_ID_KEYS)):
        return "qa"
    if any(k in first for k in importers.LABEL_KEYS if k != "expected"):
        return "classification"
    values = [r.get("expected") for r in rows]
    if all(isinstance(v, str) for v in values) and _few(values):
        return "classification"
    return "qa"


def _few(values: list) -> bool:
    distinct = len(set(map(str, values)))
    return distinct <= min(LABEL_LIMIT, max(2, len(values) // 5))


def read_source(path: Path, kind: str | None, *, text_column: str | None = None,
                label_column: str | None = None) -> tuple[str, list[dict], str | None]:
    """(task type, items, system message) from one CSV or JSONL file."""
    rows = [] if path.suffix.lower() == ".csv" else [r for _, r in importers.read_jsonl(path)]
    kind = kind or infer_type(path, rows)
    if path.suffix.lower() == ".csv":
        if kind != "classification":
            raise TestsetError(path, f"a CSV imports as classification, not {kind}")
        header = _csv_header(path)
        text = text_column or next((k for k in importers.TEXT_KEYS if k in header), "text")
        label = label_column or next((k for k in importers.LABEL_KEYS if k in header), "label")
        return kind, importers.from_csv(path, text_column=text, label_column=label), None
    if kind == "chat" or "messages" in rows[0]:
        items, system = importers.from_openai_chat(path)
        answers = [it["expected"] for it in items]
        return ("classification" if _few(answers) else "qa"), items, system
    if kind == "classification":
        return kind, importers.from_jsonl_classification(
            path, text_key=text_column, label_key=label_column), None
    if kind == "qa":
        return kind, importers.from_qa_jsonl(path, question_key=text_column,
                                             answer_key=label_column), None
    if kind == "extraction":
        return kind, importers.from_extraction_jsonl(path, text_key=text_column,
                                                     target_key=label_column), None
    raise TestsetError(path, f"cannot import a {kind!r} test set; give --type classification, "
                       f"qa or extraction")


def _csv_header(path: Path) -> list[str]:
    first = importers._read_text(path).splitlines()[:1]
    import csv
    return next(csv.reader(first), []) if first else []


def stratified_split(items: list[dict], *, test_size: float, seed: int,
                     key) -> tuple[list[dict], list[dict]]:
    """Seeded split with about `test_size` of each stratum (`key(item)`) in test: a stratum of
    two or more items has at least one on each side, a single item goes to train. Items with
    the same folded text move together, so exact duplicates never straddle the split."""
    groups: dict[str, list[dict]] = {}
    for it in items:
        groups.setdefault(" ".join(it["input"].lower().split()), []).append(it)
    strata: dict[str, list[list[dict]]] = {}
    for group in groups.values():
        strata.setdefault(str(key(group[0])), []).append(group)
    rng = random.Random(seed)
    test, train = [], []
    for name in sorted(strata):
        bucket = strata[name]
        rng.shuffle(bucket)
        n_test = round(len(bucket) * test_size)
        if len(bucket) >= 2:
            n_test = min(max(n_test, 1), len(bucket) - 1)
        else:
            n_test = 0
        for i, group in enumerate(bucket):
            (test if i < n_test else train).extend(group)
    order = {id(it): n for n, it in enumerate(items)}  # keep the source's order per split
    return sorted(test, key=lambda it: order[id(it)]), sorted(train, key=lambda it: order[id(it)])


def draft(source: Path, *, name: str | None = None, kind: str | None = None,
          train_file: Path | None = None, corpus: Path | None = None, docs_dir: Path | None = None,
          test_size: float = 0.2, seed: int = 0, text_column: str | None = None,
          label_column: str | None = None) -> Draft:
    """Everything `init` would write, read and checked, nothing written yet."""
    sources: dict[str, Path] = {}
    if source.is_dir():
        kind, test, train, system = _from_folder(source, kind)
        sources["test.jsonl"] = source / "test.jsonl"
        split = "as given in the folder"
        docs_dir = docs_dir or (source / "docs" if (source / "docs").is_dir() else None)
    else:
        kind, items, system = read_source(source, kind, text_column=text_column,
                                          label_column=label_column)
        sources[source.name] = source
        if train_file is not None:
            test = items
            _, train, train_system = read_source(train_file, None if kind == "chat" else kind)
            sources[train_file.name] = train_file
            system = system or train_system
            split = f"test from {source.name}, train from {train_file.name}"
        else:
            test, train = stratified_split(items, test_size=test_size, seed=seed,
                                           key=_stratum(kind))
            split = (f"one file split {1 - test_size:.0%}/{test_size:.0%} train/test, "
                     f"stratified by {_stratum_name(kind)}, seed {seed}")
    _unique_ids(test, train, source)
    out = Draft(name=_name(name or source.stem), type=kind, test=test, train=train,
                instructions=system or INSTRUCTIONS[kind], split=split)
    if kind == "classification":
        out.labels = {label: _describe(label) for label in
                      sorted({str(it["expected"]) for it in (*test, *train)})}
    if kind == "extraction":
        out.fields = {f: _describe(f) for f in
                      dict.fromkeys(k for it in (*test, *train) for k in it["expected"])}
    if corpus is not None:
        out.docs = importers.corpus_from_jsonl(corpus)
        sources[corpus.name] = corpus
    elif docs_dir is not None:
        out.docs_from = docs_dir
        out.docs = [(p.stem, p.read_text(encoding="utf-8-sig")) for p in sorted(docs_dir.iterdir())
                    if p.is_file() and p.suffix in DOC_SUFFIXES]
    out.sources = {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in sources.items()}
    return out


def _from_folder(root: Path, kind: str | None) -> tuple[str, list[dict], list[dict], None]:
    """test.jsonl and train.jsonl already in evalkit's item format: only task.yaml is new."""
    def rows(name: str) -> list[dict]:
        path = root / name
        return [r for _, r in importers.read_jsonl(path)] if path.is_file() else []
    test, train = rows("test.jsonl"), rows("train.jsonl")
    if not test:
        raise TestsetError(root / "test.jsonl", "file not found: a folder to initialise needs "
                           "test.jsonl (or give a CSV or JSONL file instead)")
    values = [r.get("expected") for r in (*test, *train)]
    if kind is None:
        if any(isinstance(v, dict) for v in values):
            kind = "extraction"
        elif all(isinstance(v, str) for v in values) and _few(values):
            kind = "classification"
        else:
            kind = "qa"
    return kind, test, train, None


def _stratum(kind: str):
    if kind == "classification":
        return lambda it: it["expected"]
    if kind == "qa":
        return lambda it: it["expected"] is None  # answerable and unanswerable alike
    return lambda it: ""


def _stratum_name(kind: str) -> str:
    return {"classification": "label", "qa": "answerable/unanswerable"}.get(kind, "nothing")


def _unique_ids(test: list[dict], train: list[dict], source: Path) -> None:
    seen: set[str] = set()
    for it in (*test, *train):
        if it["id"] in seen:
            raise TestsetError(source, f"id {it['id']!r} appears twice across the splits; ids "
                               f"must be unique", field="id")
        seen.add(it["id"])


def _name(raw: str) -> str:
    """A test-set name (one plain path component) from a file or folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.") or "testset"


def _describe(label: str) -> str:
    """A one-line description stubbed from a name: 'card_arrival' -> 'card arrival'."""
    return re.sub(r"[_\-.]+", " ", label).strip() or label


def _secondary(kind: str) -> list[str]:
    spec = task_type(kind)
    return [m for m in spec.allowed_metrics() if m != spec.default_primary
            and not metric(m).opt_in]


def write_testset(d: Draft, out: Path, *, force: bool = False) -> Testset:
    """Write the folder and load it back (the loader's checks apply to what was written)."""
    if (out / "task.yaml").exists() and not force:
        raise TestsetError(out / "task.yaml", "already exists; pass --force to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    (out / "task.yaml").write_text(_task_yaml(d), encoding="utf-8")
    for split, items in (("test.jsonl", d.test), ("train.jsonl", d.train)):
        if items:
            importers.write_jsonl(items, out / split)
    in_place = d.docs_from is not None and d.docs_from.resolve() == (out / "docs").resolve()
    if d.docs and not in_place:
        docs = out / "docs"
        if docs.is_dir() and force:
            shutil.rmtree(docs)
        docs.mkdir(exist_ok=True)
        for doc_id, text in d.docs:
            (docs / f"{doc_id}.md").write_text(text, encoding="utf-8")
    if not (out / "README.md").exists() or force:
        (out / "README.md").write_text(_data_card(d), encoding="utf-8")
    return load_testset(out)


def _task_yaml(d: Draft) -> str:
    kind = task_type(d.type)
    body: dict = {"name": d.name, "type": d.type, "instructions": d.instructions}
    if d.labels:
        body["labels"] = d.labels
    if d.fields:
        body["fields"] = d.fields
    body["metrics"] = {"primary": kind.default_primary, "secondary": _secondary(d.type)}
    if d.docs:
        body["corpus"] = {"chunk_size": 120, "chunk_overlap": 30, "k": 3}
    body["few_shot"] = {"k": 4}
    head = ("# Written by `evalkit init`. Edit the instructions and the one-line descriptions:\n"
            "# they are what the prompt-only rung is given.\n")
    return head + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=96)


def _data_card(d: Draft) -> str:
    lines = [f"# {d.name}", "", f"A {d.type} test set written by `evalkit init`.", "",
             "## Source", ""]
    lines += [f"- `{name}` (sha256 `{digest[:16]}`)" for name, digest in d.sources.items()]
    lines += ["", "## Splits", "", f"- {len(d.test)} test items, {len(d.train)} train items",
              f"- {d.split}", f"- {len(d.docs)} documents in docs/", ""]
    if d.labels:
        counts: dict[str, list[int]] = {label: [0, 0] for label in d.labels}
        for i, items in enumerate((d.test, d.train)):
            for it in items:
                counts[str(it["expected"])][i] += 1
        lines += ["## Labels", "", "| label | test | train |", "|---|---|---|"]
        lines += [f"| {label} | {t} | {r} |" for label, (t, r) in counts.items()]
        lines.append("")
    lines += ["## To fill in", "", "- Who collected or wrote the items, and when:",
              "- Licence and terms of use:", "- What the test split is meant to represent:",
              "- Known issues (label noise, duplicates, sensitive content):", ""]
    return "\n".join(lines)
