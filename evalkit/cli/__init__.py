"""The `evalkit` command line. Each command parses options and calls one module; no logic here.

Importing this package registers every command on `main` (one module per command group).
"""

from __future__ import annotations

from evalkit.cli import (  # noqa: F401  registers
    compare,
    estimate,
    finetune,
    init,
    judge,
    report,
    run,
    testset,
)
from evalkit.cli.app import main
from evalkit.cli.gate import baseline, gate

main.add_command(gate)
main.add_command(baseline)

__all__ = ["main"]

if __name__ == "__main__":
    main()
