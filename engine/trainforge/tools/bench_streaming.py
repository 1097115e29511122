"""`make bench-streaming DATA=<image folder>`: images per second of the training loader, epoch by epoch.

Three readers of the same images with the same transforms, batch size and workers: the image-folder
DataModule with its decoded-image cache, the streaming DataModule on local shards, and on shards in a local
S3 API (moto's server on 127.0.0.1: the S3 protocol and LitData's download path, not a network's latency).
The loader alone is timed (no model), so the figures are the data side's ceiling. Memory: the peak resident
memory of the loader processes (main and workers; the folder cache lives there) and the peak disk use of the
streaming cache (what `data.cache_limit` bounds).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_rss() -> int:
    """This process and its children (loader workers), from /proc: psutil is not a dependency."""
    me, total = os.getpid(), _rss_bytes(os.getpid())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == me:
                    total += _rss_bytes(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return total


class Peak:
    """Polls memory and a cache folder's size in a thread while a loader runs."""

    def __init__(self, cache: Path | None) -> None:
        self.cache, self.rss, self.disk = cache, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.rss = max(self.rss, _tree_rss())
            if self.cache is not None and self.cache.exists():
                self.disk = max(
                    self.disk, sum(p.stat().st_size for p in self.cache.rglob("*.bin") if p.exists())
                )
            time.sleep(0.05)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def epochs_per_second(loader: Any, epochs: int) -> list[float]:
    rates = []
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for batch in loader:
            seen += len(batch[0])
        rates.append(seen / (time.perf_counter() - start))
    return rates


def measure(name: str, dm: Any, epochs: int, cache: Path | None) -> dict[str, Any]:
    dm.setup()
    with Peak(cache) as peak:
        rates = epochs_per_second(dm.train_dataloader(), epochs)
    row = {"reader": name, "epoch 1": rates[0], "later epochs": sum(rates[1:]) / max(1, len(rates) - 1)}
    row.update({"peak RSS MB": peak.rss / 2**20, "peak disk cache MB": peak.disk / 2**20})
    print(
        " | ".join(f"{k}: {v:.1f}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()),
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-streaming", description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="image folder (train/<class>/...)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cache-limit", default="2GB", help="data.cache_limit of the S3 reader")
    parser.add_argument(
        "--shard-bytes", default="4MB", help="shard size of the copies (make shards --shard-bytes)"
    )
    parser.add_argument("--only", nargs="*", default=["folder", "local", "s3"])
    args = parser.parse_args(argv)

    from trainforge.data.image_folder import ImageFolderDataModule
    from trainforge.data.streaming import StreamingDataModule
    from trainforge.tools.shards import main as shards

    common = {"image_size": args.image_size, "batch_size": args.batch_size, "num_workers": args.workers}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        root = Path(tmp)
        os.environ["TRAINFORGE_CACHE"] = str(root / "cache")
        if "folder" in args.only:
            rows.append(
                measure(
                    "image folder, decoded cache",
                    ImageFolderDataModule(args.data, **common),
                    args.epochs,
                    None,
                )
            )
        if "local" in args.only:
            shards([args.data, str(root / "shards"), "--shard-bytes", args.shard_bytes])
            rows.append(
                measure(
                    "shards, local", StreamingDataModule(str(root / "shards"), **common), args.epochs, None
                )
            )
        if "s3" in args.only:
            from moto.server import ThreadedMotoServer

            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server._server.server_address[:2]  # the port the OS gave
            endpoint = f"http://{host}:{port}"
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
            os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
            try:
                import boto3

                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
                shards(
                    [
                        args.data,
                        "s3://bench/data",
                        "--endpoint-url",
                        endpoint,
                        "--shard-bytes",
                        args.shard_bytes,
                    ]
                )
                cache = root / "s3-cache"
                dm = StreamingDataModule(
                    "s3://bench/data",
                    endpoint_url=endpoint,
                    cache_dir=str(cache),
                    cache_limit=args.cache_limit,
                    **common,
                )
                rows.append(measure("shards, S3 (moto, 127.0.0.1)", dm, args.epochs, cache))
            finally:
                server.stop()
    print(
        "\n| reader | epoch 1 (img/s) | later epochs (img/s) | peak RSS, loader processes (MB) | peak disk cache (MB) |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['reader']} | {row['epoch 1']:.0f} | {row['later epochs']:.0f} | {row['peak RSS MB']:.0f} "
            f"| {row['peak disk cache MB']:.1f} |"
        )
    return 0
