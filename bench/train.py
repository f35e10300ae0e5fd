"""Training throughput (samples/s) of the real fine-tuning loop, for two model shapes.

    python bench/train.py                          # CPU: the default small model and bert-base shape
    python bench/train.py --device cuda --bf16     # GPU, bfloat16 autocast, the CUDA batch size

"small" is the shape ``lawscreen model bootstrap`` makes by default; "bert-base" is
bert-base-chinese's shape (BertConfig defaults, vocabulary 21,128) with random weights, since the
point is the cost per post, not the quality. Each model is saved as a base and trained through
``lawscreen.train.loop.fine_tune`` on synthetic posts of ``--tokens`` tokens, so the figure
includes everything a real step does (batching, padding, loss, clipping, AdamW, schedule). On
CUDA each model first trains a few untimed steps, so that the CUDA context, cuBLAS handles and
kernel selection are not counted as training time.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
from pathlib import Path

import torch
from tokenizers import models
from transformers import BertConfig, BertForMaskedLM

from lawscreen.encoding import CLS, PAD, SEP
from lawscreen.train.config import BootstrapConfig, TrainConfig
from lawscreen.train.loop import Examples, fine_tune
from lawscreen.train.modeling import MASK, UNK, bert_tokenizer, load_base
from lawscreen.train.pretrain import save_base

BERT_BASE_CHINESE_VOCAB = 21128
# The CJK Unified Ideographs block: one token per character, as bert-base-chinese tokenizes.
CJK_FIRST, CJK_LAST = 0x4E00, 0x9FFF
SMALL_VOCAB = 6000  # about what bootstrap's tokenizer learns from a forum corpus
VALIDATION_POSTS = 16
CUDA_WARMUP_STEPS = 3


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    lines = [
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{platform.system()} {platform.release()}",
        f"cpu: {cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}",
    ]
    if torch.cuda.is_available():
        lines.append(
            f"gpu: {torch.cuda.get_device_name()} (bf16 supported: {torch.cuda.is_bf16_supported()})"
        )
    else:
        lines.append("gpu: none (torch sees no CUDA device)")
    return "\n".join(lines)


def shapes() -> dict[str, BertConfig]:
    small = BootstrapConfig()
    return {
        "small": BertConfig(
            vocab_size=SMALL_VOCAB,
            hidden_size=small.hidden_size,
            num_hidden_layers=small.num_layers,
            num_attention_heads=small.num_heads,
            intermediate_size=small.intermediate_size,
            max_position_embeddings=small.max_length,
        ),
        "bert-base": BertConfig(vocab_size=BERT_BASE_CHINESE_VOCAB),
    }


def write_base(directory: Path, config: BertConfig) -> None:
    """A random-weight base whose tokenizer maps each CJK character to one token."""
    specials = [PAD, UNK, CLS, SEP, MASK]
    characters = [chr(code) for code in range(CJK_FIRST, CJK_LAST + 1)]
    vocab = (specials + characters)[: config.vocab_size]
    vocab += [f"[unused{i}]" for i in range(config.vocab_size - len(vocab))]
    tokenizer = bert_tokenizer(
        models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token=UNK), lowercase=True
    )
    save_base(directory, BertForMaskedLM(config), tokenizer)


def synthetic(count: int, tokens: int, vocab: int, seed: int) -> Examples:
    rng = random.Random(seed)
    last = min(CJK_LAST, CJK_FIRST + vocab - 6)
    texts = ["".join(chr(rng.randint(CJK_FIRST, last)) for _ in range(tokens)) for _ in range(count)]
    return Examples(texts, [i % 2 for i in range(count)])


def measure(name: str, config: BertConfig, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory:
        write_base(Path(directory), config)
        train_config = TrainConfig(
            base=directory,
            device=args.device,
            bf16=args.bf16,
            batch_size=args.batch_size,
            cuda_batch_size=args.batch_size,
            max_length=args.tokens + 2,
            max_epochs=1,
            max_steps=args.steps,
            progress=False,
        )
        base = load_base(directory, train_config.max_length)
        posts = args.steps * args.batch_size
        train = synthetic(posts, args.tokens, config.vocab_size, seed=0)
        validation = synthetic(VALIDATION_POSTS, args.tokens, config.vocab_size, seed=1)
        if args.device == "cuda":
            warmup = train_config.model_copy(update={"max_steps": CUDA_WARMUP_STEPS})
            fine_tune(warmup, base, train, validation)
        tuned = fine_tune(train_config, base, train, validation)
    parameters = sum(p.numel() for p in tuned.model.parameters())
    print(
        f"{name:>9}: {parameters / 1e6:6.1f}M parameters, {tuned.device}"
        f"{' bf16' if args.bf16 and tuned.device.startswith('cuda') else ' fp32'}, "
        f"batch {args.batch_size} x {args.tokens} tokens: {tuned.samples_per_second:8.1f} samples/s "
        f"({tuned.steps} steps)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only)")
    parser.add_argument("--models", default="small,bert-base", help="comma-separated: small, bert-base")
    parser.add_argument("--tokens", type=int, default=126, help="tokens per post, without [CLS]/[SEP]")
    parser.add_argument("--batch-size", type=int, default=None, help="default 16 on CPU, 64 on CUDA")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimiser steps per model (default 20 on CPU, 5 for bert-base there; 100 on CUDA)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine())
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "CUDA was asked for but this machine has no CUDA GPU: nothing measured. Run it on a GPU worker."
        )
        return
    args.batch_size = args.batch_size or (64 if args.device == "cuda" else 16)
    for name in args.models.split(","):
        config = shapes()[name]
        if args.device == "cuda":
            steps = args.steps or 100
        else:
            steps = args.steps or (5 if name == "bert-base" else 20)
        measure(name, config, argparse.Namespace(**{**vars(args), "steps": steps}))


if __name__ == "__main__":
    main()
