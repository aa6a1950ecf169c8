"""Importers: turn common shapes into test-set JSONL items.

`from_csv` reads a `text,label` CSV (column names configurable; the delimiter, `, ; tab |`,
is the one the header line uses most); every row becomes an item with a stable id, except a
row whose every cell is empty (a cleared spreadsheet row). Errors
name the file, the line and the column.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import NoReturn

from evalkit.data.testset import TestsetError, no_lone_surrogate


def from_csv(path: Path | str, *, text_column: str = "text", label_column: str = "label",
             id_column: str | None = None, id_prefix: str | None = None) -> list[dict]:
    path = Path(path)
    prefix = id_prefix or path.stem
    text = _read_text(path)
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh, delimiter=_delimiter(text))
        header = reader.fieldnames or []
        for col in filter(None, (text_column, label_column, id_column)):
            if col not in header:
                raise TestsetError(path, f"column not found; header has {', '.join(header)}",
                                   line=1, field=col)
        items, empty = [], []
        for line, row in _checked(path, reader):
            if _blank(row):  # Excel's used range: a row of delimiters only holds nothing
                continue
            text = (row.get(text_column) or "").strip()
            label = (row.get(label_column) or "").strip()
            missing = [col for col, value in ((text_column, text), (label_column, label))
                       if not value]
            if missing:
                empty.append((line, missing))
                continue
            item_id = (row.get(id_column) or "").strip() if id_column else ""
            item_id = item_id or f"{prefix}-{len(items) + 1:05d}"  # an empty id cell: numbered
            items.append({"id": item_id, "input": text, "expected": label})
    if empty:
        _empty_cells(path, empty)
    if not items:
        raise TestsetError(path, "no rows")
    return items


def _blank(row: dict) -> bool:
    """Every cell empty or whitespace: a spreadsheet row that was cleared, which Excel still
    exports as `;;;;` below the data."""
    cells = [*row.values()]
    extra = row.get(None)  # cells past the header's last column, as csv.DictReader keeps them
    if isinstance(extra, list):
        cells = [c for c in cells if c is not extra] + extra
    return all(not (c or "").strip() for c in cells if isinstance(c, str) or c is None)


def _empty_cells(path: Path, empty: list[tuple[int, list[str]]]) -> NoReturn:
    """One error for every row with an empty cell, so a file with four blank texts among
    3,000 rows is fixed in one pass, not four; each row by its line (the record's last
    line, where a quoted newline makes one row span several)."""
    shown = ", ".join(f"{line} ({'/'.join(cols)})" for line, cols in empty[:20])
    more = f" and {len(empty) - 20} more" if len(empty) > 20 else ""
    rows = f"{len(empty)} row{'s' if len(empty) != 1 else ''}"
    at = "lines" if len(empty) > 1 else "line"
    raise TestsetError(path, f"empty value in {rows}, at {at} {shown}{more}; fill them in or "
                       f"delete those rows", line=empty[0][0], field=empty[0][1][0])


CSV_SUFFIXES = (".csv", ".tsv")
DELIMITERS = (",", ";", "\t", "|")


def is_csv(path: Path | str) -> bool:
    """A delimited text file (.csv, .tsv) rather than JSONL."""
    return Path(path).suffix.lower() in CSV_SUFFIXES


def _delimiter(text: str) -> str:
    """The delimiter the header line uses most of `, ; tab |` (a comma when none): Excel in
    many European locales saves "CSV" with semicolons, and a .tsv has tabs."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def csv_header(path: Path | str) -> list[str]:
    """A CSV's column names (its first line), [] for an empty file."""
    text = _read_text(Path(path))
    first = text.splitlines()[:1]
    return next(csv.reader(first, delimiter=_delimiter(text)), []) if first else []


def read_csv_rows(path: Path | str) -> list[dict[str, str]]:
    """A CSV's rows as column -> value, for `evalkit init` to tell what they hold (rows of
    empty cells left out, as from_csv leaves them)."""
    text = _read_text(Path(path))
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh, delimiter=_delimiter(text))
        return [row for _, row in _checked(Path(path), reader) if not _blank(row)]


