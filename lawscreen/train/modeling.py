"""Base models and checkpoints: finding them offline, checking they fit, scoring texts with them.

A base is a directory holding a BERT checkpoint (``config.json`` and weights) and its tokenizer
(``tokenizer.json``, or BERT's ``vocab.txt``). ``--base`` names one of three things, tried in this
order: a directory; a base made by ``lawscreen model bootstrap`` (a name under
``LAWSCREEN_DATA_DIR/bases``); a Hugging Face id such as ``bert-base-chinese`` already in the local
Hugging Face cache. Nothing is ever downloaded: a training worker must behave the same with or
without a network, and an unpinned download would change the model under our feet.

Every failure to use a base (missing, corrupt, not BERT, tokenizer and embeddings that disagree)
is a ``BaseModelError`` raised before any training starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from huggingface_hub import snapshot_download
from numpy.typing import NDArray
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoConfig,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    PreTrainedModel,
)
from transformers.utils import logging as transformers_logging

from lawscreen.artifacts import LABEL_NAMES, TOKENIZER_FILE, read_meta
from lawscreen.encoding import CLS, PAD, SEP, SpecialIds, encode, load_tokenizer
from lawscreen.errors import BaseModelError, ModelArtifactError
from lawscreen.settings import get_settings
from lawscreen.train.runtime import sorted_batches

VOCAB_FILE = "vocab.txt"  # BERT's original tokenizer format, as some checkpoints still ship
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # says whether a vocab.txt tokenizer lower-cases
UNK, MASK = "[UNK]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
# Weights a classifier adds on top of a pre-trained encoder: their absence is expected.
CLASSIFIER_HEAD = ("bert.pooler.", "classifier.")
MLM_HEAD = ("cls.predictions.",)
SCORING_BATCH = 64


@dataclass(frozen=True, slots=True)
class Base:
    """A resolved, checked base: its name, where it lies, its tokenizer and its config."""

    name: str  # as recorded in meta.json: an absolute path, or a Hugging Face id
    path: Path
    tokenizer: Tokenizer
    config: BertConfig


def load_base(name: str, max_length: int | None) -> Base:
    """Resolve ``name`` offline; check that its tokenizer fits its embeddings, and ``max_length`` (if
    given) its position embeddings. The weights are read later, by ``load_classifier``/``load_masked_lm``."""
    path, canonical = resolve_base(name)
    config = _bert_config(path)
    tokenizer = base_tokenizer(path)
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise BaseModelError(
            f"base {name}: the tokenizer has {tokenizer.get_vocab_size()} tokens but the model only "
            f"{config.vocab_size} embeddings; tokenizer and checkpoint do not belong together"
        )
    if max_length is not None and max_length > config.max_position_embeddings:
        raise BaseModelError(
            f"base {name} reads at most {config.max_position_embeddings} tokens; max_length {max_length} "
            "is too long for it"
        )
    return Base(name=canonical, path=path, tokenizer=tokenizer, config=config)


def resolve_base(name: str) -> tuple[Path, str]:
    """The base's directory, and how to record it: its absolute path, or the Hugging Face id."""
    candidate = Path(name).expanduser()
    if candidate.is_dir():
        return candidate.resolve(), str(candidate.resolve())
    bootstrapped = get_settings().bases_dir / name
    if "/" not in name and bootstrapped.is_dir():
        return bootstrapped.resolve(), str(bootstrapped.resolve())
    if candidate.is_absolute() or name.startswith((".", "~")):
        raise BaseModelError(f"base {name}: no such directory")
    try:
        return Path(snapshot_download(name, local_files_only=True)), name
    except (OSError, ValueError):  # not in the cache (OSError) or not a valid Hugging Face id (ValueError)
        raise BaseModelError(
            f"base {name!r} is not a directory, not a base under {get_settings().bases_dir}, and not in "
            "the local Hugging Face cache (nothing is downloaded). Copy the model into a directory and "
            "pass its path, or make one with `lawscreen model bootstrap`."
        ) from None


def base_tokenizer(path: Path) -> Tokenizer:
    """The base's ``tokenizer.json``, or one built from BERT's ``vocab.txt`` the way BERT tokenizes."""
    try:
        if (path / TOKENIZER_FILE).is_file():
            return load_tokenizer(str(path / TOKENIZER_FILE))
        if (path / VOCAB_FILE).is_file():
            wordpiece = models.WordPiece.from_file(str(path / VOCAB_FILE), unk_token=UNK)
            tokenizer = bert_tokenizer(wordpiece, lowercase=_lowercases(path))
            SpecialIds.of(tokenizer)
            return tokenizer
    except ModelArtifactError as exc:
        raise BaseModelError(f"base {path}: {exc}") from None
    except Exception as exc:  # tokenizers and json raise plain Exceptions for unreadable files
        raise BaseModelError(f"base {path}: cannot read its tokenizer: {exc}") from None
    raise BaseModelError(f"base {path} has no {TOKENIZER_FILE} or {VOCAB_FILE}")


def _lowercases(path: Path) -> bool:
    config_file = path / TOKENIZER_CONFIG_FILE
    if not config_file.is_file():
        return True  # BERT's default
    return bool(json.loads(config_file.read_text()).get("do_lower_case", True))


def bert_tokenizer(wordpiece: models.WordPiece, *, lowercase: bool) -> Tokenizer:
    """BERT's tokenization around a WordPiece vocabulary: each CJK character is a token of its own
    (as bert-base-chinese), Latin-script words split into word pieces. An untrained ``wordpiece``
    gives the tokenizer to train; rebuilding around the trained model adds the post-processor."""
    tokenizer = Tokenizer(wordpiece)
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    if cls_id is not None and sep_id is not None:
        # Only for other users of tokenizer.json: lawscreen.encoding adds [CLS]/[SEP] itself.
        tokenizer.post_processor = processors.BertProcessing((SEP, sep_id), (CLS, cls_id))
    return tokenizer


