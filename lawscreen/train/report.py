"""report.png: the model beside the baseline on the frozen evaluation set, at a glance.

Left, the precision-recall curves of both with each one's operating point (its validation-chosen
threshold); then the reliability diagram (is a score of 0.9 legal nine times in ten?); right, the
two confusion matrices. Text is English only: the figure must render on a worker without CJK
fonts. A bare ``Figure`` (no pyplot) renders with Agg and touches no global backend state or
display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import NDArray

from lawscreen.metrics import precision_recall_curve, reliability_bins

FIGURE_SIZE = (17, 4.2)
RELIABILITY_BINS = 5  # the evaluation set is small (84 posts on the sample data)
DPI = 110


def write_report(
    path: Path,
    *,
    title: str,
    labels: NDArray[np.int_] | list[int],
    model_scores: NDArray[np.float64],
    baseline_scores: NDArray[np.float64],
    model_metrics: dict[str, Any],
    baseline_metrics: dict[str, Any],
) -> None:
    """``*_metrics`` are the evaluation metrics as ``BinaryMetrics.as_dict`` gives them."""
    figure = Figure(figsize=FIGURE_SIZE)
    curves, reliability, model_matrix, baseline_matrix = figure.subplots(1, 4)
    figure.suptitle(title)
    for name, scores, metrics in (
        ("model", model_scores, model_metrics),
        ("baseline", baseline_scores, baseline_metrics),
    ):
        precision, recall, _ = precision_recall_curve(labels, scores)
        line = curves.step(
            recall, precision, where="post", label=f"{name} (PR-AUC {_fmt(metrics['pr_auc'])})"
        )
        curves.plot(metrics["recall"], metrics["precision"], "o", color=line[0].get_color())
        mean_score, share_legal, counts = reliability_bins(labels, scores, RELIABILITY_BINS)
        reliability.plot(mean_score, share_legal, "-", color=line[0].get_color(), alpha=0.6)
        reliability.scatter(
            mean_score,
            share_legal,
            s=20 + 200 * counts / max(int(counts.sum()), 1),
            color=line[0].get_color(),
            label=f"{name} (Brier {_fmt(metrics.get('brier'))})",
        )
    curves.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
    curves.set_title("evaluation set: PR curve (dot: threshold)")
    curves.legend(loc="lower left")
    reliability.plot([0, 1], [0, 1], ":", color="grey")
    reliability.set(xlabel="mean score in bin", ylabel="share labeled legal", xlim=(0, 1), ylim=(-0.02, 1.02))
    reliability.set_title("reliability (dot size: posts)")
    reliability.legend(loc="upper left")
    _confusion(model_matrix, "model", model_metrics)
    _confusion(baseline_matrix, "baseline", baseline_metrics)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)


def _confusion(axes: Axes, name: str, metrics: dict[str, Any]) -> None:
    cells = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]])
    axes.imshow(cells, cmap="Blues")
    for (row, column), count in np.ndenumerate(cells):
        color = "white" if count > cells.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", fontsize=14, color=color)
    axes.set_xticks([0, 1], ["not legal", "legal"])
    axes.set_yticks([0, 1], ["not legal", "legal"])
    axes.set(xlabel="predicted", ylabel="labeled")
    axes.set_title(f"{name}: F1 {metrics['f1']:.3f}, P {metrics['precision']:.3f}, R {metrics['recall']:.3f}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
