"""Test sets on disk: load, validate and hash `testsets/<name>/`.

A test set is a folder with `task.yaml`, `test.jsonl` (held out), `train.jsonl` and an optional
`docs/` corpus (one file per document, the file stem is its doc id). Every problem found while
loading is a `TestsetError` naming the file, the line and the field, because a user fixing a
400-line JSONL file needs to know exactly where to look.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evalkit import tasks
from evalkit.paths import SAFE_NAME_RULE, is_safe_name

DOC_SUFFIXES = (".md", ".txt")
DEFAULT_MAX_INPUT_CHARS = 100_000  # above this an input is warned about (memory, cost)

# Every key task.yaml may hold: top-level keys and the keys of each nested section. Anything
# else is a typo (`few_shots:`, `chunk_szie:`) that would otherwise be silently ignored.
TASK_KEYS = ("name", "type", "instructions", "labels", "metrics", "corpus", "few_shot",
             "json_schema", "fields", "max_input_chars")
SECTION_KEYS = {"corpus": ("chunk_size", "chunk_overlap", "k"), "few_shot": ("k",),
                "metrics": ("primary", "secondary")}


class TestsetWarning(UserWarning):
    """Something in a test set that loads but deserves a look (e.g. a huge input)."""

    __test__ = False


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
    def answerable(self) -> bool:
        """False for a question the documents do not answer (`expected: null`)."""
        return self.expected is not None

    @property
    def references(self) -> list[str]:
        """`expected` as a list of acceptable strings (for text metrics); none when
        unanswerable; a JSON record (extraction) as its JSON text, which is what a few-shot
        example or a fine-tuning file shows as the answer."""
        if self.expected is None:
            return []
        if isinstance(self.expected, dict):
            return [json.dumps(self.expected, ensure_ascii=False)]
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
    max_input_chars: int = DEFAULT_MAX_INPUT_CHARS
    # field -> one-line description (extraction); from the schema's properties when not given
    fields: dict[str, str] = field(default_factory=dict)
    # keys only one task type reads (generation's `style`), checked by that type's
    # `TaskType.options` when task.yaml is loaded
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.primary_metric, *self.secondary_metrics)

    def to_record(self) -> dict[str, Any]:
        """What run.json keeps of the task, so a run folder can be re-scored and re-analysed
        without the test-set folder (parsing an output needs the labels, for instance)."""
        return {"name": self.name, "type": self.type, "primary_metric": self.primary_metric,
                "secondary_metrics": list(self.secondary_metrics), "labels": list(self.labels),
                "json_schema": self.json_schema, "fields": dict(self.fields),
                "options": self.options}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Task:
        """The Task a run.json `task` record describes (instructions are not kept there)."""
        secondary = record.get("secondary_metrics")
        if secondary is None:  # run.json from before secondary metrics were recorded
            kind = tasks.TASK_TYPES.find(record["type"])
            allowed = kind.allowed_metrics() if kind is not None else ()
            secondary = [m for m in allowed if m != record["primary_metric"]]
        return cls(name=record.get("name", ""), type=record["type"], instructions="",
                   labels=dict.fromkeys(record.get("labels") or [], ""),
                   primary_metric=record["primary_metric"],
                   secondary_metrics=tuple(secondary), json_schema=record.get("json_schema"),
                   fields=dict(record.get("fields") or {}),
                   options=dict(record.get("options") or {}))


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
    warnings: tuple[str, ...] = ()  # problems that do not stop loading (huge inputs)

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def hash(self) -> str:
        """One hash over the files the set is read from (`input_hashes`), so a run records
        exactly which data it saw."""
        return _combined(self.file_hashes)

    @property
    def corpus_hash(self) -> str:
        return _combined({k: v for k, v in self.file_hashes.items() if k.startswith("docs/")})


def load_testset(path: str | Path) -> Testset:
    """Load and validate the test set in folder `path`."""
    root = Path(path)
    if not root.is_dir():
        raise TestsetError(root, "test set folder not found")
    task = load_task(root / "task.yaml")
    test = load_items(root / "test.jsonl", task=task)
    train = load_items(root / "train.jsonl", task=task, required=False)
    docs = load_docs(root / "docs")
    _check_doc_ids(root, test, train, docs)
    notes = _size_warnings(root, test, train, limit=task.max_input_chars)
    return Testset(root, task, test, train, docs, input_hashes(root, task), notes)


def _size_warnings(root: Path, test, train, *, limit: int) -> tuple[str, ...]:
    """A warning per input longer than `limit` characters: it loads, but one 10 MB line costs
    gigabytes of memory and a fortune in tokens, so the user should know before a run."""
    notes = []
    for name, items in (("test.jsonl", test), ("train.jsonl", train)):
        for item in items:
            if len(item.input) > limit:
                notes.append(f"{root / name}:{item.line}: field 'input': {len(item.input):,} "
                             f"characters, above the limit of {limit:,} (set "
                             f"max_input_chars in task.yaml to change it)")
    for note in notes:
        warnings.warn(note, TestsetWarning, stacklevel=3)
    return tuple(notes)


def load_task(path: Path) -> Task:
    """Read and validate `task.yaml`; every error names the file, the line and the field."""
    if not path.is_file():
        raise TestsetError(path, "missing task.yaml (every test set needs one)")
    raw, node = _read_yaml(path)
    if not isinstance(raw, dict):
        raise TestsetError(path, "task.yaml must be a mapping")
    at = _Locator(path, node)
    _check_keys(at, raw)
    for key in ("name", "type", "instructions"):
        if raw.get(key) is None or raw.get(key) == "":
            raise at.error("is required", key)
        if not isinstance(raw[key], str):
            raise at.error(f"must be a string, got {type(raw[key]).__name__} {raw[key]!r}", key)
    if not is_safe_name(raw["name"]):  # it names the run folders: one plain path component
        raise at.error(f"{raw['name']!r} must be a plain name ({SAFE_NAME_RULE}), since run "
                       f"folders are named after it", "name")
    kind = _check_type(at, raw["type"])
    labels = _labels(at, raw) if kind.uses_labels else {}
    corpus = _whole_numbers(at, raw, "corpus", low={"chunk_size": 1})
    few_shot = _whole_numbers(at, raw, "few_shot", low={})
    settings = CorpusSettings(**corpus)
    if settings.chunk_overlap >= settings.chunk_size:
        raise at.error(f"must be smaller than chunk_size ({settings.chunk_size}), got "
                       f"{settings.chunk_overlap}", "corpus.chunk_overlap")
    max_chars = raw.get("max_input_chars", DEFAULT_MAX_INPUT_CHARS)
    if type(max_chars) is not int or max_chars < 1:
        raise at.error(f"must be a whole number >= 1, got {max_chars!r}", "max_input_chars")
    schema = _json_schema(at, raw.get("json_schema"))
    fields = _fields(at, raw.get("fields"), schema)
    primary, secondary = _metric_names(path, kind, raw.get("metrics") or {}, at=at)
    options = {}
    for key, check in kind.options.items():
        if key in raw:
            try:
                options[key] = check(raw[key])
            except ValueError as exc:
                raise at.error(str(exc), key) from exc
    return Task(
        name=raw["name"],
        type=raw["type"],
        instructions=raw["instructions"],
        labels=labels,
        primary_metric=primary,
        secondary_metrics=secondary,
        corpus=settings,
        few_shot_k=few_shot.get("k", 4),
        json_schema=schema,
        max_input_chars=max_chars,
        fields=fields,
        options=options,
    )


def _json_schema(at: _Locator, value: Any) -> dict[str, Any] | None:
    """`json_schema`: a mapping inline, or a path (relative to task.yaml) to a JSON file;
    either way checked as a JSON Schema, so a broken schema fails here, not on every item."""
    if value is None:
        return None
    if isinstance(value, str):
        path = at.path.parent / value
        if not path.is_file():
            raise at.error(f"schema file {value!r} not found (paths are relative to "
                           f"task.yaml)", "json_schema")
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise TestsetError(path, f"malformed JSON: {exc.msg} (column {exc.colno})",
                               line=exc.lineno, field="json_schema") from None
    if not isinstance(value, dict):
        raise at.error("must be a mapping (a JSON schema) or the path of a JSON file",
                       "json_schema")
    from evalkit.tasks.extraction import check_schema  # jsonschema, only when a schema is given

    problem = check_schema(value)
    if problem is not None:
        raise at.error(f"not a valid JSON Schema: {problem}", "json_schema")
    return value


def _fields(at: _Locator, value: Any, schema: dict[str, Any] | None) -> dict[str, str]:
    """`fields`: field -> one-line description; without it, the schema's properties (and
    their descriptions) name the fields."""
    if value is None:
        props = (schema or {}).get("properties")
        if not isinstance(props, dict):
            return {}
        return {str(k): str((v or {}).get("description", "")) if isinstance(v, dict) else ""
                for k, v in props.items()}
    if not isinstance(value, dict):
        raise at.error("must map each field name to a one-line description", "fields")
    for name, desc in value.items():
        if not isinstance(desc, str):
            raise at.error(f"must be a one-line description (a string), got {desc!r}",
                           f"fields.{name}")
    return {str(k): v for k, v in value.items()}


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """The parsed document and its node tree (the nodes carry the line of every key/value)."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        raw = {} if node is None else yaml.SafeLoader("").construct_document(node)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise TestsetError(path, f"invalid YAML: {exc}",
                           line=None if line is None else line + 1) from exc
    return raw, node