def _checked(path: Path, reader: csv.DictReader) -> list[tuple[int, dict]]:
    """`reader`'s rows with their lines (a record's last), once every row is known to fit
    its header: a row with more cells than the header has columns (an unquoted delimiter
    inside a text: `hi, my card is late`) would otherwise shift into the wrong columns
    without a word, its text cut and the rest read as the label. Cells past the header that
    are empty (a trailing delimiter, as Excel writes) are no harm. One error lists every
    such row."""
    rows, wide = [], []
    width = len(reader.fieldnames or [])
    for row in reader:
        extra = row.get(None)
        if isinstance(extra, list) and any((c or "").strip() for c in extra):
            wide.append((reader.line_num, width + len(extra)))
        rows.append((reader.line_num, row))
    if wide:
        shown = "; ".join(f"line {line}: {cells} cells" for line, cells in wide[:10])
        more = f" (and {len(wide) - 10} more rows)" if len(wide) > 10 else ""
        raise TestsetError(path, f"{len(wide)} row{'s' if len(wide) != 1 else ''} with more "
                           f"cells than the header's {width} columns: {shown}{more}; a text "
                           f"holding the delimiter must be quoted (\"hi, my card is late\")",
                           line=wide[0][0])
    return rows


def _read_text(path: Path) -> str:
    """The file as text; a BOM (Excel's "CSV UTF-8") is dropped, other encodings are errors
    (a guess could mis-read every accent without a word) naming the line, the column, the
    text at fault and what the file looks like."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _not_utf8(path, data, exc)


def _not_utf8(path: Path, data: bytes, exc: UnicodeDecodeError) -> NoReturn:
    """Refuse a file that is not UTF-8: Excel's 'CSV (Comma delimited)' on Windows writes
    Windows-1252, where 'ä' is the single byte 0xe4. The column is the first cell of the
    record holding the byte whose bytes are not UTF-8 (a CSV only)."""
    line = data[:exc.start].count(b"\n") + 1
    start = data.rfind(b"\n", 0, exc.start) + 1
    end = data.find(b"\n", exc.start)
    snippet = data[start:end if end >= 0 else len(data)].decode("latin-1").strip()[:40]
    try:
        data.decode("cp1252")
        kind = "Windows-1252 (what Excel's 'CSV (Comma delimited)' writes)"
    except UnicodeDecodeError:
        kind = "Latin-1 or another single-byte encoding"
    raise TestsetError(path, f"not valid UTF-8 (byte 0x{data[exc.start]:02x} in {snippet!r}); "
                       f"the file reads as {kind}: save it from Excel as 'CSV UTF-8', or "
                       f"convert it (iconv -f cp1252 -t utf-8)", line=line,
                       field=_column_at(path, data, line)) from None


def _column_at(path: Path, data: bytes, line: int) -> str | None:
    """The CSV column of the first cell that is not UTF-8 in the record ending at or after
    `line`; None for a file that is not CSV or a record that cannot be placed."""
    if not is_csv(path):
        return None
    text = data.decode("latin-1")
    with io.StringIO(text, newline="") as fh:
        reader = csv.reader(fh, delimiter=_delimiter(text))
        header = next(reader, [])
        for row in reader:
            if reader.line_num < line:
                continue
            for name, cell in zip(header, row):
                try:
                    cell.encode("latin-1").decode("utf-8")
                except UnicodeDecodeError:
                    return name or None
            return None
    return None


def write_jsonl(items: list[dict], path: Path | str) -> None:
    with Path(path).open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")


# --- JSONL importers (evalkit init) --------------------------------------------------------
# Each reads one common shape and returns test-set item dicts ({id, input, expected, ...});
# errors name the file, the line and the field. Key names are matched from short lists of
# the spellings public data sets use, so most files import with no flag.

TEXT_KEYS = ("input", "text", "question", "query", "utterance", "utt", "sentence", "prompt")
LABEL_KEYS = ("label", "category", "intent", "class", "expected")
ANSWER_KEYS = ("answers", "answer", "expected", "reference", "annotations")  # ASQA's last
DOC_ID_KEYS = ("doc_ids", "gold_passages", "passage_ids", "context_ids", "doc_id")
TARGET_KEYS = ("target", "expected", "output", "json", "record")


def read_jsonl(path: Path | str) -> list[tuple[int, dict]]:
    """(line number, object) per non-empty line; a line that is not a JSON object is an
    error naming its line."""
    path = Path(path)
    rows = []
    text = _read_text(path)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if not rows and (document := _json_document(path, text)) is not None:
                return document  # not JSONL: one JSON value over many lines
            raise TestsetError(path, f"malformed JSON: {exc.msg} (column {exc.colno})",
                               line=lineno) from None
        if not isinstance(row, dict):
            if not rows and (document := _json_document(path, text)) is not None:
                return document
            raise TestsetError(path, "each line must be a JSON object", line=lineno)
        if "\\u" in line:
            no_lone_surrogate(row, path=path, lineno=lineno)
        rows.append((lineno, row))
    if not rows:
        raise TestsetError(path, "no rows")
    if len(rows) == 1 and _is_squad_file(rows[0][1]):
        return [(rows[0][0], row) for row in _squad_questions(rows[0][1])]
    return rows


def _json_document(path: Path, text: str) -> list[tuple[int, dict]] | None:
    """The rows of a file that is one JSON value rather than JSONL, or None if it is not
    one: an array of objects (each numbered by the line it starts on), or SQuAD's file
    pretty-printed (`json.dump(..., indent=2)`); any other object is refused, naming what
    it holds, rather than reported as malformed JSON on its first line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(value, dict) and _is_squad_file(value):
        return [(1, row) for row in _squad_questions(value)]
    if isinstance(value, dict):
        keys = ", ".join(list(value)[:6]) + (", ..." if len(value) > 6 else "")
        raise TestsetError(path, f"one JSON object (keys: {keys}), not rows: evalkit reads "
                           f"JSONL (one object per line), a JSON array of objects, or "
                           f"SQuAD's file; write one object per item, e.g. "
                           f'{{"text": ..., "label": ...}}', line=1)
    if not isinstance(value, list):
        return None
    rows, decoder, at = [], json.JSONDecoder(), text.index("[") + 1
    for item in value:
        while text[at] in " \t\r\n,":
            at += 1
        lineno = text.count("\n", 0, at) + 1
        _, at = decoder.raw_decode(text, at)
        if not isinstance(item, dict):
            raise TestsetError(path, "each element of the array must be a JSON object",
                               line=lineno)
        no_lone_surrogate(item, path=path, lineno=lineno)
        rows.append((lineno, item))
    if not rows:
        raise TestsetError(path, "no rows")
    return rows


