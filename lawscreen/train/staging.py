"""Directories that appear complete or not at all.

A model or base directory is written under a hidden temporary name beside its destination and
renamed into place only when everything in it is written. A run killed half-way (an exception, ^C)
removes its temporary directory; one killed harder leaves only a ``.*.partial`` directory that no
reader mistakes for a model.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty directory; when the block succeeds it becomes ``target`` (replacing any old one)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
    staging.mkdir()
    try:
        yield staging
        if target.exists():
            # A reader may find no directory between the two renames, never a half-written one.
            retired = staging.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
            os.rename(target, retired)
            os.rename(staging, target)
            shutil.rmtree(retired)
        else:
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
