"""Inference benchmark: lawscreen's batched ONNX Runtime against the usual ways of serving BERT.

    python bench/inference.py [--json OUT] [--markdown OUT] [--posts N] [--sweep] [--quick]

Everything runs in one process, on this machine, on the same texts: N synthetic posts of random
CJK characters (one token per character, as bert-base-chinese tokenizes Chinese) whose lengths
follow the project's sample data (data/sample: 666 posts, log-normal with median 93 characters
and σ 0.37 of the log), clipped to 20–300 characters. Two models, with random weights (the FLOPs
do not depend on the weights):

- ``bert_base``: bert-base-chinese's shape (BertConfig defaults, vocabulary 21,128);
- ``small``: the shape ``lawscreen train bootstrap`` builds by default (``BootstrapConfig``).

Variants (the JSON keys of each model's object):

- ``a_blog_pad512``: the original blog's serving code: the plain ``torch.onnx`` export, default
  ONNX Runtime session, every post padded to 512 tokens, one post at a time;
- ``b_pipeline_batch1`` / ``b_pipeline_batch16``: the Hugging Face ``text-classification``
  pipeline on PyTorch (fp32, SDPA attention, PyTorch's default threads), batch 1 and 16;
- ``c_lawscreen_fp32``: ``lawscreen.inference.Classifier`` on the exported, fused model.onnx;
- ``d_lawscreen_int8``: the same on dynamic int8 (quantized here; random weights make the export's
  agreement gate meaningless, so it is reported, not applied).

Timing: each timed pass runs in a fresh Python process (``--worker``), as each approach would be
deployed, so no thread pool or library state leaks from one variant into another; the worker
loads its variant, warms it up on 16 posts, then times one pass over the posts. The variants are
interleaved, round after round, for ``ROUNDS`` rounds, and each one's best pass counts (as for the
sgemm ceiling): a burst of load from another process then penalises no variant in particular.
(a) pads every post to 512 tokens, so its cost does not depend on the post: it is timed on the
first ``BLOG_POSTS`` posts only.

Each variant entry: ``posts_per_s``, ``gflops`` (achieved: the forward FLOPs the logits need, per
second. Per post 2 × encoder parameters × L + 4 × layers × hidden × L², L = the post's tokens
with [CLS] and [SEP], less what the last layer would spend on the L − 1 rows besides [CLS] that
the classifier never reads (all its matrix multiplies but keys and values, and their attention
rows). Padding, and rows nobody reads, are work done but not counted; the pooler and classifier,
once per post, are left out), ``ceiling_share`` (gflops / ``ceiling_gflops``), ``seconds`` (best
pass), ``seconds_per_round``, ``posts`` timed, and ``max_abs_score_diff`` against
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
import subprocess
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


def small_model_shape() -> dict[str, Any]:
    """The shape ``lawscreen train bootstrap`` builds by default, with 512 positions so that the
    blog variant can pad to 512 as on bert-base."""
    from lawscreen.train.config import BootstrapConfig

    defaults = BootstrapConfig()
    return {
        "vocab_size": defaults.vocab_size,
        "hidden_size": defaults.hidden_size,
        "num_hidden_layers": defaults.num_layers,
        "num_attention_heads": defaults.num_heads,
        "intermediate_size": defaults.intermediate_size,
        "max_position_embeddings": 512,
    }


BERT_BASE: dict[str, Any] = {"vocab_size": 21128}  # BertConfig defaults otherwise: 12 × 768, FFN 3072
MAX_LENGTH = 512  # what every variant may read: no post is truncated (≤ 302 tokens)
LENGTH_MEDIAN, LENGTH_SIGMA, LENGTH_MIN, LENGTH_MAX = 93, 0.37, 20, 300
CJK_FIRST, CJK_CHARS = 0x4E00, 3000  # common characters, in both vocabularies
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TARGETS = {"c_over_a": 6.0, "c_over_b_best": 1.5, "c_share_of_ceiling": 0.70}
ROUNDS = 3  # timed passes per variant, interleaved; the best is reported
BLOG_POSTS = 32  # (a) pads every post to 512, so its cost per post is the same for any subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=RESULTS / "inference.json", help="JSON output")
    parser.add_argument(
        "--markdown", type=Path, default=RESULTS / "inference.md", help="markdown table output"
    )
    parser.add_argument("--posts", type=int, default=128, help="posts per variant (the same posts for all)")
    parser.add_argument("--sweep", action="store_true", help="also measure several token budgets")
    parser.add_argument("--quick", action="store_true", help="small model only, few posts (a smoke test)")
    parser.add_argument(
        "--worker", nargs=3, metavar=("VARIANT", "MODEL_DIR", "POSTS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        variant, model_dir, posts = args.worker
        print(json.dumps(worker(variant, Path(model_dir), int(posts))))
        return

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
    small = small_model_shape()
    models = {"small": small} if args.quick else {"bert_base": BERT_BASE, "small": small}
    with tempfile.TemporaryDirectory(prefix="lawscreen-bench-") as work:
        for name, shape in models.items():
            log(f"== {name}")
            result[name] = bench_model(
                Path(work) / name, shape, len(texts), sweep=args.sweep and name == "bert_base"
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


VARIANTS = (
    "a_blog_pad512",
    "b_pipeline_batch1",
    "b_pipeline_batch16",
    "c_lawscreen_fp32",
    "d_lawscreen_int8",
)


def run_worker(variant: str, model_dir: Path, posts: int) -> dict[str, Any]:
    """One timed pass of ``variant`` in a fresh Python process, as each approach is deployed: no
    thread pool, allocator or library state is shared between variants."""
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", variant, str(model_dir), str(posts)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode:
        raise RuntimeError(f"worker {variant} failed:\n{completed.stderr[-3000:]}")
    return dict(json.loads(completed.stdout.splitlines()[-1]))


def worker(variant: str, model_dir: Path, posts: int) -> dict[str, Any]:
    """Load ``variant``, warm it up on a few posts, then time one pass over the posts."""
    texts = make_texts(posts, seed=0)
    if variant == "a_blog_pad512":
        texts = texts[:BLOG_POSTS]
    run = load_variant(variant, model_dir)
    run(texts[:16])  # warm-up: thread pools started, weights paged in, first allocations made
    start = time.perf_counter()
    scores = run(texts)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "posts": len(texts), "scores": [float(x) for x in scores]}


def load_variant(variant: str, model_dir: Path) -> Callable[[Sequence[str]], np.ndarray]:
    if variant.startswith("c_budget_"):
        from lawscreen.inference import Classifier

        return Classifier.load(model_dir, max_batch_tokens=int(variant.removeprefix("c_budget_"))).score
    if variant in ("c_lawscreen_fp32", "d_lawscreen_int8"):
        from lawscreen.inference import Classifier

        return Classifier.load(model_dir, int8=variant == "d_lawscreen_int8").score

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    hf_tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=Tokenizer.from_file(str(model_dir / "tokenizer.json")),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_LENGTH,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    if variant == "a_blog_pad512":
        import onnxruntime as ort

        blog = ort.InferenceSession(
            str(model_dir / "raw.onnx"), providers=["CPUExecutionProvider"]
        )  # defaults

        def blog_score(batch: Sequence[str]) -> np.ndarray:
            scores = []
            for text in batch:
                enc = hf_tokenizer(
                    text, padding="max_length", truncation=True, max_length=512, return_tensors="np"
                )
                feed = {n: enc[n].astype(np.int64) for n in ("input_ids", "attention_mask", "token_type_ids")}
                (logits,) = blog.run(["logits"], feed)
                exp = np.exp(logits[0] - logits[0].max())
                scores.append(exp[1] / exp.sum())
            return np.array(scores)

        return blog_score

    import transformers
    from transformers import AutoModelForSequenceClassification, pipeline

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()  # default attention: SDPA
    pipe = pipeline("text-classification", model=model, tokenizer=hf_tokenizer, device="cpu")
    batch_size = int(variant.removeprefix("b_pipeline_batch"))

    def pipeline_score(batch: Sequence[str]) -> np.ndarray:
        with warnings.catch_warnings():
            # "You seem to be using the pipelines sequentially on GPU": we are on CPU, on purpose.
            warnings.simplefilter("ignore", UserWarning)
            # top_k=None: every label's score for every post
            results: Any = pipe(
                list(batch), batch_size=batch_size, truncation=True, max_length=512, top_k=None
            )
        return np.array([next(r["score"] for r in result if r["label"] == "LABEL_1") for result in results])

    return pipeline_score


def prepare(directory: Path, shape: dict[str, Any], posts: int) -> dict[str, Any]:
    """A random-weight model directory, exported by lawscreen (with its parity check), its int8
    file, and the plain export the blog variant uses."""
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    from lawscreen.artifacts import TOKENIZER_FILE, ModelMeta, write_meta
    from lawscreen.export import _torch_export, export_model, quantize

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.manual_seed(0)
    config = BertConfig(**shape, num_labels=2)  # type: ignore[call-arg]
    directory.mkdir(parents=True)
    log("building the model directory and exporting it (with the parity check)")
    BertForSequenceClassification(config).eval().save_pretrained(directory)  # type: ignore[no-untyped-call]
    build_tokenizer(config.vocab_size).save(str(directory / TOKENIZER_FILE))
    meta = ModelMeta(
        version="bench", base="random", threshold=0.5, max_length=MAX_LENGTH, created_at=datetime.now(UTC)
    )
    write_meta(directory, meta)
    report = export_model(directory, make_texts(posts, seed=0)[:32])
    for line in report.lines():
        log(f"  {line}")
    quantize(directory / "model.onnx", directory / "model.int8.onnx")
    eager = AutoModelForSequenceClassification.from_pretrained(directory, attn_implementation="eager").eval()
    _torch_export(eager, directory / "raw.onnx")
    return {
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
        "params_encoder": sum(p.numel() for p in eager.bert.encoder.parameters()),
        # The last layer's parameters applied to [CLS] only (all but keys and values): see pass_flops.
        "params_last_layer_cls_only": sum(
            p.numel()
            for name, p in eager.bert.encoder.layer[-1].named_parameters()
            if not name.startswith(("attention.self.key.", "attention.self.value."))
        ),
        "fusion": report.fusion.as_dict(),
        "parity": report.parity.as_dict(),
    }


def bench_model(directory: Path, shape: dict[str, Any], posts: int, *, sweep: bool) -> dict[str, Any]:
    from lawscreen.inference import physical_cores

    out = prepare(directory, shape, posts)
    out["threads"] = {
        "lawscreen_onnxruntime": physical_cores(),
        "blog_onnxruntime": "ORT default (all cores)",
        "pipeline_torch": "torch default (physical cores)",
    }
    cfg = out["config"]
    tokens = [len(t) + 2 for t in make_texts(posts, seed=0)]  # one token per character, plus [CLS] and [SEP]

    def pass_flops(lengths: Sequence[int]) -> float:
        """FLOPs the logits need (see the module docstring): the last layer's work for [CLS] only,
        but for keys and values, is not needed for the other n - 1 tokens."""
        layers, hidden, params = cfg["num_hidden_layers"], cfg["hidden_size"], out["params_encoder"]
        cls_only = out["params_last_layer_cls_only"]
        return float(
            sum(
                2 * params * n
                + 4 * layers * hidden * n * n
                - 2 * cls_only * (n - 1)
                - 4 * hidden * n * (n - 1)
                for n in lengths
            )
        )

    out["gflop_per_post_mean"] = pass_flops(tokens) / len(tokens) / 1e9
    log(f"timing {', '.join(VARIANTS)}: {ROUNDS} rounds, one fresh process per variant and round")
    passes: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for round_number in range(ROUNDS):
        for variant in VARIANTS:
            passes[variant].append(run_worker(variant, directory, posts))
        log(
            f"  round {round_number + 1}/{ROUNDS}: "
            + ", ".join(f"{v} {p[-1]['seconds']:.1f}s" for v, p in passes.items())
        )
    reference = np.array(passes["c_lawscreen_fp32"][0]["scores"])
    for variant, runs in passes.items():
        best = min(run["seconds"] for run in runs)
        n = runs[0]["posts"]
        out[variant] = {
            "posts_per_s": n / best,
            "seconds": best,
            "seconds_per_round": [round(run["seconds"], 3) for run in runs],
            "posts": n,
            "gflops": pass_flops(tokens[:n]) / 1e9 / best,
            "max_abs_score_diff": float(np.max(np.abs(np.array(runs[0]["scores"]) - reference[:n]))),
        }
    if sweep:
        log("token budget sweep (lawscreen fp32)")
        out["token_budget_sweep"] = {}
        for budget in (512, 1024, 2048, 4096, 8192, 16384):
            best = min(run_worker(f"c_budget_{budget}", directory, posts)["seconds"] for _ in range(2))
            out["token_budget_sweep"][str(budget)] = posts / best
            log(f"  {budget}: {posts / best:.2f} posts/s")
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