def _is_squad_file(row: dict) -> bool:
    """SQuAD's own file (train-v2.0.json): one object, `data` a list of articles each
    with `paragraphs`."""
    data = row.get("data")
    return (isinstance(data, list) and bool(data)
            and all(isinstance(a, dict) and isinstance(a.get("paragraphs"), list)
                    for a in data))


def _squad_questions(row: dict) -> list[dict]:
    """SQuAD's articles -> paragraphs -> questions as one flat row per question, as the
    Hugging Face copy has them (id, title, context, question, answers, is_impossible), so
    every importer reads the official file as it reads the JSONL; all on the file's one
    line, which is the line an error names."""
    out = []
    for article in row["data"]:
        title = article.get("title")
        for paragraph in article["paragraphs"]:
            if not isinstance(paragraph, dict):
                continue
            for qa in paragraph.get("qas") or ():
                if isinstance(qa, dict):
                    out.append({"title": title, "context": paragraph.get("context"), **qa})
    return out


def pick_key(row: dict, candidates: tuple[str, ...], given: str | None = None) -> str | None:
    """`given` if set, else the row's key for the first candidate it has, spelt as the row
    spells it (a Kaggle export's `Text`, `Label` or `Question` is the candidate `text`,
    `label`, `question`; an exact match wins over one that differs in case)."""
    if given:
        return given
    exact = next((k for k in candidates if k in row), None)
    if exact is not None:
        return exact
    folded = {str(k).lower(): k for k in row}
    return next((folded[k] for k in candidates if k in folded), None)