class _Locator:
    """Finds the task.yaml line of a dotted field (`corpus.k`) from the YAML node tree."""

    def __init__(self, path: Path, root: yaml.Node | None):
        self.path, self.root = path, root

    def node(self, dotted: str, *, key: bool = False) -> yaml.Node | None:
        """The value node of `dotted` (or its key node), None where the path is absent."""
        found, current = None, self.root
        for part in dotted.split("."):
            if not isinstance(current, yaml.MappingNode):
                return None
            pair = next(((k, v) for k, v in current.value
                         if isinstance(k, yaml.ScalarNode) and k.value == part), None)
            if pair is None:
                return None
            found, current = pair[0], pair[1]
        return found if key else current

    def line(self, dotted: str, *, key: bool = False) -> int | None:
        node = self.node(dotted, key=key) or self.node(dotted.rsplit(".", 1)[0])
        return None if node is None else node.start_mark.line + 1

    def error(self, message: str, dotted: str, *, key: bool = False) -> TestsetError:
        return TestsetError(self.path, message, line=self.line(dotted, key=key), field=dotted)


def _check_keys(at: _Locator, raw: dict) -> None:
    """Refuse unknown keys at the top level and in each section, with a did-you-mean."""
    kind = tasks.TASK_TYPES.find(raw.get("type")) if isinstance(raw.get("type"), str) else None
    sections = [("", raw, (*TASK_KEYS, *(kind.options if kind else ())))]
    sections += [(f"{name}.", raw[name], keys) for name, keys in SECTION_KEYS.items()
                 if isinstance(raw.get(name), dict)]
    for prefix, mapping, known in sections:
        for key in mapping:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise at.error(f"unknown key {key!r}; {hint}known keys: {', '.join(known)}",
                               f"{prefix}{key}", key=True)


