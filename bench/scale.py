"""Wall time of ``lawscreen model bootstrap`` plus ``lawscreen train`` on about 10,000 posts.

    python -m bench.scale [--posts 10000]

The defaults must finish both in at most 15 minutes on two CPU cores. There is no 10,000-post
labeled set, so one is built for timing by recombining sentences of the development posts within
each class: realistic lengths and vocabulary, and labels as plausible as the work needs (the
quality of the result is not the point here). Everything is labeled, the worst case for ``train``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
from pathlib import Path

import torch

from bench.quality import DEV, scratch_data_dir
from bench.train import machine

# Sentences end at Chinese or Latin end punctuation; the punctuation stays with its sentence.
SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]?")
SENTENCES_PER_POST = (2, 6)


def synthetic_posts(count: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = [json.loads(line) for line in DEV.read_text().splitlines() if line.strip()]
    by_label: dict[int, tuple[list[str], list[str]]] = {0: ([], []), 1: ([], [])}
    for row in rows:
        titles, sentences = by_label[int(row["label"])]
        titles.append(row["title"])
        sentences.extend(part.strip() for part in SENTENCE.findall(row["text"]) if part.strip())
    posts = []
    for i in range(count):
        label = i % 2
        titles, sentences = by_label[label]
        body = "".join(rng.sample(sentences, rng.randint(*SENTENCES_PER_POST)))
        posts.append({"title": rng.choice(titles), "text": body, "label": label})
    return posts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=10_000)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory) / "posts.jsonl"
        data.write_text(
            "\n".join(json.dumps(post, ensure_ascii=False) for post in synthetic_posts(args.posts, 0))
        )
        with scratch_data_dir() as run:
            run("import", str(data))
            bootstrap = run("model", "bootstrap")
            train = run("train", "--base", "bootstrap")
    print(
        f"{args.posts} posts, torch threads {torch.get_num_threads()}: bootstrap {bootstrap / 60:.1f} min, "
        f"train {train / 60:.1f} min, total {(bootstrap + train) / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