def _need(path: Path, rows: list[tuple[int, dict]], candidates: tuple[str, ...],
          given: str | None, what: str) -> str:
    lineno, first = rows[0]
    key = pick_key(first, candidates, given)
    if key is None or key not in first:
        has = f"this line has {', '.join(first) or 'no keys'}"
        fix = (f"a token-tagging file (CoNLL, WikiANN: {has}) has no text and no record to "
               f"read, and no flag can name one; write each row as a text (the tokens "
               f"joined) and a JSON record of what to extract (e.g. {{\"PER\": [\"John\"], "
               f"\"LOC\": [\"Paris\"]}}), then init it with --type extraction"
               if _token_tagged(first) else f"give it with a flag ({has})")
        raise TestsetError(path, f"no {what} field; {fix}", line=lineno,
                           field=given or "/".join(candidates))
    return key


def _token_tagged(row: dict) -> bool:
    """A CoNLL/WikiANN-style row: a `tokens` list of strings beside a list of tags."""
    tokens = row.get(pick_key(row, ("tokens", "words")) or "tokens")
    return (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)
            and any(isinstance(v, list) and k != "tokens" and "tag" in str(k).lower()
                    for k, v in row.items()))


def _texts_present(path: Path, rows: list[tuple[int, dict]], key: str) -> None:
    """One error for every row whose text is missing or empty (as the CSV importer gives),
    so an export with a few blank texts is fixed in one pass."""
    bad = [lineno for lineno, row in rows
           if not isinstance(row.get(key), str) or not row[key].strip()]
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (f" and {len(bad) - 20} more" if len(bad) > 20
                                                 else "")
        rows_ = f"{len(bad)} row{'s' if len(bad) != 1 else ''}"
        raise TestsetError(path, f"must be a non-empty string; {rows_} lack one, at "
                           f"line{'s' if len(bad) != 1 else ''} {shown}", line=bad[0], field=key)


def _item_id(row: dict, path: Path, n: int) -> str:
    raw = row.get("id", row.get("_id"))
    return str(raw) if raw not in (None, "") else f"{path.stem}-{n:05d}"


def from_jsonl_classification(path: Path | str, *, text_key: str | None = None,
                              label_key: str | None = None) -> list[dict]:
    """A JSONL of texts with one label each (`text`/`label`, `utterance`/`intent`, ...)."""
    path = Path(path)
    rows = read_jsonl(path)
    text = _need(path, rows, TEXT_KEYS, text_key, "text")
    label = _need(path, rows, LABEL_KEYS, label_key, "label")
    _texts_present(path, rows, text)
    items = []
    for lineno, row in rows:
        value, target = row.get(text), row.get(label)
        if not isinstance(value, str) or not value.strip():
            raise TestsetError(path, "must be a non-empty string", line=lineno, field=text)
        if target is None or str(target).strip() == "" or isinstance(target, (dict, list)):
            raise TestsetError(path, "must be one label", line=lineno, field=label)
        items.append({"id": _item_id(row, path, len(items) + 1), "input": value.strip(),
                      "expected": str(target).strip()})
    return items


def from_qa_jsonl(path: Path | str, *, question_key: str | None = None,
                  answer_key: str | None = None) -> list[dict]:
    """QA items: a question, its acceptable answers (a string, a list, or SQuAD's
    `{"text": [...]}`) and optional gold passage ids. A row with no answer (null, "", [] or
    `is_impossible`/`answerable: false`) is unanswerable: `expected: null`."""
    path = Path(path)
    rows = read_jsonl(path)
    question = _need(path, rows, TEXT_KEYS, question_key, "question")
    _texts_present(path, rows, question)
    items = []
    for lineno, row in rows:
        value = row.get(question)
        if not isinstance(value, str) or not value.strip():
            raise TestsetError(path, "must be a non-empty string", line=lineno, field=question)
        item = {"id": _item_id(row, path, len(items) + 1), "input": value.strip(),
                "expected": _answers(row, pick_key(row, ANSWER_KEYS, answer_key) or "answers",
                                     path=path, lineno=lineno)}
        doc_key = pick_key(row, DOC_ID_KEYS)
        if doc_key and row.get(doc_key) not in (None, "", []):
            ids = row[doc_key] if isinstance(row[doc_key], list) else [row[doc_key]]
            item["doc_ids"] = [str(d) for d in ids]
        items.append(item)
    _some_answer_field(path, rows, answer_key)
    return items