def _check_type(at: _Locator, task_type: str) -> tasks.TaskType:
    """The registered task type; a type the design names but no module registers is refused
    here, at load, rather than accepted and failed on every call."""
    known = ", ".join(tasks.TASK_TYPES.names())
    if task_type in tasks.TASK_TYPES:
        return tasks.task_type(task_type)
    if task_type in tasks.DESIGNED_TASK_TYPES:
        raise at.error(f"task type {task_type!r} is reserved but not built yet; known types: "
                       f"{known}", "type")
    raise at.error(f"must be one of {known}, got {task_type!r}", "type")


def _labels(at: _Locator, raw: dict) -> dict[str, str]:
    """Labels as their literal text: read from the YAML nodes, because YAML would turn an
    unquoted `yes`, `no`, `on` or `1` into a boolean or a number that no item could match."""
    node = at.node("labels")
    if not isinstance(node, yaml.MappingNode) or len(node.value) < 2:
        raise at.error("a classification task needs at least two labels, each with a "
                       "one-line description", "labels")
    labels: dict[str, str] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or not key_node.value:
            raise TestsetError(at.path, "each label must be a plain name",
                               line=key_node.start_mark.line + 1, field="labels")
        name = key_node.value
        if not isinstance(value_node, yaml.ScalarNode) or not value_node.value.strip():
            raise TestsetError(at.path, "must be a one-line description (a string)",
                               line=value_node.start_mark.line + 1, field=f"labels.{name}")
        if name in labels:
            raise TestsetError(at.path, "label defined twice",
                               line=key_node.start_mark.line + 1, field=f"labels.{name}")
        labels[name] = value_node.value
    return labels


def _whole_numbers(at: _Locator, raw: dict, section: str, *, low: dict[str, int]
                   ) -> dict[str, int]:
    """A section of whole-number settings (`corpus`, `few_shot`), each checked for type and
    lower bound. k: 0 is a legal "none" (a broken-RAG probe); chunk_size must be >= 1."""
    values = raw.get(section) or {}
    if not isinstance(values, dict):
        raise at.error("must be a mapping", section)
    for key, value in values.items():
        floor = low.get(key, 0)
        if type(value) is not int or value < floor:
            raise at.error(f"must be a whole number >= {floor}, got {value!r}",
                           f"{section}.{key}")
    return dict(values)


