"""Reading a run folder's files back: one reader per file, errors that name file, line, field.

The analysis, the report and the gate all read run folders written earlier, perhaps by another
version or by hand; a damaged file must say where it is damaged instead of raising a bare
KeyError or JSONDecodeError from deep inside pandas.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

SCORE_COLUMNS = ("run", "variant", "item_id", "metric", "value")


class RunFolderError(ValueError):
    """A run-folder file that is missing or damaged, located by file, line and field."""

    def __init__(self, path: Path | str, message: str, *, line: int | None = None,
                 field: str | None = None):
        self.message, self.field = message, field
        self.where = where = str(path) + (f":{line}" if line is not None else "")
        super().__init__(f"{where}:{f' field {field!r}:' if field else ''} {message}")


def read_json(path: Path | str, *, required: bool = True) -> Any:
    """A JSON file (summary.json, run.json); {} for a missing optional one."""
    path = Path(path)
    if not path.is_file():
        if required:
            raise RunFolderError(path, "missing; is this a finished run folder?")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFolderError(path, f"invalid JSON: {exc.msg} (column {exc.colno})",
                             line=exc.lineno) from None
    except UnicodeDecodeError:
        raise RunFolderError(path, "not valid UTF-8") from None


def read_scores(path: Path | str, *, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """scores.csv (or epoch_scores.csv, `extra=("epoch",)`), long format, with its columns
    checked and values as floats."""
    path = Path(path)
    if not path.is_file():
        raise RunFolderError(path, "missing; is this a finished run folder?")
    try:
        df = pd.read_csv(path, dtype={"run": str, "item_id": str, "variant": str,
                                      "metric": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RunFolderError(path, f"unreadable CSV: {exc}") from None
    missing = [c for c in (*SCORE_COLUMNS[1:], *extra) if c not in df.columns]
    if missing:
        raise RunFolderError(path, "missing column", line=1, field=missing[0])
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    return df


def read_items(path: Path | str) -> list[dict[str, Any]]:
    """items.jsonl (id, input, expected, doc_ids, cluster); [] when the run has none."""
    path = Path(path)
    if not path.is_file():
        return []
    items = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RunFolderError(path, f"invalid JSON: {exc.msg}", line=n) from None
            if not isinstance(item, dict) or "id" not in item:
                raise RunFolderError(path, "each line must be an object with an id", line=n,
                                     field="id")
            items.append(item)
    return items


def read_summary(run_dir: Path | str) -> dict[str, Any]:
    """A run folder's summary.json (schema: docs/summary-schema.md), as written by the run."""
    return read_json(Path(run_dir) / "summary.json")
