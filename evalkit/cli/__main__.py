"""`python -m evalkit.cli ...`: the `evalkit` command without its console script (e.g. from a
checkout on PYTHONPATH, or for `python -X importtime -m evalkit.cli run ...`)."""

from evalkit.cli import main

main(prog_name="evalkit")
