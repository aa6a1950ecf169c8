"""Append-only JSONL files written straight to the kernel: the journal, messages.jsonl and
the call ledger.

Each `write` is one write(2) on an unbuffered file (Python's text and buffered layers add
two copies and a flush call per line for nothing here: every caller wants its lines in the
kernel when the call returns). A torn last line, left by a kill mid-write, is cut before the
first write of a session, so the next line starts on a line of its own.

Text that UTF-8 cannot encode is a lone surrogate (a test item, an error message or an answer
holding a JSON escape like "\\ud83d" that was half of a pair): it is written as that same
escape, six ASCII characters, which inside a JSON string is the JSON for it, so the line
still reads back (json.loads) as the text it was, instead of the write failing the run.
"""

from __future__ import annotations

import os
from pathlib import Path


class Appender:
    """One append-only file; `write(text)` puts `text` (UTF-8) in the kernel now."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._fh = None

    def write(self, text: str) -> None:
        if self._fh is None:
            repair_tail(self.path)
            self._fh = self.path.open("ab", buffering=0)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (json.loads makes one of "\\ud83d")
            data = text.encode("utf-8", "backslashreplace")
        written = self._fh.write(data)
        while written < len(data):  # a short write (a signal, a nearly full disk): the rest
            data = data[written:]
            written = self._fh.write(data)

    def close(self, *, fsync: bool = False) -> None:
        """Close the file; `fsync`: on disk first, not only in the kernel."""
        if self._fh is not None:
            if fsync:
                os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


def repair_tail(path: Path) -> None:
    """Cut a torn last line (a kill mid-write) so the next line starts a line of its own."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        fh.truncate(data.rfind(b"\n") + 1)