UNANSWERABLE_KEYS = ("is_impossible", "answerable")


def _some_answer_field(path: Path, rows: list[tuple[int, dict]], given: str | None) -> None:
    """Refuse a file no row of which has an answer field: read as QA, every question would be
    'unanswerable' and a rung that always abstains would score 1.0 (a span or NER file with
    `entities` lists fell through to qa exactly so). A file whose rows say `answers: []` is
    still all-unanswerable on purpose."""
    if given or any(pick_key(row, (*ANSWER_KEYS, *UNANSWERABLE_KEYS)) for _, row in rows):
        return
    lineno, first = rows[0]
    raise TestsetError(path, f"no answer field on any row ({', '.join(ANSWER_KEYS)}; this line "
                       f"has {', '.join(first)}), so every question would be unanswerable; "
                       f"name it with --label-column, or choose the task with --type",
                       line=lineno, field="answers")


def _answers(row: dict, key: str, *, path: Path, lineno: int) -> list[str] | None:
    if row.get("is_impossible") is True or row.get("answerable") is False:
        return None
    value = row.get(key)
    if isinstance(value, dict):
        value = _answer_object(value, path=path, lineno=lineno, key=key)
    if isinstance(value, list) and value and all(isinstance(v, dict) and "text" in v
                                                 for v in value):
        value = [v["text"] for v in value]  # SQuAD's JSON: [{"text": ..., "answer_start": ...}]
    elif isinstance(value, list) and value and all(isinstance(v, dict) and "long_answer" in v
                                                   for v in value):
        value = [v["long_answer"] for v in value]  # ASQA's annotations: [{"long_answer": ...}]
    if value is None or value == "" or value == []:
        return None
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
        raise TestsetError(path, f"must be an answer or a list of answers, got {value!r}",
                           line=lineno, field=key)
    out = list(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
    return out or None


def _answer_object(value: dict, *, path: Path, lineno: int, key: str) -> object:
    """The answers an answer object holds: SQuAD's `{"text": [...], "answer_start": [...]}`,
    or TriviaQA's `{"value": ..., "aliases": [...]}` (the value first, then every alias: a
    prediction naming any alias is right). Any other object is refused naming its keys; it
    used to read as no answer, so a whole file became unanswerable without a word."""
    if "text" in value:
        return value["text"]
    if "value" in value or "aliases" in value:
        aliases = value.get("aliases")
        both = [value.get("value"), *(aliases if isinstance(aliases, list) else [aliases])]
        return [v for v in both if v is not None]
    raise TestsetError(path, f"an answer object needs 'text' (SQuAD) or 'value'/'aliases' "
                       f"(TriviaQA); this one has {', '.join(map(str, value)) or 'no keys'}",
                       line=lineno, field=key)


def corpus_from_jsonl(path: Path | str, *, renamed: dict[str, str] | None = None
                      ) -> list[tuple[str, str]]:
    """(doc id, markdown text) per line of a corpus JSONL (`id`, optional `title`, `text`);
    the title becomes the document's heading. Ids become file names, so each must be one
    plain name; given a `renamed` dict, an id that is not (a Wikipedia title such as
    `Beyoncé` or `Victoria_(Australia)`) gets a file name built from it instead (accents
    dropped, other characters '-', numbered on a clash) and `renamed[original] = new`."""
    from evalkit.paths import SAFE_NAME_RULE, is_safe_name

    path = Path(path)
    docs, seen = [], {}
    rows = read_jsonl(path)
    ids = [str(row.get("id", row.get("_id", ""))) for _, row in rows]
    taken = set(ids)
    for (lineno, row), doc_id in zip(rows, ids):
        if not is_safe_name(doc_id) and renamed is not None and doc_id:
            new = _free_name(_file_stem(doc_id) or "doc", taken)
            taken.add(new)
            renamed[doc_id], doc_id = new, new
        if not is_safe_name(doc_id):
            raise TestsetError(path, f"{doc_id!r} cannot be a file name ({SAFE_NAME_RULE})",
                               line=lineno, field="id")
        if doc_id in seen:
            raise TestsetError(path, f"duplicate id (first on line {seen[doc_id]})",
                               line=lineno, field="id")
        text = row.get("text", row.get("contents"))
        if not isinstance(text, str) or not text.strip():
            raise TestsetError(path, "must be a non-empty string", line=lineno, field="text")
        title = row.get("title")
        seen[doc_id] = lineno
        docs.append((doc_id, (f"# {title}\n\n" if title else "") + text.strip() + "\n"))
    return docs


def _free_name(stem: str, taken: set[str]) -> str:
    """`stem`, or `stem-2`, `stem-3`, ... if that is an id already in use."""
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    return name


CONTEXT_KEYS = ("context", "passage", "paragraph")


class InlineContexts:
    """The passages a SQuAD- or HotpotQA-style file carries inline as a corpus: each distinct
    text becomes one document and each row's gold doc_ids the ids of its own, so the passage
    is the row's gold document, not dropped.

    SQuAD's `context` is one string (the row's `title` its heading). HotpotQA's is a list of
    [title, sentences] pairs (the Hugging Face copy: `{"title": [...], "sentences":
    [[...]]}`), one document per paragraph headed by its title; the gold ones are those its
    `supporting_facts` name by title (all of them when it names none), the others stay in
    docs/ as the distractors the data set gives them.

    Ids are file names built from the title (ASCII-folded, e.g. `Beyonce-0003`), else
    `passage-0003`, numbered in order of first appearance; one instance shared by the test
    and train files gives a passage the same id in both.
    """

    def __init__(self) -> None:
        self.docs: dict[str, tuple[str, str]] = {}  # passage text -> (doc id, markdown)

    def read(self, path: Path | str) -> list[list[str]]:
        """The gold doc ids of each row's passages ([] for a row without any), in the file's
        order (one per non-empty line, as every JSONL importer reads it)."""
        out: list[list[str]] = []
        for _, row in read_jsonl(path):
            key = pick_key(row, CONTEXT_KEYS)
            value = row.get(key) if key else None
            if isinstance(value, str):
                title = row.get("title") if isinstance(row.get("title"), str) else ""
                out.append([self._doc(title, value)] if value.strip() else [])
                continue
            paragraphs = _titled_paragraphs(value)
            wanted = _supporting_titles(row.get("supporting_facts"))
            ids = [(title, self._doc(title, text)) for title, text in paragraphs if text.strip()]
            out.append([d for title, d in ids if not wanted or title in wanted])
        return out

    def _doc(self, title: str, text: str) -> str:
        text, title = text.strip(), title.strip()
        if text not in self.docs:
            doc_id = f"{_file_stem(title) or 'passage'}-{len(self.docs) + 1:04d}"
            self.docs[text] = (doc_id, (f"# {title}\n\n" if title else "") + text + "\n")
        return self.docs[text][0]


def _titled_paragraphs(value: object) -> list[tuple[str, str]]:
    """HotpotQA's context as (title, paragraph) pairs: a list of [title, [sentences]] (its
    JSON) or {"title": [...], "sentences": [[...]]} (its Hugging Face copy), the sentences
    joined by one space. [] for anything else."""
    if isinstance(value, dict) and isinstance(value.get("title"), list) \
            and isinstance(value.get("sentences"), list):
        value = list(zip(value["title"], value["sentences"]))
    if not isinstance(value, list):
        return []
    pairs = []
    for pair in value:
        if isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str):
            body = pair[1]
            if isinstance(body, list) and all(isinstance(x, str) for x in body):
                body = " ".join(x.strip() for x in body)
            if isinstance(body, str):
                pairs.append((pair[0], body))
    return pairs


