"""Shared rich consoles: results go to stdout, messages and progress to stderr."""

from __future__ import annotations

from rich.console import Console

console = Console()
err_console = Console(stderr=True)
