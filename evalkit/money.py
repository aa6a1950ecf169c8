"""Money as people read it: the one dollar format of the console, the gate, the verdict
sentences and the report, so a number reads the same everywhere and never in scientific
notation ($3.85e-06 does not appear). Stage 0, so every stage can use it; docs/economics.md
("Money") has the rules with examples.
"""

from __future__ import annotations

import math

USD_FLOOR = 0.000001  # below a millionth of a dollar, "<$0.000001"


def usd(x: float | None) -> str:
    """Dollars, readable at any scale and never in scientific notation; the one money format
    of the CLI, the verdict sentences and the report (docs/economics.md, "Money"):
    $1,234 (no cents from $100) / $12.30 / $0.62 (cents from $0.10) / $0.05, $0.0012,
    $0.0000038 (two significant digits, trailing zeros dropped) / <$0.000001 / $0.
    """
    if x is None or math.isnan(x):
        return "n/a"
    sign, a = ("-" if x < 0 else ""), abs(x)
    if a >= 99.995:  # what rounds to $100.00 or more
        return f"{sign}${a:,.0f}"
    if a >= 0.0995:  # what rounds to $0.10 or more
        return f"{sign}${a:,.2f}"
    if a == 0:
        return "$0"
    if a < USD_FLOOR:
        return f"{sign}<${USD_FLOOR:.6f}"
    decimals = 1 - math.floor(math.log10(a))  # two significant digits
    text = f"{a:.{decimals}f}".rstrip("0")
    return f"{sign}${text}"
