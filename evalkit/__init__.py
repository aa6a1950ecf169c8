"""evalkit: measure each step up the prompt -> few-shot -> RAG -> fine-tuned ladder."""

__version__ = "0.1.0"
