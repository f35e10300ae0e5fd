"""The classical baseline every model is reported beside: character n-gram TF-IDF and logistic regression.

It trains in a second on the same split as the model. If BERT does not beat it on the evaluation
set, BERT is not earning its cost, and every report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

# Characters 1 to 3: Chinese has no spaces, and most words are one to three characters.
NGRAM_RANGE = (1, 3)
# Weak regularisation: with a few hundred short posts most n-grams are seen a handful of times.
INVERSE_REGULARISATION = 10.0
MAX_ITERATIONS = 2000
NAME = f"tfidf-char{NGRAM_RANGE[0]}-{NGRAM_RANGE[1]}+logreg"


@dataclass(frozen=True, slots=True)
class Baseline:
    pipeline: Pipeline

    def score(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """P(legal consultation) for each text."""
        return np.asarray(self.pipeline.predict_proba(list(texts))[:, 1], dtype=np.float64)


def fit_baseline(texts: Sequence[str], labels: Sequence[int]) -> Baseline:
    pipeline = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=NGRAM_RANGE, sublinear_tf=True),
        LogisticRegression(C=INVERSE_REGULARISATION, class_weight="balanced", max_iter=MAX_ITERATIONS),
    )
    pipeline.fit(list(texts), list(labels))
    return Baseline(pipeline)