def _metric_names(path: Path, kind: tasks.TaskType, metrics: Any, *,
                  at: _Locator | None = None) -> tuple[str, tuple[str, ...]]:
    """`metrics.primary` and `metrics.secondary`, checked against the metric registry: the
    primary must be a per-item metric of the task type (a per-run one such as macro-F1 is not
    a mean over items, so it may be secondary only)."""
    at = at or _Locator(path, None)
    task_type = kind.name
    if not isinstance(metrics, dict):
        raise at.error("must be a mapping with 'primary' and 'secondary'", "metrics")
    item_level = kind.item_metrics()
    primary = metrics.get("primary", kind.default_primary)
    if not isinstance(primary, str) or primary not in item_level:
        raise at.error(f"{primary!r} cannot be the primary metric of a {task_type} task; "
                       f"choose one of {', '.join(item_level)}", "metrics.primary")
    allowed = kind.allowed_metrics()
    secondary = metrics.get("secondary", [m for m in allowed if m != primary
                                          and not tasks.metric(m).opt_in])
    if not isinstance(secondary, list) or not all(isinstance(m, str) for m in secondary):
        raise at.error("must be a list of metric names", "metrics.secondary")
    unknown = [m for m in secondary if m not in allowed]
    if unknown:
        raise at.error(f"unknown metric {unknown[0]!r} for a {task_type} task; "
                       f"known: {', '.join(allowed)}", "metrics.secondary")
    return primary, tuple(m for m in secondary if m != primary)


def load_items(path: Path, *, task: Task, required: bool = True) -> tuple[Item, ...]:
    """Read a JSONL file of items of `task`; every error names the file, line and field."""
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
            item = parse_item(line, path=path, lineno=lineno, task=task)
            if item.id in seen:
                raise TestsetError(path, f"duplicate id {item.id!r} (first on line "
                                   f"{seen[item.id]})", line=lineno, field="id")
            seen[item.id] = lineno
            items.append(item)
    if not items:
        raise TestsetError(path, "file is empty: a test set needs at least one item")
    return tuple(items)


def no_lone_surrogate(raw: dict, *, path: Path, lineno: int) -> None:
    """Refuse half of a UTF-16 pair (`\\ud83d` with no low half after it: an emoji cut in two
    by an export). json.loads keeps it as a str that UTF-8 cannot encode, so the run would
    stop at its first cache key or journal line with no file or line named."""
    for key, value in raw.items():
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(exc.object[exc.start])
            raise TestsetError(path, f"holds a lone UTF-16 surrogate (\\u{code:04x}, half of a "
                               "character cut in two): fix or remove that escape",
                               line=lineno, field=str(key)) from None


