"""lawscreen: find legal-consultation questions in forum posts, without an LLM per post."""

__version__ = "0.1.0"
