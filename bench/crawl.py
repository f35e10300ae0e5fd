"""Crawler benchmark (not a test): a local fake forum crawled end to end into PostgreSQL.

- End to end: the fake forum (tests/fake_forum.py, in its own process so it does not share our
  GIL) serves V2EX API v2 pages of topics with HTML bodies; ``crawl_source`` fetches, parses,
  normalizes and stores them in a throwaway embedded PostgreSQL. Reported as posts stored per
  second, and the cost of the incremental re-run that follows (one conditional request).
- Upsert: ``upsert_posts`` alone on 10k posts, new, then unchanged, then all edited.

Run from the repository root: ``python bench/crawl.py [--posts 10000] [--page-size 100]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.fake_forum`, run as a script

from sqlalchemy import text

from lawscreen import embedded, migrate
from lawscreen.crawl import crawl_source, load_sources, sync_sources
from lawscreen.database import reset_engine, transaction
from lawscreen.models import SourceKind
from lawscreen.repo.posts import NewPost, upsert_posts
from lawscreen.repo.sources import ensure_source
from lawscreen.settings import get_settings
from tests.fake_forum import TOKEN, FakeForum, source_toml

UPSERT_POSTS = 10_000


def _serve(posts: int, page_size: int, pipe: Connection) -> None:
    with FakeForum(topics=posts, page_size=page_size) as forum:
        pipe.send(forum.url)
        pipe.recv()  # until the benchmark is done


def _machine() -> str:
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{model}, {os.cpu_count()} cores ({usable} usable), {system}"


def _end_to_end(workdir: Path, posts: int, page_size: int) -> None:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=_serve, args=(posts, page_size, child), daemon=True)
    server.start()
    try:
        url = parent.recv()
        os.environ["BENCH_TOKEN"] = TOKEN
        sources = workdir / "sources.toml"
        pages = posts // page_size + 2
        sources.write_text(
            source_toml("bench", "v2ex", url=url, nodes=["bench"], token_env="BENCH_TOKEN", max_pages=pages)
        )
        with transaction() as session:
            sync_sources(session, load_sources(sources))

        started = time.perf_counter()
        first = crawl_source("bench")
        elapsed = time.perf_counter() - started
        assert (first.ok, first.new) == (True, posts), first
        print(
            f"end to end: {first.new:,} posts in {pages - 1} pages of {page_size} "
            f"in {elapsed:.2f} s = {first.new / elapsed:,.0f} posts/s stored"
        )

        started = time.perf_counter()
        again = crawl_source("bench")
        assert (again.ok, again.new) == (True, 0), again
        print(f"incremental re-run (nothing new, 304 on page 1): {time.perf_counter() - started:.3f} s")
    finally:
        parent.send("stop")
        server.join(timeout=10)


def _upserts() -> None:
    with transaction() as session:
        source_id = ensure_source(session, "bench-upsert", SourceKind.IMPORT).id
    assert source_id is not None
    body = "公司拖欠工资三个月，现在要离职，能申请劳动仲裁要求补发工资和经济补偿吗？需要准备哪些证据"

    def batch(suffix: str) -> list[NewPost]:
        return [
            NewPost.build(external_id=str(i), title=f"帖子 {i}", body_text=f"{body} #{i}{suffix}")
            for i in range(UPSERT_POSTS)
        ]

    original = batch("")
    for label, posts in (("new", original), ("unchanged", original), ("edited", batch(" (已编辑)"))):
        started = time.perf_counter()
        with transaction() as session:
            result = upsert_posts(session, source_id, posts)
        elapsed = time.perf_counter() - started
        print(
            f"upsert {len(posts):,} posts, {label:9}: {elapsed:.2f} s = {len(posts) / elapsed:,.0f} posts/s "
            f"({len(result.new_ids)} new, {len(result.edited_ids)} edited, {result.unchanged} unchanged)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="lawscreen-bench-"))
    try:
        os.environ["LAWSCREEN_DATA_DIR"] = str(workdir / "data")
        os.environ["LAWSCREEN_DATABASE_URL"] = embedded.ensure_running(workdir / "data")
        get_settings.cache_clear()
        reset_engine()
        migrate.upgrade()
        with transaction() as session:
            postgres = session.execute(text("SHOW server_version")).scalar_one()
        print(f"machine: {_machine()}, PostgreSQL {postgres} (embedded, unix socket)")
        _end_to_end(workdir, args.posts, args.page_size)
        _upserts()
    finally:
        reset_engine()
        embedded.stop(workdir / "data")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
