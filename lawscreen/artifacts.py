"""A model version's directory: everything needed to run it, judge it and reproduce it.

    <LAWSCREEN_DATA_DIR>/models/<version>/
        config.json, model.safetensors   Hugging Face checkpoint (training and export read it)
        tokenizer.json                   `tokenizers` tokenizer (training and inference read it)
        meta.json                        ModelMeta: how it was made and how to use it
        report.png                       PR curve and confusion matrix
        model.onnx                       written by export; what inference loads
        model.int8.onnx                  optional; kept only when it agrees with fp32

Training writes the directory, export adds the ONNX files, inference reads only ``model.onnx``,
``tokenizer.json`` and ``meta.json`` (no torch). ``model_versions.artifact_path`` points here.
Label index 1 is "legal consultation" throughout.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from lawscreen.errors import ModelArtifactError

TOKENIZER_FILE = "tokenizer.json"
META_FILE = "meta.json"
REPORT_FILE = "report.png"
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
LABEL_NAMES = ("not_legal", "legal")


class ModelMeta(BaseModel):
    version: str
    base: str  # the base model it was fine-tuned from: a directory or a Hugging Face id
    threshold: float = Field(ge=0.0, le=1.0)  # score >= threshold means legal consultation
    max_length: int = Field(gt=0)  # tokens per post, head and tail kept when truncating
    created_at: datetime
    git_sha: str | None = None
    data_snapshot: dict[str, Any] = Field(default_factory=dict)  # label revision, counts, split hashes
    metrics: dict[str, Any] = Field(default_factory=dict)  # validation, evaluation, baseline
    export: dict[str, Any] = Field(default_factory=dict)  # parity figures, fusions, int8 decision


def read_meta(directory: Path) -> ModelMeta:
    path = directory / META_FILE
    try:
        return ModelMeta.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ModelArtifactError(f"{path} is missing: {directory} is not a model directory") from None
    except ValidationError as exc:
        raise ModelArtifactError(f"{path} is invalid: {exc.errors()[0]['msg']}") from None


def write_meta(directory: Path, meta: ModelMeta) -> None:
    """Write atomically: a reader never sees half a file, even if training is killed mid-write."""
    path = directory / META_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(meta.model_dump_json(indent=2))
    os.replace(partial, path)
