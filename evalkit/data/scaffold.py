"""`evalkit init`: a test-set folder from a user's own file, with no file written by hand.

From one CSV or JSONL (or a folder that already holds test.jsonl), `draft` infers the task
type, reads the items with the importer for that shape, discovers the labels, splits one file
into a stratified, seeded train/test split, and `write_testset` writes task.yaml (labels with
descriptions stubbed from their names, the type's metrics), test.jsonl, train.jsonl, docs/
and a README.md data-card stub, then loads the folder back so anything it wrote that the
loader would refuse fails here, named, not at the first run.

Everything type-specific comes from the task-type registry (`TaskType.scaffold`, see
evalkit/tasks/base.py): this module names no type. Type inference asks every registered type
that reads the file's format how well the rows fit it (`Scaffold.fit`, 0 to 1) and takes the
highest, a tie going to the type registered first; a chat file (`messages`) is read as its
user and assistant turns and its answers asked the same way. The built-ins score: a JSON-object
target -> extraction (1.0); answers a median of 25 words or longer (ELI5, ASQA) -> generation
(0.95); answer, unanswerable or gold-passage keys -> qa (0.9); a label
column -> classification (0.8); a text `expected` with few distinct values (at most
`classification.LABEL_LIMIT` and a fifth of the rows) -> classification (0.6); anything
else -> qa (0.1). A CSV is read only by the types that take CSV (classification).

The split keeps exact and near duplicates (the pairs the run's leakage check would find: the
same text after case and whitespace folding, or TF-IDF cosine >= 0.9, transitively) on one
side, so a source with repeated or templated rows does not make the run refuse for leakage.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from evalkit.data import importers
from evalkit.data.testset import Testset, TestsetError, load_docs, load_testset, skipped_docs
from evalkit.tasks import TASK_TYPES, Scaffold, metric, scaffolded_types, task_type
from evalkit.tasks.classification import alike_labels


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
    docs_note: str = ""  # where the docs came from, when not a --corpus or --docs
    renamed: dict[str, str] = field(default_factory=dict)  # corpus id -> its file name
    given: bool = False  # the type came from --type, not from reading the file

    def summary(self) -> str:
        """One line per fact the user confirms before anything is written."""
        how = "given with --type" if self.given else "inferred; --type to override"
        lines = [f"type: {self.type} ({how})",
                 f"items: {len(self.test)} test, {len(self.train)} train ({self.split})"]
        if self.labels:
            shown = ", ".join(list(self.labels)[:8]) + (", ..." if len(self.labels) > 8 else "")
            lines.append(f"labels: {len(self.labels)} ({shown}); descriptions stubbed from "
                         f"the names")
            lines += _label_warnings(self.labels, (*self.test, *self.train))
        if task_type(self.type).abstains is not None:  # a type that can decline to answer
            none = sum(it["expected"] is None for it in (*self.test, *self.train))
            lines.append(f"unanswerable: {none} items (expected: null)")
        if self.fields:
            lines.append(f"fields: {', '.join(self.fields)}")
            for group in alike_labels(self.fields):  # "Total" in one row, "total" in others
                lines.append(f"warning: fields that differ only in case or separators: "
                             f"{' / '.join(map(repr, group))}; keys are compared exactly, so "
                             f"an answer's 'total' is not the record's 'Total' (make them one)")
        lines.append(f"docs: {len(self.docs)}" + (f" ({self.docs_note})" if self.docs_note
                                                   else ""))
        kind = task_type(self.type)
        lines.append(f"metrics: primary {kind.default_primary}, secondary "
                     f"{', '.join(_secondary(self.type)) or 'none'}")
        return "\n".join(lines)


def infer_type(rows: list[dict], *, fmt: str | None = None) -> str:
    """The registered task type the rows fit best: the highest `Scaffold.fit` among the types
    that read `fmt` (None: any), the first registered on a tie (see the module docstring)."""
    candidates = scaffolded_types(fmt)
    if not candidates:
        raise ValueError(f"no registered task type reads {fmt} files")
    if not rows:  # nothing to tell them apart by: the first, whose reader names the problem
        return candidates[0]
    return max(candidates, key=lambda name: _scaffold(name).fit(rows))


def _scaffold(kind: str) -> Scaffold:
    """The type's init hooks; ValueError for a type that is unknown or has none."""
    spec = TASK_TYPES.find(kind)
    if spec is None:
        raise ValueError(str(TASK_TYPES.unknown(kind)))
    if spec.scaffold is None:
        raise ValueError(f"evalkit init cannot draft a {kind!r} test set; it drafts "
                         f"{', '.join(scaffolded_types())}")
    return spec.scaffold


