"""Benchmark of the models library's downloader against aria2c (issue #14, L2).

A generated file (512 MiB by default, made on the fly by tests/range_server.py,
never stored) is served from 127.0.0.1 with every connection paced to 10 MB/s,
as a model host's per-connection limit would. It is downloaded by ComfyWeb's
downloader — the worker job's own code, `library.downloader.run`, on a fresh
SQLite database with an embedded Redis — with 1, 4 and 8 connections, and by
`aria2c -x8 -s8` from the same server. Each result is checked against the
file's sha256. Our times include what a download in ComfyWeb always does and
aria2c does not: the progress writes (flushed to disk, twice a second), the
sha256 verification and the rename into the library.

Target: at 8 connections, at least 0.95x aria2c's throughput.

Rerun: .venv/bin/python bench/bench_downloads.py [--size-mib 512] [--rate-mb 10]
(aria2c comes from Debian's `aria2` package: apt-get install aria2)
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import setup_django  # noqa: E402

MB = 1_000_000
MiB = 1024 * 1024


@dataclass
class Result:
    name: str
    seconds: float
    size: int
    served: int
    ok: bool

    @property
    def mb_per_s(self) -> float:
        return self.size / MB / self.seconds


def file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


def ours(server, connections: int, expected: str) -> Result:
    from library import downloader
    from library.models import Download
    from library.requests import request_download

    name = f"bench-{connections}.safetensors"
    download = request_download(server.url(name), "checkpoints", connections=connections)
    served = server.bytes_served
    started = time.perf_counter()
    outcome = downloader.run(download.pk)
    seconds = time.perf_counter() - started
    download = Download.objects.get(pk=download.pk)
    ok = outcome == "completed" and download.sha256 == expected
    download.final_path.unlink(missing_ok=True)
    download.delete()
    return Result(
        f"comfyweb, {connections} connection(s)",
        seconds,
        server.content.size,
        server.bytes_served - served,
        ok,
    )


def aria2c(server, directory: pathlib.Path, expected: str, binary: str) -> Result:
    target = directory / "aria2c.bin"
    served = server.bytes_served
    started = time.perf_counter()
    subprocess.run(
        [
            binary,
            "-x8",
            "-s8",
            "--allow-overwrite=true",
            "--auto-file-renaming=false",
            "--quiet=true",
            "-d",
            str(directory),
            "-o",
            target.name,
            server.url("aria2c.bin"),
        ],
        check=True,
    )
    seconds = time.perf_counter() - started
    ok = file_sha256(target) == expected
    target.unlink()
    return Result("aria2c -x8 -s8", seconds, server.content.size, server.bytes_served - served, ok)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rate-mb", type=float, default=10.0, help="MB/s per connection")
    parser.add_argument("--connections", default="1,4,8")
    args = parser.parse_args()
    binary = shutil.which("aria2c")
    if binary is None:
        print("aria2c not found: apt-get install aria2", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="bench-downloads-") as temp:
        directory = pathlib.Path(temp)
        redis = setup_django(directory / "data")
        from django.conf import settings

        from tests.range_server import Content, RangeServer

        settings.COMFYWEB_MODELS_DIR = directory / "models"
        for name in ("library", "httpx"):  # a line per range otherwise
            logging.getLogger(name).setLevel(logging.WARNING)
        import django_q.tasks

        django_q.tasks.async_task = lambda *a, **k: None  # the bench runs the job itself
        content = Content(args.size_mib * MiB)
        expected = content.sha256()
        results: list[Result] = []
        try:
            with RangeServer(content, rate=args.rate_mb * MB) as server:
                results.append(aria2c(server, directory, expected, binary))
                for connections in (int(n) for n in args.connections.split(",")):
                    results.append(ours(server, connections, expected))
        finally:
            redis.terminate()
            redis.wait(timeout=10)

    reference = results[0]
    print(
        f"\n{args.size_mib} MiB from 127.0.0.1, {args.rate_mb:g} MB/s per connection "
        f"(ceiling at 8 connections: {8 * args.rate_mb:g} MB/s)\n"
    )
    print(f"| {'client':<28} | {'seconds':>7} | {'MB/s':>6} | {'vs aria2c':>9} | fetched | ok |")
    print(f"|{'-' * 30}|{'-' * 9}|{'-' * 8}|{'-' * 11}|---------|----|")
    for result in results:
        ratio = result.mb_per_s / reference.mb_per_s
        print(
            f"| {result.name:<28} | {result.seconds:7.2f} | {result.mb_per_s:6.1f} | "
            f"{ratio:8.2f}x | {result.served / result.size:6.2f}x | {'ok' if result.ok else 'NO'} |"
        )
    print("\nRerun: .venv/bin/python bench/bench_downloads.py " + " ".join(sys.argv[1:]))
    eight = next((r for r in results if r.name.startswith("comfyweb, 8 ")), None)
    if eight is not None:
        ratio = eight.mb_per_s / reference.mb_per_s
        print(f"8 connections: {ratio:.2f}x aria2c (target >= 0.95x)")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
