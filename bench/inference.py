"""Inference benchmark: lawscreen's batched ONNX Runtime against the usual ways of serving BERT.

    python bench/inference.py [--json OUT] [--markdown OUT] [--posts N] [--sweep] [--quick]

Everything runs in one process, on this machine, on the same texts: N synthetic posts of random
CJK characters (one token per character, as bert-base-chinese tokenizes Chinese) whose lengths
follow the project's sample data (data/sample: 666 posts, log-normal with median 93 characters
and σ 0.37 of the log), clipped to 20–300 characters. Two models, with random weights (the FLOPs
do not depend on the weights):

- ``bert_base``: bert-base-chinese's shape (BertConfig defaults, vocabulary 21,128);
- ``small``: the project's default small model, ``SMALL_MODEL`` below.

Variants (the JSON keys of each model's object):

- ``a_blog_pad512``: the original blog's serving code: the plain ``torch.onnx`` export, default
  ONNX Runtime session, every post padded to 512 tokens, one post at a time;
- ``b_pipeline_batch1`` / ``b_pipeline_batch16``: the Hugging Face ``text-classification``
  pipeline on PyTorch (fp32, SDPA attention, PyTorch's default threads), batch 1 and 16;
- ``c_lawscreen_fp32``: ``lawscreen.inference.Classifier`` on the exported, fused model.onnx;
- ``d_lawscreen_int8``: the same on dynamic int8 (quantized here; random weights make the export's
  agreement gate meaningless, so it is reported, not applied).

Each variant entry: ``posts_per_s``, ``gflops`` (achieved: forward FLOPs of the real tokens per
second, FLOPs per post = 2 × encoder parameters × L + 4 × layers × hidden × L², L = the post's
tokens with [CLS] and [SEP]; padding is work done but not counted), ``ceiling_share`` (gflops /
``ceiling_gflops``), ``seconds`` and ``posts`` timed, ``runs``, and ``max_abs_score_diff`` against
``c_lawscreen_fp32`` on the same posts (all variants compute the same function).

Top-level keys: ``ceiling_gflops`` (the best numpy float32 matrix multiply 2048³, measured at
the start and the end of the run), ``machine`` (CPU model, cores, ISA flags, load averages,
library versions), ``texts`` (the length distribution), and one object per model with its
variants, ``ratios`` (``c_over_a``, ``c_over_b_best``, ``c_share_of_ceiling``, ``d_over_c``) and
``targets`` (the issue's targets for the bert-base shape, met or not). ``--sweep`` adds
``token_budget_sweep``: lawscreen fp32 posts/s for several token budgets.

A markdown table of the same numbers goes to bench/results/inference.md (``--markdown``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's lawscreen, not an installed one

RESULTS = REPO / "bench" / "results"
# The project's default small model. The training engineer's current defaults (bootstrap base:
# hidden 256, 4 layers, 4 heads, FFN 1024, 8,000-token vocabulary); 512 positions so that the
# blog variant can pad to 512 like on bert-base.
SMALL_MODEL: dict[str, Any] = {
    "vocab_size": 8000,
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "max_position_embeddings": 512,
}
BERT_BASE: dict[str, Any] = {"vocab_size": 21128}  # BertConfig defaults otherwise: 12 × 768, FFN 3072
MAX_LENGTH = 512  # what every variant may read: no post is truncated (≤ 302 tokens)
LENGTH_MEDIAN, LENGTH_SIGMA, LENGTH_MIN, LENGTH_MAX = 93, 0.37, 20, 300
CJK_FIRST, CJK_CHARS = 0x4E00, 3000  # common characters, in both vocabularies
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TARGETS = {"c_over_a": 6.0, "c_over_b_best": 1.5, "c_share_of_ceiling": 0.70}
MIN_SECONDS = 8.0  # a fast variant repeats its pass until it has run this long


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=RESULTS / "inference.json", help="JSON output")
    parser.add_argument(
        "--markdown", type=Path, default=RESULTS / "inference.md", help="markdown table output"
    )
    parser.add_argument("--posts", type=int, default=128, help="posts per variant (the same posts for all)")
    parser.add_argument("--sweep", action="store_true", help="also measure several token budgets")
    parser.add_argument("--quick", action="store_true", help="small model only, few posts (a smoke test)")
    args = parser.parse_args()

    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": machine_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    ceilings = [sgemm_gflops()]
    texts = make_texts(16 if args.quick else args.posts, seed=0)
    lengths = [len(t) for t in texts]
    result["texts"] = {
        "n": len(texts),
        "distribution": f"log-normal, median {LENGTH_MEDIAN} chars, sigma {LENGTH_SIGMA}, "
        f"clipped to {LENGTH_MIN}-{LENGTH_MAX} (fitted to data/sample)",
        "chars_min": min(lengths),
        "chars_median": float(np.median(lengths)),
        "chars_mean": float(np.mean(lengths)),
        "chars_max": max(lengths),
    }
    models = {"small": SMALL_MODEL} if args.quick else {"bert_base": BERT_BASE, "small": SMALL_MODEL}
    with tempfile.TemporaryDirectory(prefix="lawscreen-bench-") as work:
        for name, shape in models.items():
            log(f"== {name}")
            result[name] = bench_model(
                Path(work) / name, shape, texts, sweep=args.sweep and name == "bert_base"
            )
    ceilings.append(sgemm_gflops())
    result["ceiling_gflops"] = max(ceilings)
    result["ceiling_gflops_start_end"] = ceilings
    for name in models:
        finish_model(result[name], result["ceiling_gflops"], targets=name == "bert_base")
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["seconds"] = round(time.perf_counter() - started, 1)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(markdown(result, list(models)))
    print(markdown(result, list(models)))
    log(f"wrote {args.json} and {args.markdown} in {result['seconds']}s")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- inputs ---------------------------------------------------------------------------------


def make_texts(n: int, seed: int) -> list[str]:
    """Posts of random common CJK characters with a sentence mark every 10-30 characters."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(
        np.round(np.exp(rng.normal(np.log(LENGTH_MEDIAN), LENGTH_SIGMA, n))), LENGTH_MIN, LENGTH_MAX
    )
    texts = []
    for length in lengths.astype(int):
        chars = [chr(CJK_FIRST + int(c)) for c in rng.integers(0, CJK_CHARS, length)]
        for position in range(int(rng.integers(10, 30)), length - 1, int(rng.integers(10, 30))):
            chars[position] = "，" if position < length - 10 else "？"
        texts.append("".join(chars))
    return texts


