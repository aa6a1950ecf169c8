"""Report rendering for 10,000 items × 6 variants: time and file size against the targets."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from synth import make_run, make_testset  # noqa: E402

from evalkit.data.testset import load_testset  # noqa: E402
from evalkit.pipeline.experiment import write_scores_and_summary  # noqa: E402
from evalkit.report import render_report  # noqa: E402

N_ITEMS, VARIANTS = 10_000, ["prompt-only", "few-shot", "rag", "fine-tuned", "rag+fine-tuned",
                             "small-fine-tuned"]
TARGET_S, TARGET_MB = 10.0, 15.0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ts_dir = make_testset(tmp / "synthetic-10k", N_ITEMS)
        run_dir = make_run(tmp / "run", ts_dir, VARIANTS)
        write_scores_and_summary(run_dir, load_testset(ts_dir), VARIANTS)
        start = time.perf_counter()
        path = render_report(run_dir)
        elapsed = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
        keep = Path(__file__).parent.parent / "test-output" / "bench-report-10k.html"
        keep.parent.mkdir(exist_ok=True)
        keep.write_bytes(path.read_bytes())
    print(f"report {N_ITEMS} items x {len(VARIANTS)} variants: render {elapsed:.2f} s "
          f"(target < {TARGET_S:g} s, ratio {elapsed / TARGET_S:.2f}); "
          f"size {size_mb:.2f} MB (target < {TARGET_MB:g} MB, ratio {size_mb / TARGET_MB:.2f}); "
          f"copy at {keep}")


if __name__ == "__main__":
    main()