def parse_item(line: str, *, path: Path, lineno: int, task: Task) -> Item:
    """One JSONL line as an Item; its `expected` is checked by the task type."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TestsetError(path, f"malformed JSON: {exc.msg} (column {exc.colno})",
                           line=lineno) from exc
    if not isinstance(raw, dict):
        raise TestsetError(path, "each line must be a JSON object", line=lineno)
    if "\\u" in line:  # only an escape can make a lone surrogate: the common line skips this
        no_lone_surrogate(raw, path=path, lineno=lineno)
    for key in ("id", "input"):
        if key not in raw or raw[key] is None or raw[key] == "":
            raise TestsetError(path, "missing required field", line=lineno, field=key)
    kind = tasks.task_type(task.type)
    expected = _expected(raw, kind, path=path, lineno=lineno)
    if not isinstance(raw["input"], str):
        raise TestsetError(path, "must be a string", line=lineno, field="input")
    try:
        kind.check_expected(expected, task)
    except ValueError as exc:
        raise TestsetError(path, str(exc), line=lineno, field="expected") from None
    doc_ids = raw.get("doc_ids") or []
    if not isinstance(doc_ids, list):
        raise TestsetError(path, "must be a list of doc ids", line=lineno, field="doc_ids")
    if not isinstance(raw.get("metadata") or {}, dict):
        raise TestsetError(path, "must be a JSON object", line=lineno, field="metadata")
    return Item(
        id=str(raw["id"]),
        input=raw["input"],
        expected=expected,
        doc_ids=tuple(str(d) for d in doc_ids),
        cluster=None if raw.get("cluster") is None else str(raw["cluster"]),
        metadata=dict(raw.get("metadata") or {}),
        line=lineno,
    )


def _expected(raw: dict, kind: tasks.TaskType, *, path: Path, lineno: int) -> Any:
    """The item's `expected`; None marks an unanswerable question (`expected: null` or
    `answerable: false`), which only a task type that can abstain (qa) accepts."""
    answerable = raw.get("answerable", True)
    if not isinstance(answerable, bool):
        raise TestsetError(path, f"must be true or false, got {answerable!r}", line=lineno,
                           field="answerable")
    can_abstain = kind.abstains is not None
    if not answerable:
        if not can_abstain:
            raise TestsetError(path, f"a {kind.name} item cannot be unanswerable", line=lineno,
                               field="answerable")
        if raw.get("expected") is not None:
            raise TestsetError(path, "an unanswerable item (answerable: false) has no answer; "
                               "drop expected or set it to null", line=lineno, field="expected")
        return None
    if "expected" not in raw or raw["expected"] == "" or (
            raw["expected"] is None and not can_abstain):
        raise TestsetError(path, "missing required field", line=lineno, field="expected")
    return raw["expected"]


def load_docs(folder: Path) -> tuple[Document, ...]:
    """The documents of a docs/ folder: each .md or .txt file directly in it (the suffix in
    any case), its id the file's name without the suffix. Two files with one id (`x.md`
    and `x.txt`: init wrote both to x.md, one over the other) and empty files are refused,
    every one of them in one error; `skipped_docs` names what is not read."""
    if not folder.is_dir():
        return ()
    docs, paths, empty = [], {}, []
    for p in doc_files(folder):
        try:
            text = p.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TestsetError(p, f"not valid UTF-8 (byte {exc.start + 1})") from None
        if p.stem in paths:
            raise TestsetError(p, f"a second document with the id {p.stem!r} (the first is "
                               f"{paths[p.stem].name}): a document's id is its file name "
                               f"without the suffix; rename one of them")
        paths[p.stem] = p
        if not text.strip():
            empty.append(p)
            continue
        docs.append(Document(p.stem, text))
    if empty:
        more = f"; also {', '.join(e.name for e in empty[1:])}" if len(empty) > 1 else ""
        raise TestsetError(empty[0], f"document is empty{more} (delete empty documents or "
                           f"give them text)")
    return tuple(docs)


def doc_files(folder: Path) -> list[Path]:
    """The files of `folder` read as documents, sorted: .md and .txt, in any case."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DOC_SUFFIXES)


def skipped_docs(folder: Path) -> list[str]:
    """What in `folder` is not read as a document: other files (.html, .pdf) and folders
    (documents are not looked for below the folder itself), by name, sorted."""
    if not folder.is_dir():
        return []
    read = set(doc_files(folder))
    return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()
                  if p not in read and not p.name.startswith("."))


def _check_doc_ids(root: Path, test, train, docs) -> None:
    known = {d.id for d in docs}
    for name, items in (("test.jsonl", test), ("train.jsonl", train)):
        for item in items:
            for d in item.doc_ids:
                if d not in known:
                    raise TestsetError(root / name, f"doc id {d!r} is not a file in docs/ "
                                       f"(item {item.id!r})", line=item.line, field="doc_ids")


HASH_OF = "inputs"  # what `Testset.hash` covers (run.json's testset.hash_of)


def input_hashes(root: Path, task: Task) -> dict[str, str]:
    """SHA-256 of each file the test set is read from: task.yaml, test.jsonl, train.jsonl,
    the documents of docs/, and the JSON schema task.yaml gives (inline or in a file, as
    `task.yaml#json_schema`). Nothing else in the folder: its README.md (the data card init
    asks you to fill in), or a `.evalkit-cache/` and `reports/` made by running from inside
    it, changed the hash, so the gate failed an unchanged set and compare warned."""
    out = {}
    for name in ("task.yaml", "test.jsonl", "train.jsonl"):
        if (root / name).is_file():
            out[name] = hashlib.sha256((root / name).read_bytes()).hexdigest()
    if (root / "docs").is_dir():
        for p in doc_files(root / "docs"):
            out[f"docs/{p.name}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    if task.json_schema is not None:
        schema = json.dumps(task.json_schema, sort_keys=True, ensure_ascii=False)
        out["task.yaml#json_schema"] = hashlib.sha256(schema.encode()).hexdigest()
    return out


def all_files_hash(root: Path) -> str:
    """The hash evalkit recorded before `input_hashes` (every file under the folder), to
    resume a run that recorded it."""
    return _combined({p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                      for p in root.rglob("*") if p.is_file()})


def _combined(hashes: dict[str, str]) -> str:
    """One SHA-256 over `name:hash` lines, sorted by name (so "docs-src/" comes before
    "docs/", as every hash evalkit recorded has it)."""
    h = hashlib.sha256()
    for name in sorted(hashes):
        h.update(f"{name}:{hashes[name]}\n".encode())
    return h.hexdigest()
