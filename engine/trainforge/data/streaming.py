"""Images streamed from shards (`make shards`) in a local folder or on any S3-compatible endpoint.

One line of config switches a run from the image folder to its shards:
`data: {class_path: trainforge.data.streaming.StreamingDataModule, init_args: {uri: s3://bucket/digits}}`.
The transforms, class names, task, splits and their roles are those of the folder the shards were written
from (the shards tool records them), so metrics and reports are comparable.

Reading is LitData's (`StreamingDataset`, `StreamingDataLoader`): each rank and worker streams a disjoint
set of shards, every sample once per epoch; under DDP the training split is cut to an equal number of
batches per rank, so no rank waits on another (the few samples past the last full batch of the world
are left out of that epoch, in a different place each epoch when shuffled). Validation and test keep every
sample once. Before LitData starts, the manifest is read and every shard's size checked with one listing
(a missing or truncated shard, a wrong endpoint or refused credentials stop the run in one line, naming
it); each shard's sha256 is checked when first read. Mid-epoch resume: data/shard_dataset.py.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import torch
from litdata.utilities.env import _DistributedEnv
from torch.utils.data import DataLoader, Dataset

from trainforge.data.datamodule import Splits
from trainforge.data.images import ImageFilesDataModule
from trainforge.data.shard_dataset import ExactStreamingLoader, ShardDataset
from trainforge.data.shard_store import ShardStore
from trainforge.errors import ConfigError, TemplateError
from trainforge.tasks import Multiclass, Task


def default_cache_dir(store: ShardStore) -> str:
    """One cache folder per dataset, the same on every run, so a resumed run finds what it downloaded."""
    base = Path(os.environ.get("TRAINFORGE_CACHE", Path.home() / ".cache" / "trainforge")) / "shards"
    key = hashlib.sha256(f"{store.endpoint}|{store.uri}".encode()).hexdigest()[:16]
    return str(base / key)


class StreamingDataModule(ImageFilesDataModule):
    """Shards written by `make shards`, streamed with LitData, with the image folder's transforms.

    Args:
        uri: The shards' root: a local folder or `s3://bucket/prefix` (the OUT of `make shards`).
        endpoint_url: S3-compatible endpoint (MinIO, Ceph, R2, moto...); default AWS_ENDPOINT_URL, else AWS.
            Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or `profile`.
        profile: AWS profile name (~/.aws/config) to read credentials from.
        cache_dir: Where downloaded shards are kept (remote uri only); default ~/.cache/trainforge/shards/<id>
            (TRAINFORGE_CACHE moves it).
        cache_limit: The most disk the downloaded shards may take, e.g. "2GB": LitData deletes shards it has
            read past this bound. Local shards are read in place and never copied.
        timeout_s: Seconds one request to the endpoint may take before the run stops with an error.
        Other arguments: ImageFilesDataModule's (size, augmentation, loader); `cache_images`,
            `skip_bad_images`, `val_fraction` and `split_seed` do not apply (the splits are in the shards).
    """

    def __init__(
        self,
        uri: str = "shards",
        endpoint_url: str | None = None,
        profile: str | None = None,
        cache_dir: str | None = None,
        cache_limit: str = "2GB",
        timeout_s: float = 30.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("cache_images", False)
        super().__init__(**kwargs)
        if self.sampler is not None:
            raise ConfigError(
                f"data.sampler={self.sampler}: a streaming dataset is read shard by shard and cannot be resampled; "
                "leave data.sampler null (or balance the classes when writing the shards)"
            )
        self.store = ShardStore(uri, endpoint_url, profile, timeout_s)
        self.cache_dir = cache_dir
        self.cache_limit = cache_limit
        self._manifest: dict[str, Any] | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = self.store.manifest()
            self.check_shards(self._manifest)
        return self._manifest

    def check_shards(self, manifest: dict[str, Any]) -> None:
        """Every shard of every split present with the size the manifest records (one listing per split)."""
        for split, entry in manifest["splits"].items():
            found = self.store.sizes(split)
            for name, meta in entry["shards"].items():
                where = self.store.url(f"{split}/{name}")
                if name not in found:
                    raise TemplateError(
                        f"shard {where} is missing; write the shards again with `make shards`"
                    )
                if found[name] != meta["bytes"]:
                    raise TemplateError(
                        f"shard {where} has {found[name]} bytes, the manifest says {meta['bytes']} (truncated or "
                        "replaced); write the shards again with `make shards`"
                    )

    def build_task(self) -> Task:
        return Multiclass(list(self.manifest["class_names"]))

    def build_datasets(self) -> Splits:
        splits = self.manifest["splits"]
        self.roles = dict(self.manifest.get("roles", {}))
        return Splits(**{split: self._shards(split) for split in ("train", "val", "test") if split in splits})

    def _shards(self, split: str) -> ShardDataset:
        shards = {n: m["sha256"] for n, m in self.manifest["splits"][split]["shards"].items()}
        cache = self.cache_dir or default_cache_dir(self.store)
        train = split == "train"
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return ShardDataset(self.store, split, shards, cache, self.cache_limit, train, seed, drop_last=train)

    def _view(self, split: str, stage: Literal["train", "eval"]) -> Dataset | None:
        # LitData datasets are iterable: the transform goes inside, not in a map-style wrapper.
        self.setup()
        assert self.raw is not None
        dataset = getattr(self.raw, split)
        if dataset is None:
            return None
        if split == "train" and stage == "eval":  # probes and predictions on train: a copy of its own
            dataset = self._shards(split)
        return dataset.with_transform(self.build_transforms(stage))

    def _loader(self, dataset: Dataset | None, split: str, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise ValueError(
                f"{type(self).__name__} has no '{split}' split in {self.store.url('manifest.json')}"
            )
        plan = self.batch_plan()  # data.batch_size is the global batch (data/batching.py), as in the base
        if split == "train" and self.trainer is not None:
            self.trainer.accumulate_grad_batches = plan.accumulation
        trainer = self.trainer
        if trainer is not None and isinstance(dataset, ShardDataset):
            # The ranks as the trainer knows them: LitData's own detection depends on when the dataset was
            # built (before or after the process group), and counts nodes from GPUs, so not on CPU.
            dataset.distributed_env = _DistributedEnv(
                trainer.world_size, trainer.global_rank, trainer.num_nodes
            )
        workers = self._workers()
        return ExactStreamingLoader(
            dataset,  # type: ignore[arg-type]
            batch_size=plan.per_device,
            num_workers=workers,
            pin_memory=self.pin_memory if self.pin_memory is not None else torch.cuda.is_available(),
            persistent_workers=workers > 0 and self.persistent_workers,
            timeout=max(60.0, 4 * self.store.timeout_s) if workers > 0 else 0,
        )

    def summary_fields(self) -> dict[str, Any]:
        return {**super().summary_fields(), "shards": self.store.url()}