def _supporting_titles(value: object) -> set[str]:
    """The titles HotpotQA's `supporting_facts` names: [[title, sentence id], ...] or
    {"title": [...], "sent_id": [...]}."""
    if isinstance(value, dict) and isinstance(value.get("title"), list):
        return {str(t) for t in value["title"]}
    if isinstance(value, list):
        return {str(f[0]) for f in value if isinstance(f, (list, tuple)) and f}
    return set()


def _file_stem(text: str) -> str:
    """`text` as a plain file-name stem: accents dropped, anything else unsafe as '-'."""
    import re
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9_]+", "-", ascii_text).strip("-_")[:80].strip("-_")


def from_openai_chat(path: Path | str) -> tuple[list[dict], str | None]:
    """OpenAI chat fine-tuning JSONL (`{"messages": [...]}`): each line's last user turn is
    the input and the assistant turn after it the expected answer. Returns the items and the
    most common system message (the instructions the model was tuned with), if any."""
    path = Path(path)
    items, systems = [], {}
    for lineno, row in read_jsonl(path):
        messages = row.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise TestsetError(path, "must be a list of {role, content} objects", line=lineno,
                               field="messages")
        turns = [(m.get("role"), m.get("content")) for m in messages]
        answer = next((i for i in range(len(turns) - 1, -1, -1) if turns[i][0] == "assistant"),
                      None)
        user = next((i for i in range(answer or 0, -1, -1) if turns[i][0] == "user"), None) \
            if answer is not None else None
        if answer is None or user is None:
            raise TestsetError(path, "needs a user turn followed by an assistant turn",
                               line=lineno, field="messages")
        for i in (user, answer):
            if not isinstance(turns[i][1], str) or not turns[i][1].strip():
                raise TestsetError(path, f"the {turns[i][0]} turn has no text", line=lineno,
                                   field=f"messages[{i}].content")
        for role, content in turns:
            if role == "system" and isinstance(content, str):
                systems[content] = systems.get(content, 0) + 1
        items.append({"id": _item_id(row, path, len(items) + 1),
                      "input": turns[user][1].strip(), "expected": turns[answer][1].strip()})
    system = max(systems, key=systems.get) if systems else None
    return items, system


