"""The ladder's variant names, cheapest first.

Kept apart from evalkit.strategies.variants (which needs scikit-learn) so the CLI can show them
as a default in `--help` without importing any numeric library.
"""

from __future__ import annotations

LADDER = ("prompt-only", "few-shot", "rag", "fine-tuned", "rag+fine-tuned")
