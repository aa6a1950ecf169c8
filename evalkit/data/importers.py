"""Importers: turn common shapes into test-set JSONL items.

`from_csv` reads a `text,label` CSV (column names configurable); every row becomes an item
with a stable id. Errors name the file, the line and the column.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from evalkit.data.testset import TestsetError


def from_csv(path: Path | str, *, text_column: str = "text", label_column: str = "label",
             id_column: str | None = None, id_prefix: str | None = None) -> list[dict]:
    path = Path(path)
    prefix = id_prefix or path.stem
    with io.StringIO(_read_text(path), newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        for col in filter(None, (text_column, label_column, id_column)):
            if col not in header:
                raise TestsetError(path, f"column not found; header has {', '.join(header)}",
                                   line=1, field=col)
        items = []
        for row in reader:
            line = reader.line_num
            text = (row.get(text_column) or "").strip()
            label = (row.get(label_column) or "").strip()
            if not text:
                raise TestsetError(path, "empty value", line=line, field=text_column)
            if not label:
                raise TestsetError(path, "empty value", line=line, field=label_column)
            item_id = row[id_column] if id_column else f"{prefix}-{len(items) + 1:05d}"
            items.append({"id": item_id, "input": text, "expected": label})
    if not items:
        raise TestsetError(path, "no rows")
    return items


def _read_text(path: Path) -> str:
    """The file as text; a BOM (Excel's "CSV UTF-8") is dropped, other encodings are errors."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TestsetError(path, "not valid UTF-8; save the CSV as UTF-8",
                           line=data[:exc.start].count(b"\n") + 1) from None


def write_jsonl(items: list[dict], path: Path | str) -> None:
    with Path(path).open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