def vocabulary(size: int) -> dict[str, int]:
    tokens = [*SPECIALS, "，", "。", "？"]
    tokens += [chr(CJK_FIRST + i) for i in range(size - len(tokens))]
    return {token: i for i, token in enumerate(tokens)}


def build_tokenizer(size: int) -> Any:
    """bert-base-chinese's tokenization: BERT normalizer and pre-tokenizer, a WordPiece vocabulary
    where each CJK character is a token, [CLS] … [SEP] added by the post-processor (for the HF
    pipeline; lawscreen's encode adds them itself)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = vocabulary(size)
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return tokenizer


# --- measurements ---------------------------------------------------------------------------


def sgemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The best of ``repeats`` float32 n³ matrix multiplies (numpy's BLAS, all its threads)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    for _ in range(3):
        a @ b  # warm-up: threads spun up, caches and clocks settled
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(
    run: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str], *, warmup: int = 8
) -> dict[str, Any]:
    """Warm up on a few posts, then time whole passes over ``texts`` until MIN_SECONDS have
    passed (at least one pass); posts/s from the median pass."""
    run(texts[:warmup])
    times: list[float] = []
    scores = np.empty(0)
    while not times or (sum(times) < MIN_SECONDS and len(times) < 5):
        start = time.perf_counter()
        scores = run(texts)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "posts_per_s": len(texts) / median,
        "seconds": median,
        "posts": len(texts),
        "runs": len(times),
        "scores": scores,
    }


def bench_model(directory: Path, shape: dict[str, Any], texts: list[str], *, sweep: bool) -> dict[str, Any]:
    import onnxruntime as ort
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    from lawscreen.artifacts import TOKENIZER_FILE, ModelMeta, write_meta
    from lawscreen.export import _torch_export, export_model, quantize
    from lawscreen.inference import Classifier, physical_cores

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    config = BertConfig(**shape, num_labels=2)
    tokenizer = build_tokenizer(config.vocab_size)
    directory.mkdir(parents=True)
    log("building the model directory and exporting it (with the parity check)")
    BertForSequenceClassification(config).eval().save_pretrained(directory)
    tokenizer.save(str(directory / TOKENIZER_FILE))
    write_meta(
        directory,
        ModelMeta(
            version="bench", base="random", threshold=0.5, max_length=MAX_LENGTH, created_at=datetime.now(UTC)
        ),
    )
    report = export_model(directory, texts[:32])
    for line in report.lines():
        log(f"  {line}")
    quantize(directory / "model.onnx", directory / "model.int8.onnx")
    model = AutoModelForSequenceClassification.from_pretrained(
        directory
    ).eval()  # the pipeline's default: SDPA
    raw = directory / "raw.onnx"
    _torch_export(
        AutoModelForSequenceClassification.from_pretrained(directory, attn_implementation="eager"), raw
    )

    encoder_params = sum(p.numel() for p in model.bert.encoder.parameters())
    out: dict[str, Any] = {
        "config": {
            k: getattr(config, k)
            for k in (
                "vocab_size",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
            )
        },
        "params_encoder": encoder_params,
        "fusion": report.fusion.as_dict(),
        "parity": report.parity.as_dict(),
        "threads": {"onnxruntime_lawscreen": physical_cores(), "torch": torch.get_num_threads()},
    }
    tokens = [len(t) + 2 for t in texts]  # one token per character, plus [CLS] and [SEP]
    flops = sum(
        2 * encoder_params * n + 4 * config.num_hidden_layers * config.hidden_size * n * n for n in tokens
    )
    out["gflop_per_pass"] = flops / 1e9
    variants: dict[str, dict[str, Any]] = {}

    log("(c) lawscreen fp32")
    fp32 = Classifier.load(directory)
    variants["c_lawscreen_fp32"] = measure(fp32.score, texts, warmup=len(texts))
    log("(d) lawscreen int8")
    int8 = Classifier.load(directory, int8=True)
    variants["d_lawscreen_int8"] = measure(int8.score, texts, warmup=len(texts))

    log("(a) the blog: plain export, default session, pad to 512, one post at a time")
    from transformers import PreTrainedTokenizerFast

    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_LENGTH,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    blog = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])

    def blog_score(batch: Sequence[str]) -> np.ndarray:
        scores = []
        for text in batch:
            enc = hf_tokenizer(
                text, padding="max_length", truncation=True, max_length=512, return_tensors="np"
            )
            feed = {
                name: enc[name].astype(np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")
            }
            (logits,) = blog.run(["logits"], feed)
            exp = np.exp(logits[0] - logits[0].max())
            scores.append(exp[1] / exp.sum())
        return np.array(scores)

    variants["a_blog_pad512"] = measure(blog_score, texts, warmup=2)

    from transformers import pipeline

    pipe = pipeline("text-classification", model=model, tokenizer=hf_tokenizer, device="cpu")

    def pipeline_score(batch_size: int) -> Callable[[Sequence[str]], np.ndarray]:
        def score(batch: Sequence[str]) -> np.ndarray:
            with warnings.catch_warnings():
                # "You seem to be using the pipelines sequentially on GPU": we are on CPU, on purpose.
                warnings.simplefilter("ignore", UserWarning)
                results = pipe(
                    list(batch), batch_size=batch_size, truncation=True, max_length=512, top_k=None
                )
            return np.array(
                [next(r["score"] for r in result if r["label"] == "LABEL_1") for result in results]
            )

        return score

    for batch_size in (1, 16):
        log(f"(b) Hugging Face pipeline, PyTorch, batch {batch_size}")
        variants[f"b_pipeline_batch{batch_size}"] = measure(pipeline_score(batch_size), texts)

    reference = variants["c_lawscreen_fp32"]["scores"]
    for entry in variants.values():
        entry["max_abs_score_diff"] = float(np.max(np.abs(entry.pop("scores") - reference)))
        entry["gflops"] = flops / 1e9 / entry["seconds"]
    out.update(variants)

    if sweep:
        log("token budget sweep (lawscreen fp32)")
        out["token_budget_sweep"] = {
            str(budget): measure(Classifier.load(directory, max_batch_tokens=budget).score, texts)[
                "posts_per_s"
            ]
            for budget in (1024, 2048, 4096, 8192, 16384, 32768)
        }
    return out


def finish_model(entry: dict[str, Any], ceiling: float, *, targets: bool) -> None:
    for variant in entry.values():
        if isinstance(variant, dict) and "gflops" in variant:
            variant["ceiling_share"] = variant["gflops"] / ceiling
    c = entry["c_lawscreen_fp32"]["posts_per_s"]
    b_best = max(entry["b_pipeline_batch1"]["posts_per_s"], entry["b_pipeline_batch16"]["posts_per_s"])
    entry["ratios"] = {
        "c_over_a": c / entry["a_blog_pad512"]["posts_per_s"],
        "c_over_b_best": c / b_best,
        "c_share_of_ceiling": entry["c_lawscreen_fp32"]["ceiling_share"],
        "d_over_c": entry["d_lawscreen_int8"]["posts_per_s"] / c,
    }
    if targets:
        entry["targets"] = {
            name: {"target": goal, "value": entry["ratios"][name], "met": entry["ratios"][name] >= goal}
            for name, goal in TARGETS.items()
        }


def machine_info() -> dict[str, Any]:
    import onnxruntime
    import psutil
    import tokenizers
    import torch
    import transformers

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model_name = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    flags = next(
        (line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []
    )
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return {
        "cpu": model_name,
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cpus": psutil.cpu_count(logical=True),
        "isa": [flag for flag in wanted if flag in flags],
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "versions": {
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
        },
    }


# --- report ---------------------------------------------------------------------------------

LABELS = {
    "a_blog_pad512": "(a) blog: pad to 512, one at a time, ORT",
    "b_pipeline_batch1": "(b) HF pipeline, PyTorch, batch 1",
    "b_pipeline_batch16": "(b) HF pipeline, PyTorch, batch 16",
    "c_lawscreen_fp32": "(c) lawscreen fp32",
    "d_lawscreen_int8": "(d) lawscreen int8",
}


def markdown(result: dict[str, Any], models: list[str]) -> str:
    machine = result["machine"]
    lines = [
        "# Inference benchmark",
        "",
        f"{result['date']}: {machine['cpu']}, {machine['physical_cores']} cores "
        f"({', '.join(machine['isa'])}); load average at start {machine['loadavg_start'][0]:.2f}, "
        f"at end {machine['loadavg_end'][0]:.2f}. numpy sgemm 2048³ ceiling "
        f"**{result['ceiling_gflops']:.0f} GFLOP/s** (start/end: "
        f"{', '.join(f'{c:.0f}' for c in result['ceiling_gflops_start_end'])}).",
        "",
        f"{result['texts']['n']} posts, {result['texts']['distribution']}: "
        f"{result['texts']['chars_min']}–{result['texts']['chars_max']} chars, "
        f"median {result['texts']['chars_median']:.0f}, mean {result['texts']['chars_mean']:.0f}.",
        "",
    ]
    for name in models:
        entry = result[name]
        cfg = entry["config"]
        lines += [
            f"## {name}: {cfg['num_hidden_layers']} layers × {cfg['hidden_size']}, "
            f"FFN {cfg['intermediate_size']}, vocabulary {cfg['vocab_size']} "
            f"({entry['params_encoder'] / 1e6:.1f} M encoder parameters)",
            "",
            "| variant | posts/s | GFLOP/s | share of sgemm ceiling | max \\|Δscore\\| vs (c) |",
            "|---|---:|---:|---:|---:|",
        ]
        for key, label in LABELS.items():
            v = entry[key]
            lines.append(
                f"| {label} | {v['posts_per_s']:.1f} | {v['gflops']:.0f} | {v['ceiling_share']:.0%} | "
                f"{v['max_abs_score_diff']:.1e} |"
            )
        r = entry["ratios"]
        lines += [
            "",
            f"(c)/(a) **{r['c_over_a']:.2f}×**, (c)/(best b) **{r['c_over_b_best']:.2f}×**, "
            f"(c) at **{r['c_share_of_ceiling']:.0%}** of the ceiling, (d)/(c) {r['d_over_c']:.2f}×.",
        ]
        if "targets" in entry:
            met = ", ".join(
                f"{k} ≥ {t['target']:g}: {'met' if t['met'] else 'MISSED'} ({t['value']:.2f})"
                for k, t in entry["targets"].items()
            )
            lines += ["", f"Targets: {met}."]
        if "token_budget_sweep" in entry:
            sweep = ", ".join(f"{k}: {v:.1f}" for k, v in entry["token_budget_sweep"].items())
            lines += ["", f"Token budget sweep (posts/s of (c)): {sweep}."]
        fusion = entry["fusion"]["counts"]
        lines += [
            "",
            f"Fused operators: {', '.join(f'{k} {v}' for k, v in fusion.items())}; parity max |Δlogit| "
            f"{entry['parity']['max_abs_logit_diff']:.1e}.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