def _format(path: Path) -> str:
    return "csv" if importers.is_csv(path) else "jsonl"


def _as_items(items: list[dict]) -> list[dict]:
    """Items in evalkit's format as `fit` sees them: only `expected` (every type's items
    share the other keys, so they say nothing of the type)."""
    return [{"expected": it.get("expected")} for it in items]


def read_source(path: Path, kind: str | None, *, text_column: str | None = None,
                label_column: str | None = None) -> tuple[str, list[dict], str | None]:
    """(task type, items, system message) from one CSV or JSONL file."""
    fmt = _format(path)
    rows = (importers.read_csv_rows(path) if fmt == "csv"
            else [r for _, r in importers.read_jsonl(path)])
    if fmt == "jsonl" and "messages" in rows[0]:  # OpenAI chat fine-tuning JSONL
        items, system = importers.from_openai_chat(path)
        return kind or infer_type(_as_items(items)), items, system
    if kind is not None and fmt not in _scaffold(kind).formats:
        other = "JSONL (one JSON object per line)" if fmt == "csv" else "another format"
        raise TestsetError(path, f"a {fmt.upper()} file imports as "
                           f"{' or '.join(scaffolded_types(fmt))}, not {kind}; give {kind} "
                           f"items as {other}")
    kind = kind or infer_type(_named_target(rows, label_column), fmt=fmt)
    items = _scaffold(kind).read(path, text_key=text_column, target_key=label_column)
    return kind, items, None


def _named_target(rows: list[dict], column: str | None) -> list[dict]:
    """The rows as the fits should see them when --label-column names a key no fit knows
    (TREC's `label-coarse`, CORD's `ground_truth`): its value also as `expected`, which every
    type's fit reads, so the type follows the column the user named. Without that the fit
    saw no target and fell back to QA (a record's JSON text, or a label number, as the
    reference answer). A key a fit already knows (`answers`, `label`) is left as it is."""
    known = (*importers.LABEL_KEYS, *importers.ANSWER_KEYS, *importers.TARGET_KEYS)
    if not column or not rows or column not in rows[0] \
            or importers.pick_key({column: None}, known) is not None:
        return rows
    return [{**row, "expected": row.get(column)} for row in rows]


def stratified_split(items: list[dict], *, test_size: float, seed: int, key,
                     groups: list[int] | None = None) -> tuple[list[dict], list[dict]]:
    """Seeded split with about `test_size` of each stratum (`key(item)`) in test: a stratum of
    two or more groups has at least one on each side, a single group goes to train. Items the
    run's leakage check would pair (exact or near duplicates, `leakage.near_duplicate_groups`)
    form one group and move together, in the stratum of the group's first item, so the split
    init writes is never refused by `evalkit run` for leakage."""
    by_group: dict[int, list[dict]] = {}
    for it, group in zip(items, groups or _duplicate_groups(items), strict=True):
        by_group.setdefault(group, []).append(it)
    strata: dict[str, list[list[dict]]] = {}
    for group in by_group.values():
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


def _duplicate_groups(items: list[dict]) -> list[int]:
    from evalkit.data.leakage import near_duplicate_groups  # deferred: scikit-learn

    return near_duplicate_groups([it["input"] for it in items])