def load_classifier(
    base: Base, dropout: float | None = None, *, new_head: bool = True
) -> BertForSequenceClassification:
    """The base's encoder with a fresh two-class head, or (``new_head=False``) a trained classifier."""
    overrides: dict[str, Any] = {
        "num_labels": len(LABEL_NAMES),
        "id2label": dict(enumerate(LABEL_NAMES)),
        "label2id": {name: i for i, name in enumerate(LABEL_NAMES)},
    }
    if dropout is not None:
        overrides |= {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    config = BertConfig.from_dict({**base.config.to_dict(), **overrides})
    allowed_missing = CLASSIFIER_HEAD if new_head else ()
    model = _from_pretrained(
        BertForSequenceClassification, base.path, config, allowed_missing=allowed_missing
    )
    assert isinstance(model, BertForSequenceClassification)
    return model


def load_masked_lm(base: Base) -> BertForMaskedLM:
    """The base with its masked-language-modelling head (a fresh head if the checkpoint has none)."""
    model = _from_pretrained(BertForMaskedLM, base.path, base.config, allowed_missing=MLM_HEAD)
    assert isinstance(model, BertForMaskedLM)
    return model


def _bert_config(path: Path) -> BertConfig:
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise BaseModelError(f"base {path}: cannot read config.json: {exc}") from None
    if not isinstance(config, BertConfig):
        raise BaseModelError(
            f"base {path} is a {config.model_type!r} model; lawscreen trains BERT-family checkpoints "
            "(model_type 'bert', like bert-base-chinese)"
        )
    return config


def _from_pretrained(
    cls: type[BertForSequenceClassification] | type[BertForMaskedLM],
    path: Path,
    config: BertConfig,
    *,
    allowed_missing: tuple[str, ...],
) -> torch.nn.Module:
    try:
        with quiet_transformers():
            # With output_loading_info the result is a (model, info) pair; the stubs know only the model.
            # Mismatched shapes are loaded as fresh weights and reported in info: checked below.
            loaded: Any = cls.from_pretrained(
                str(path),
                config=config,
                local_files_only=True,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
            )
        model, info = loaded
    except Exception as exc:  # safetensors, torch and transformers each raise their own types
        raise BaseModelError(f"base {path}: cannot load the weights: {exc}") from None
    missing = sorted(key for key in info["missing_keys"] if not key.startswith(allowed_missing))
    mismatched = sorted(
        f"{key} {tuple(stored)} in the checkpoint, {tuple(wanted)} in config.json"
        for key, stored, wanted in info["mismatched_keys"]
    )
    if missing or mismatched:
        detail = "; ".join([f"no {key}" for key in missing[:3]] + mismatched[:3])
        raise BaseModelError(f"base {path}: the checkpoint does not fit a BERT of its config: {detail}")
    assert isinstance(model, torch.nn.Module)
    return model


ModelT = TypeVar("ModelT", bound=PreTrainedModel)


def to_device(model: ModelT, device: torch.device) -> ModelT:
    # transformers wraps ``to`` with functools.wraps, a signature mypy cannot call through.
    model.to(device)  # type: ignore[arg-type]
    return model


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars: ``_from_pretrained`` checks what they say."""
    verbosity = transformers_logging.get_verbosity()
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity(logging.ERROR)
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated upstream
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated upstream


@torch.no_grad()
def predict_logits(
    model: BertForSequenceClassification,
    encoded: Sequence[list[int]],
    pad_id: int,
    device: torch.device,
) -> torch.Tensor:
    """Logits in the order of ``encoded``, computed in length-sorted batches.

    Always in fp32, also on a GPU that trains in bf16: these scores choose the epoch, the threshold
    and the calibration, and production scores in fp32 (ONNX). bf16 logits keep about three
    significant digits, too coarse for a threshold between close scores.
    """
    was_training = model.training
    model.train(False)  # evaluation mode: no dropout
    logits = torch.empty((len(encoded), len(LABEL_NAMES)))
    for batch in sorted_batches(encoded, SCORING_BATCH, pad_id):
        on_device = batch.to(device)
        output = model(input_ids=on_device.input_ids, attention_mask=on_device.attention_mask).logits
        logits[batch.index] = output.float().cpu()
    model.train(was_training)
    return logits


def legal_probability(logits: torch.Tensor) -> NDArray[np.float64]:
    return torch.softmax(logits, dim=-1)[:, 1].double().numpy()


def score_texts(
    model: BertForSequenceClassification, tokenizer: Tokenizer, texts: Sequence[str], max_length: int
) -> NDArray[np.float64]:
    """P(legal consultation) for each text, encoded exactly as inference encodes it."""
    return legal_probability(text_logits(model, tokenizer, texts, max_length))


def text_logits(
    model: BertForSequenceClassification, tokenizer: Tokenizer, texts: Sequence[str], max_length: int
) -> torch.Tensor:
    """Logits (n, 2) for each text, encoded exactly as inference encodes it."""
    device = next(model.parameters()).device
    encoded = encode(tokenizer, texts, max_length)
    return predict_logits(model, encoded, SpecialIds.of(tokenizer).pad, device)


def score_model_directory(directory: Path, texts: Sequence[str]) -> NDArray[np.float64]:
    """Score ``texts`` with a trained model directory's checkpoint (PyTorch, on the CPU)."""
    max_length = read_meta(directory).max_length
    model_base = load_base(str(directory), max_length)
    model = load_classifier(model_base, new_head=False)
    return score_texts(model, model_base.tokenizer, texts, max_length)
