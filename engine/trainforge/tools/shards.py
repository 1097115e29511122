"""`make shards DATA=<image folder | csv> OUT=<folder | s3://bucket/prefix>`: a sharded copy for streaming.

The splits are exactly the ones the folder (or CSV) DataModule would train on with the same `split_seed`
and `val_fraction` (held-out parts carved the same way), so a streamed run and a folder run see the same
train, val and test images. Each split is written by LitData's `optimize` (images stored as their encoded
file bytes, the label and a sample id per record) into `<OUT>/<split>/`; then `manifest.json` records the
class names, the splits' roles and sizes, and the byte size and sha256 of every shard. The manifest is
written last: a folder without one is an unfinished copy. For `s3://` the shards are written locally
first (`--staging`, default a temporary folder), checked, then uploaded (manifest last).

    python -m template shards data/flowers s3://bucket/flowers --endpoint-url http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch.utils.data import Subset

from trainforge.data.shard_store import FORMAT, MANIFEST, ShardStore, sha256_file
from trainforge.errors import TemplateError


def _record(item: tuple[int, str, int]) -> dict[str, Any]:
    """One sample as stored: the encoded file as it is on disk (no re-encoding), its label and id."""
    index, path, label = item
    return {"id": index, "image": Path(path).read_bytes(), "label": label}


def source_splits(data: str, split_seed: int, val_fraction: float) -> tuple[Any, dict[str, list]]:
    """The DataModule the engine reads `data` with, and split -> [(path, target)] as it would train."""
    from trainforge.data.csv_list import CsvDataModule
    from trainforge.data.image_folder import ImageFolderDataModule

    common = {"split_seed": split_seed, "val_fraction": val_fraction, "cache_images": False}
    path = Path(data)
    if path.suffix.lower() in (".csv", ".txt"):
        module: Any = CsvDataModule(train_list=data, **common)
    elif path.is_dir():
        module = ImageFolderDataModule(root=data, **common)
    else:
        raise TemplateError(
            f"DATA={data}: not an image folder (train/<class>/...) or a .csv list; check the path"
        )
    try:
        splits = module.build_datasets()
    except (OSError, ValueError) as err:
        raise TemplateError(f"DATA={data}: {err}") from err
    pairs: dict[str, list] = {}
    for name in ("train", "val", "test"):
        dataset = getattr(splits, name)
        if dataset is None:
            continue
        whole = dataset.dataset if isinstance(dataset, Subset) else dataset
        indices = dataset.indices if isinstance(dataset, Subset) else range(len(whole))
        pairs[name] = [(str(whole.paths[i]), int(whole.targets[i])) for i in indices]
    return module, pairs


def write_split(
    pairs: list[tuple[str, int]], out: Path, shard_bytes: str, workers: int, seed: int = 0
) -> dict[str, Any]:
    """LitData `optimize` into `out`, then the size and sha256 of every file it wrote."""
    import litdata

    # Shuffled once (seeded): LitData shuffles shards and then samples within a few shards, so shards
    # written class by class would give one-class batches.
    order = random.Random(seed).sample(range(len(pairs)), len(pairs))
    items = [(i, *pairs[j]) for i, j in enumerate(order)]
    litdata.optimize(
        fn=_record,
        inputs=items,
        output_dir=str(out),
        chunk_bytes=shard_bytes,
        num_workers=workers,
        mode="overwrite",
        start_method="fork",  # spawn re-imports torch in every writer (about 7 s per split)
    )
    shards = {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(out.iterdir())
        if p.suffix == ".bin"
    }
    return {"samples": len(items), "shards": shards}


def upload(local: Path, store: ShardStore) -> None:
    from tqdm import tqdm

    files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != MANIFEST)
    for path in tqdm(files, desc=f"upload to {store.url()}", unit="file"):
        store.upload(path, path.relative_to(local).as_posix())
    store.upload(local / MANIFEST, MANIFEST)


def write_shards(args: argparse.Namespace) -> Path | str:
    store = ShardStore(args.out, args.endpoint_url, args.profile)
    if store.remote:
        store.check_writable()
        if not args.overwrite and MANIFEST in store.sizes(""):
            raise TemplateError(f"{store.url(MANIFEST)} exists: pass --overwrite to replace those shards")
        staging = Path(args.staging or tempfile.mkdtemp(prefix="shards-"))
    else:
        staging = Path(args.out)
        if staging.exists() and any(staging.iterdir()) and not args.overwrite:
            raise TemplateError(
                f"OUT={args.out} exists and is not empty: choose another folder or pass --overwrite"
            )
    module, pairs = source_splits(args.data, args.split_seed, args.val_fraction)
    staging.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "source": str(Path(args.data).resolve()),
        "task": "multiclass",
        "class_names": list(module.class_names),
        "roles": dict(module.roles),
        "split_seed": args.split_seed,
        "val_fraction": args.val_fraction,
        "splits": {},
    }
    for split, split_pairs in pairs.items():
        print(f"{split}: {len(split_pairs)} images", flush=True)
        manifest["splits"][split] = write_split(
            split_pairs, staging / split, args.shard_bytes, args.workers, args.split_seed
        )
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
    if store.remote:
        upload(staging, store)
        if not args.staging:
            shutil.rmtree(staging, ignore_errors=True)
        return store.url()
    return staging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shards", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data", help="image folder (train/<class>/..., optional val/ test/) or a path,label CSV"
    )
    parser.add_argument("out", help="output folder or s3://bucket/prefix")
    parser.add_argument(
        "--endpoint-url", default=None, help="S3-compatible endpoint (default AWS_ENDPOINT_URL)"
    )
    parser.add_argument("--profile", default=None, help="AWS profile for the credentials")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of held-out parts (data.split_seed)")
    parser.add_argument("--val-fraction", type=float, default=0.15, help="held-out share (data.val_fraction)")
    parser.add_argument("--shard-bytes", default="64MB", help="largest shard size (LitData chunk_bytes)")
    parser.add_argument("--workers", type=int, default=1, help="processes writing shards")
    parser.add_argument("--staging", default=None, help="local folder the s3:// copy is written in first")
    parser.add_argument("--overwrite", action="store_true", help="replace shards already at OUT")
    args = parser.parse_args(argv)
    where = write_shards(args)
    print(f"shards: {where}", flush=True)
    return 0
