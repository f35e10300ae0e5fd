"""Files that ship with the project, found relative to the checkout (editable installs, images)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"
SAMPLE_POSTS = SAMPLE_DIR / "posts.jsonl"  # the labeled development set
SAMPLE_SOURCES = SAMPLE_DIR / "sources.toml"  # the demo's forum: heldout.jsonl as a JSON lines source
SAMPLE_ARCHIVE = SAMPLE_DIR / "archive.toml"  # archive.jsonl: unlabeled posts, crawled before training