def _grouped(groups: list[int]) -> str:
    """', 12 near-duplicate items kept on one side' (nothing when there are none)."""
    sizes: dict[int, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    n = sum(size for size in sizes.values() if size > 1)
    return (f", {n} exact or near-duplicate items (in {sum(s > 1 for s in sizes.values())} "
            f"groups) kept on one side" if n else "")


def draft(source: Path, *, name: str | None = None, kind: str | None = None,
          train_file: Path | None = None, corpus: Path | None = None, docs_dir: Path | None = None,
          test_size: float = 0.2, seed: int = 0, text_column: str | None = None,
          label_column: str | None = None) -> Draft:
    """Everything `init` would write, read and checked, nothing written yet."""
    sources: dict[str, Path] = {}
    inline = None  # passages the rows carry inline, when no corpus is given
    given = kind is not None
    if source.is_dir():
        kind, test, train, system = _from_folder(source, kind)
        sources["test.jsonl"] = source / "test.jsonl"
        split = "as given in the folder"
        docs_dir = docs_dir or (source / "docs" if (source / "docs").is_dir() else None)
    else:
        kind, items, system = read_source(source, kind, text_column=text_column,
                                          label_column=label_column)
        sources[source.name] = source
        inline = importers.InlineContexts() if corpus is None and docs_dir is None else None
        _link_contexts(inline, source, items)
        if train_file is not None:
            test = items
            _, train, train_system = read_source(train_file, kind)
            _link_contexts(inline, train_file, train)
            sources[train_file.name] = train_file
            system = system or train_system
            split = f"test from {source.name}, train from {train_file.name}"
        else:
            groups = _duplicate_groups(items)
            test, train = stratified_split(items, test_size=test_size, seed=seed,
                                           key=_stratum(kind), groups=groups)
            split = (f"one file split {1 - test_size:.0%}/{test_size:.0%} train/test, "
                     f"stratified by {_stratum_name(kind)}, seed {seed}{_grouped(groups)}")
            if not test:  # init's own load would then refuse test.jsonl as missing
                raise TestsetError(source, f"the split left no test items out of "
                                   f"{len(items)}: each {_stratum_name(kind)} with one item "
                                   f"goes to train, and here every one has too few (a "
                                   f"{_stratum_name(kind)} per row? check --type and "
                                   f"--label-column, or give the test split as its own file)")
    _unique_ids(test, train, source)
    spec = task_type(kind)
    out = Draft(name=_name(name or source.stem), type=kind, given=given, test=test, train=train,
                instructions=system or _scaffold(kind).instructions, split=split)
    if spec.uses_labels:
        out.labels = {label: _describe(label) for label in
                      _label_order({str(it["expected"]) for it in (*test, *train)})}
    if _scaffold(kind).fields:
        out.fields = {f: _describe(f) for f in
                      dict.fromkeys(k for it in (*test, *train) for k in it["expected"])}
    if inline is not None and inline.docs:
        out.docs = list(inline.docs.values())
        out.docs_note = "the rows' distinct context passages, each row's gold doc_ids its own"
    elif corpus is not None:
        renamed: dict[str, str] = {}
        out.docs = importers.corpus_from_jsonl(corpus, renamed=renamed)
        _rename_doc_ids(renamed, (*test, *train))
        out.renamed = renamed
        if renamed:
            first = next(iter(renamed.items()))
            out.docs_note = (f"{len(renamed)} ids that cannot be file names renamed, e.g. "
                             f"{first[0]!r} -> {first[1]!r}; the data card lists them")
        sources[corpus.name] = corpus
    elif docs_dir is not None:
        out.docs_from = docs_dir
        # read as a test set's docs/ is: two files with one id, or an empty one, refused here
        out.docs = [(doc.id, doc.text) for doc in load_docs(docs_dir)]
        skipped = skipped_docs(docs_dir)
        if skipped:
            out.docs_note = (f"skipped, not .md or .txt files directly in {docs_dir.name}/: "
                             f"{', '.join(skipped[:8])}{', ...' if len(skipped) > 8 else ''}")
    _check_doc_ids((*test, *train), out.docs, source)
    out.sources = {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in sources.items()}
    return out


def _check_doc_ids(items, docs: list[tuple[str, str]], source: Path) -> None:
    """Gold doc_ids that name no document are refused before anything is written: the
    loader would refuse the folder init had just half-written (and the next init would then
    need --force), naming docs/ rather than the --corpus the user has yet to give."""
    known = {doc_id for doc_id, _ in docs}
    missing = list(dict.fromkeys(d for it in items for d in it.get("doc_ids") or ()
                                 if d not in known))
    if not missing:
        return
    named = sum(1 for it in items if any(d not in known for d in it.get("doc_ids") or ()))
    shown = ", ".join(repr(d) for d in missing[:5]) + (", ..." if len(missing) > 5 else "")
    fix = ("pass the corpus with --corpus FILE.jsonl or --docs FOLDER" if not docs else
           "add those documents to the corpus, or drop the ids from the rows")
    line, key = _first_row_naming(source, missing[0])
    raise TestsetError(source, f"{named} rows name gold passages that are not in the "
                       f"{'corpus' if docs else 'documents (none were given)'}: {shown} "
                       f"({len(missing)} ids); {fix}", line=line, field=key)


def _first_row_naming(source: Path, doc_id: str) -> tuple[int | None, str]:
    """(line, key) of the first JSONL row whose gold-passage key names `doc_id`."""
    if source.is_file() and _format(source) == "jsonl":
        for lineno, row in importers.read_jsonl(source):
            for key in importers.DOC_ID_KEYS:
                value = row.get(key)
                if value == doc_id or (isinstance(value, list) and doc_id in map(str, value)):
                    return lineno, key
    return None, "doc_ids"


def _link_contexts(inline: importers.InlineContexts | None, path: Path,
                   items: list[dict]) -> None:
    """Give each item read from a JSONL with inline passages (SQuAD's `context`, HotpotQA's
    titled paragraphs) its passages' doc ids as gold `doc_ids` (unless it names its own);
    with no corpus given the passages become docs/. Nothing for a CSV or a file without passages."""
    if inline is None or _format(path) != "jsonl":
        return
    ids = inline.read(path)
    if len(ids) != len(items):  # a reader that skips or merges rows: no safe pairing
        return
    for item, doc_ids in zip(items, ids):
        if doc_ids and not item.get("doc_ids"):
            item["doc_ids"] = doc_ids


def _rename_doc_ids(renamed: dict[str, str], items) -> None:
    """Items' gold doc_ids follow their documents' new file names."""
    if renamed:
        for it in items:
            if it.get("doc_ids"):
                it["doc_ids"] = [renamed.get(d, d) for d in it["doc_ids"]]


def _from_folder(root: Path, kind: str | None) -> tuple[str, list[dict], list[dict], None]:
    """test.jsonl and train.jsonl already in evalkit's item format: only task.yaml is new."""
    def rows(name: str) -> list[dict]:
        path = root / name
        return [r for _, r in importers.read_jsonl(path)] if path.is_file() else []
    test, train = rows("test.jsonl"), rows("train.jsonl")
    if not test:
        raise TestsetError(root / "test.jsonl", "file not found: a folder to initialise needs "
                           "test.jsonl (or give a CSV or JSONL file instead)")
    return kind or infer_type(_as_items([*test, *train])), test, train, None


def _stratum(kind: str):
    """What the split keeps in proportion: the type's stratum (a label; answerable or not),
    else nothing."""
    return _scaffold(kind).stratum or (lambda it: "")


def _stratum_name(kind: str) -> str:
    return _scaffold(kind).stratum_name


def _unique_ids(test: list[dict], train: list[dict], source: Path) -> None:
    """Ids repeated across the items are refused, each with the lines of the source's rows
    that carry it (a JSONL source; a folder's or chat file's ids are named alone)."""
    counts: dict[str, int] = {}
    for it in (*test, *train):
        counts[it["id"]] = counts.get(it["id"], 0) + 1
    repeated = [i for i, n in counts.items() if n > 1]
    if not repeated:
        return
    lines: dict[str, list[int]] = {}
    if source.is_file() and _format(source) == "jsonl":
        for lineno, row in importers.read_jsonl(source):
            raw = row.get("id", row.get("_id"))
            if raw is not None and str(raw) in counts and counts[str(raw)] > 1:
                lines.setdefault(str(raw), []).append(lineno)
        repeated.sort(key=lambda i: lines.get(i, [0])[0])  # in the file's order
    # a file that is one JSON value (SQuAD's) numbers every row by the line it starts on:
    # one line for all of them says nothing, so it is left out
    lines = {i: found for i, found in lines.items() if len(set(found)) > 1}
    shown = "; ".join(f"{i!r}" + (f" on lines {', '.join(map(str, lines[i]))}" if i in lines
                                  else "") for i in repeated[:5])
    more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
    first = lines.get(repeated[0], [None])[0]
    verb = "appears" if len(repeated) == 1 else "appear"
    raise TestsetError(source, f"{len(repeated)} id{'s' if len(repeated) != 1 else ''} {verb} "
                       f"more than once: {shown}{more}; ids must be unique (drop the id "
                       f"key to have init number the rows)", line=first, field="id")


def _name(raw: str) -> str:
    """A test-set name (one plain path component) from a file or folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.") or "testset"


RARE_LABEL = 5  # fewer items than this: the label's own scores rest on one or two test items


def _label_order(labels: set[str]) -> list[str]:
    """Sorted, numerically when every label is a number (0, 1, 2, ..., 10, not 0, 1, 10)."""
    if all(re.fullmatch(r"-?\d+", label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _label_warnings(labels: dict[str, str], items) -> list[str]:
    """What init's summary warns of before the labels are written: names that say nothing
    (numbers: the prompt-only rung knows a label only by its description), a text given two
    labels (after case and whitespace folding: no rung can get both right) and labels too
    rare for their own scores to mean much."""
    out = []
    if all(re.fullmatch(r"-?\d+", label) for label in labels):
        out.append("warning: the labels are numbers; the prompt-only rung knows a label only "
                   "by its description, so write what each means in task.yaml's labels")
    counts: dict[str, int] = {}
    for it in items:
        counts[str(it["expected"])] = counts.get(str(it["expected"]), 0) + 1
    by_text: dict[str, set[str]] = {}
    for it in items:
        by_text.setdefault(" ".join(it["input"].lower().split()), set()).add(str(it["expected"]))
    clashes = [(text, sorted(found)) for text, found in by_text.items() if len(found) > 1]
    if clashes:
        text, found = clashes[0]
        verb = "texts appear" if len(clashes) != 1 else "text appears"
        out.append(f"warning: {len(clashes)} {verb} with more than one label, e.g. "
                   f"{text[:60]!r} as {' and '.join(found)}; no model can get both right "
                   f"(fix the labels, or keep one row)")
    for group in alike_labels(labels):
        out.append(f"warning: labels that differ only in case or separators: "
                   f"{' / '.join(map(repr, group))}; an answer counts as one of them only "
                   f"when it spells it exactly (merge them in the file if they are one)")
    rare = sorted((n, label) for label, n in counts.items() if n < RARE_LABEL)
    if rare:
        shown = ", ".join(f"{label} ({n})" for n, label in rare[:8])
        out.append(f"warning: {len(rare)} label{'s' if len(rare) != 1 else ''} with fewer "
                   f"than {RARE_LABEL} items: {shown}{', ...' if len(rare) > 8 else ''}; "
                   f"too few for their own precision and recall to say much (a test item "
                   f"or two each; a label with one item has none in test)")
    return out


def _describe(label: str) -> str:
    """A one-line description stubbed from a name: 'card_arrival' -> 'card arrival'."""
    return re.sub(r"[_\-.]+", " ", label).strip() or label


def _secondary(kind: str) -> list[str]:
    spec = task_type(kind)
    return [m for m in spec.allowed_metrics() if m != spec.default_primary
            and not metric(m).opt_in]


def write_testset(d: Draft, out: Path, *, force: bool = False) -> Testset:
    """Write the folder and load it back (the loader's checks apply to what was written),
    all or nothing.

    Everything is written into a temporary sibling of `out` (same parent, so the rename is
    atomic on one filesystem), starting from a copy of what `out` already holds (a folder
    initialised in place keeps its docs/ and other files), and loaded there; only a folder
    that loads is renamed into place. A refusal, a disk error or Ctrl-C part-way leaves `out`
    as it was and no temporary folder, so the next init needs no --force. Over an existing
    folder the old one is moved aside, the new one renamed in, then the old one deleted; if
    the second rename fails the old one is moved back. Errors name `out`, not the temporary
    folder."""
    if (out / "task.yaml").exists() and not force:
        raise TestsetError(out / "task.yaml", "already exists; pass --force to overwrite it")
    dest = out.resolve() if out.is_symlink() else out  # a linked set is rewritten where it is
    made = _missing_parents(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.init-", dir=dest.parent))
    try:
        # mkdtemp makes it private (0700): the set gets the mode a mkdir would give it (or
        # the one it had), so a CI account or a colleague can read it
        os.chmod(tmp, stat.S_IMODE(dest.stat().st_mode) if dest.is_dir() else _dir_mode())
        if dest.is_dir():
            shutil.copytree(dest, tmp, symlinks=True, dirs_exist_ok=True)
        try:
            _write_into(d, tmp, force=force, docs_in_place=d.docs_from is not None
                        and d.docs_from.resolve() == (dest / "docs").resolve())
            load_testset(tmp)
        except (TestsetError, ValueError, OSError) as exc:
            raise _naming(exc, tmp, out) from None
        _swap_in(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in made:  # deepest first; only the folders this call created, if empty
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    return load_testset(out)


def _write_into(d: Draft, out: Path, *, force: bool, docs_in_place: bool) -> None:
    """Write task.yaml, the splits, docs/ and README.md into `out` (the temporary folder)."""
    (out / "task.yaml").write_text(_task_yaml(d), encoding="utf-8")
    for split, items in (("test.jsonl", d.test), ("train.jsonl", d.train)):
        if items:
            importers.write_jsonl(items, out / split)
    if d.docs and not docs_in_place:
        docs = out / "docs"
        if docs.is_dir() and force:
            shutil.rmtree(docs)
        docs.mkdir(exist_ok=True)
        for doc_id, text in d.docs:
            (docs / f"{doc_id}.md").write_text(text, encoding="utf-8")
    if not (out / "README.md").exists() or force:
        (out / "README.md").write_text(_data_card(d), encoding="utf-8")


def _dir_mode() -> int:
    """What `mkdir` makes under this process's umask (read by setting it, then back)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o777 & ~umask


def _swap_in(tmp: Path, dest: Path) -> None:
    """Rename `tmp` to `dest`; an existing `dest` is moved aside first and deleted only once
    the new folder is in place (moved back if that rename fails, so it is never lost)."""
    if not dest.exists():
        os.rename(tmp, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    old.rmdir()  # only the unique name is wanted: rename needs it free
    os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _missing_parents(path: Path) -> list[Path]:
    """The ancestors of `path` that do not exist yet, deepest first (removed on failure)."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing


def _naming(exc: Exception, tmp: Path, out: Path) -> Exception:
    """`exc` with the temporary folder's path replaced by the one the user asked for."""
    def fix(value):
        return value.replace(str(tmp), str(out)) if isinstance(value, str) else value
    if isinstance(exc, TestsetError):
        exc.path = fix(exc.path)
    if isinstance(exc, OSError) and exc.filename is not None:
        exc.filename = fix(str(exc.filename))
    exc.args = tuple(fix(a) for a in exc.args)
    return exc


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
              f"- {d.split}", f"- {len(d.docs)} documents in docs/"
              + (f" ({d.docs_note})" if d.docs_note else ""), ""]
    if d.labels:
        counts: dict[str, list[int]] = {label: [0, 0] for label in d.labels}
        for i, items in enumerate((d.test, d.train)):
            for it in items:
                counts[str(it["expected"])][i] += 1
        lines += ["## Labels", "", "| label | test | train |", "|---|---|---|"]
        lines += [f"| {label} | {t} | {r} |" for label, (t, r) in counts.items()]
        lines.append("")
    if d.renamed:
        lines += ["## Renamed documents", "", "Corpus ids that cannot be file names, and the doc "
                  "id (file name) each has here:", "", "| corpus id | doc id |", "|---|---|"]
        lines += [f"| {old} | {new} |" for old, new in d.renamed.items()]
        lines.append("")
    lines += ["## To fill in", "", "- Who collected or wrote the items, and when:",
              "- Licence and terms of use:", "- What the test split is meant to represent:",
              "- Known issues (label noise, duplicates, sensitive content):", ""]
    return "\n".join(lines)
