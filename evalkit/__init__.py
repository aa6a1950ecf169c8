"""evalkit: measure each step up the prompt -> few-shot -> RAG -> fine-tuned ladder."""

__version__ = "0.1.0"
# The distribution's name on the package index: "evalkit" there is an unrelated 2021 project
# (evolutionary algorithms). The import name and the command stay `evalkit`.
DISTRIBUTION = "evalkit-ladder"
