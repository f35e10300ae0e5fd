"""Stratified splits: every part keeps the classes in the proportions of the whole."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(labels: Sequence[int], share: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of ``labels`` split into (rest, part), ``part`` holding about ``share`` of each class.

    Each class gives at least one example to each side when it has two or more, so a small dataset
    still has both classes in both parts. Sorted indices: the order says nothing about the class.
    """
    rng = np.random.default_rng(seed)
    values = np.asarray(labels)
    rest: list[int] = []
    part: list[int] = []
    for label in np.unique(values):
        members = rng.permutation(np.flatnonzero(values == label))
        taken = round(len(members) * share)
        if len(members) >= 2:
            taken = min(max(taken, 1), len(members) - 1)
        part.extend(members[:taken].tolist())
        rest.extend(members[taken:].tolist())
    return sorted(rest), sorted(part)


def stratified_folds(labels: Sequence[int], folds: int, seed: int) -> list[list[int]]:
    """``folds`` disjoint index lists covering ``labels``, each with the classes' proportions."""
    rng = np.random.default_rng(seed)
    values = np.asarray(labels)
    result: list[list[int]] = [[] for _ in range(folds)]
    for label in np.unique(values):
        for position, index in enumerate(rng.permutation(np.flatnonzero(values == label))):
            result[position % folds].append(int(index))
    return [sorted(fold) for fold in result]