def as_record(value: object) -> dict | None:
    """A JSON target record: an object, or a string holding one (as fine-tuning exports
    store it); None for anything else."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


def _unwrapped(record: dict | None) -> dict | None:
    """The record a Donut-style ground truth holds (CORD, and SROIE in Donut's format):
    `{"gt_parse": {...the fields...}, "meta": ..., "valid_line": [...OCR words...]}`. Taken
    whole, its fields were gt_parse, meta and valid_line, and field accuracy was scored on
    the wrapper, not on the receipt."""
    if isinstance(record, dict) and isinstance(record.get("gt_parse"), dict):
        return record["gt_parse"]
    return record


def record_key(row: dict) -> str | None:
    """The key of the row's JSON target record: the first of TARGET_KEYS, then of LABEL_KEYS
    (a `label` holding an object is a record, not a label), whose value is a record."""
    return next((key for k in (*TARGET_KEYS, *LABEL_KEYS)
                 if (key := pick_key(row, (k,))) and as_record(row.get(key)) is not None), None)


def rows_record_key(rows: list[dict], *, sample: int = 50) -> tuple[str | None, float]:
    """The record key most of the first `sample` rows have (see `record_key`), and the share
    of those rows that have it: one row's null or "n/a" target (the first, say) no longer
    makes a set of JSON records look like something else."""
    keys = [record_key(row) for row in rows[:sample]]
    found = Counter(k for k in keys if k is not None)
    if not found:
        return None, 0.0
    best, n = found.most_common(1)[0]
    return best, n / len(keys)


def from_extraction_jsonl(path: Path | str, *, text_key: str | None = None,
                          target_key: str | None = None) -> list[dict]:
    """Extraction items: a text and its JSON target record (an object, or a string holding
    one), under the first of TARGET_KEYS, else LABEL_KEYS, that holds one."""
    path = Path(path)
    rows = read_jsonl(path)
    text = _need(path, rows, TEXT_KEYS, text_key, "text")
    target = _need(path, rows, TARGET_KEYS,
                   target_key or rows_record_key([r for _, r in rows])[0], "JSON target")
    _texts_present(path, rows, text)
    items = []
    for lineno, row in rows:
        value, record = row.get(text), _unwrapped(as_record(row.get(target)))
        if not isinstance(value, str) or not value.strip():
            raise TestsetError(path, "must be a non-empty string", line=lineno, field=text)
        if not isinstance(record, dict):
            raise TestsetError(path, "must be a JSON object (fields -> values)", line=lineno,
                               field=target)
        items.append({"id": _item_id(row, path, len(items) + 1), "input": value.strip(),
                      "expected": record})
    return items
