"""One split of a sharded dataset as LitData streams it, and the loader that resumes it exactly.

`ShardDataset` decodes the stored image bytes, applies the split's transform and yields
`(input, target, sample id)`; the model reads `batch[0]` and `batch[1]`, tests read the ids. Each shard
(LitData chunk) is checked against the manifest's sha256 the first time a process reads from it (before
the read when it is already on disk), and again when LitData fails on it, so a corrupt or truncated shard
stops the run with its name instead of training on garbage.

`ExactStreamingLoader` fixes what LitData's `StreamingDataLoader.state_dict` gets wrong under
Lightning: it counts the batches it has *yielded*, and Lightning's fetcher holds one batch ahead (and the
workers more), so a checkpoint taken after batch k recorded k+1 and the resumed run skipped a batch. Here
the state is rebuilt from the batches the loop has *consumed* (`consumed`, set by
`ResumableLoaderCallback`, data/resumable.py), and an epoch that ended resumes at the next one. The
restore itself is LitData's.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from litdata import StreamingDataLoader, StreamingDataset
from litdata.streaming.sampler import ChunkedIndex
from PIL import Image

from trainforge.data.shard_store import ShardStore, sha256_file
from trainforge.errors import TemplateError

WORKER_ERROR = "trainforge.errors.TemplateError: "


class _SmallCacheNote(logging.Filter):
    """LitData warns about any cache bound under 25 GB; here a small bound is the user's choice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "max_cache_size" not in record.getMessage()


logging.getLogger("litdata.streaming.dataset").addFilter(_SmallCacheNote())


def _allow_plain_http(store: ShardStore) -> None:
    """LitData fetches shards with obstore, which refuses `http://` endpoints (MinIO, moto, a lab's Ceph)
    unless told; its client options are one module-level dict (a private member, docs/engine.md)."""
    endpoint = store.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or ""
    if store.remote and endpoint.startswith("http://"):
        from litdata.streaming import downloader

        downloader._OBSTORE_CLIENT_OPTIONS["allow_http"] = True


class ShardDataset(StreamingDataset):
    """`(input, target, id)` samples of one split under `store`; `shards`: file name -> sha256."""

    def __init__(
        self,
        store: ShardStore,
        split: str,
        shards: dict[str, str],
        cache_dir: str | None,
        max_cache_size: str | None,
        shuffle: bool,
        seed: int,
        drop_last: bool,
    ) -> None:
        self.store, self.split, self.shards = store, split, shards
        self.sample_transform: Callable | None = None
        self._verified: set[int] = set()
        _allow_plain_http(store)
        source = store.url(split) if store.remote else str(Path(store.uri, split).resolve())
        super().__init__(
            source,
            cache_dir=cache_dir,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            max_cache_size=max_cache_size,
            storage_options=store.storage_options() if store.remote else None,
            session_options=store.session_options() if store.remote else None,
        )

    def with_transform(self, transform: Callable | None) -> ShardDataset:
        self.sample_transform = transform
        return self

    def _shard_name(self, chunk_index: int) -> str:
        assert self.cache is not None
        return self.cache._reader.config._chunks[chunk_index]["filename"]

    def _check_shard(self, chunk_index: int, cause: BaseException | None = None) -> None:
        """Compare the local copy of a shard with the manifest; raise naming it when they differ."""
        assert self.cache is not None
        name = self._shard_name(chunk_index)
        path = Path(self.cache._reader.config[ChunkedIndex(0, chunk_index)][0])
        expected = self.shards.get(name)
        where = self.store.url(f"{self.split}/{name}")
        if expected is None:
            raise TemplateError(
                f"shard {where} is not in {self.store.url('manifest.json')}; write the shards again"
            )
        if not path.is_file() and self.store.remote:
            why = str(cause).splitlines()[0] if cause is not None else "not in the cache"
            raise TemplateError(f"shard {where} could not be fetched from {self.store.endpoint}: {why}")
        if not path.is_file():
            raise TemplateError(f"shard {where} is missing; write the shards again with `make shards`")
        if sha256_file(path) != expected:
            raise TemplateError(
                f"shard {where} is corrupt or truncated (its sha256 differs from the manifest); write the shards "
                "again with `make shards`"
            )
        self._verified.add(chunk_index)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _allow_plain_http(self.store)  # loader workers started with spawn import LitData afresh

    def _local_copy(self, chunk_index: int) -> Path | None:
        if self.cache is None:
            return None
        path = Path(self.cache._reader.config[ChunkedIndex(0, chunk_index)][0])
        return path if path.is_file() else None

    def __getitem__(self, index: Any) -> Any:
        chunk = index.chunk_index if isinstance(index, ChunkedIndex) else None
        unchecked = chunk is not None and chunk not in self._verified
        if unchecked and self._local_copy(chunk) is not None:
            self._check_shard(chunk)  # before LitData reads it (prefetched, or a local shard)
        try:
            item = super().__getitem__(index)
        except TemplateError:
            raise
        except Exception as err:  # LitData failed on a shard: name it, whatever the cause
            if chunk is not None:
                self._check_shard(chunk, err)
                where = self.store.url(f"{self.split}/{self._shard_name(chunk)}")
                raise TemplateError(f"cannot read shard {where}: {str(err).splitlines()[0]}") from err
            raise
        if unchecked and chunk not in self._verified and (self._local_copy(chunk) or not self.store.remote):
            self._check_shard(chunk)
        # Otherwise LitData fetched the shard and evicted it within this read (a worker's last shard of the
        # epoch under a small cache): it is checked the next time it is read.
        try:
            with Image.open(io.BytesIO(bytes(item["image"]))) as image:
                image = image.convert("RGB")
        except (OSError, ValueError) as err:
            name = self._shard_name(chunk) if chunk is not None else "?"
            raise TemplateError(
                f"sample {item['id']} of shard {self.store.url(f'{self.split}/{name}')} is not a readable image ({err})"
            ) from err
        x = self.sample_transform(image) if self.sample_transform is not None else image
        return x, item["label"], item["id"]


def _one_line(error: TemplateError) -> TemplateError:
    """A TemplateError from a loader worker arrives with the worker's traceback in its message: keep the
    message the worker raised."""
    text = str(error)
    if WORKER_ERROR not in text:
        return error
    return TemplateError(text.rsplit(WORKER_ERROR, 1)[1].strip().splitlines()[0])


class ExactStreamingLoader(StreamingDataLoader):
    """A StreamingDataLoader whose `state_dict` counts the batches the training loop has consumed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consumed: int | None = None  # batches of this epoch the loop has finished; None: none started
        self.restore_pending = False

    def __iter__(self) -> Iterator[Any]:
        if not self.restore_pending:
            # LitData clears `restore` only when its generator runs to the end; Lightning stops at the epoch's
            # length without exhausting it, so after a resume every later epoch replayed the restored
            # position and yielded nothing. Only a state loaded since the last epoch began may restore.
            self.restore = False
        self.restore_pending = False
        self.consumed = 0
        try:
            yield from super().__iter__()
        except TemplateError as err:
            raise _one_line(err) from None

    def state_dict(self) -> dict[str, Any]:
        yielded, worker = self._num_samples_yielded_streaming, self._latest_worker_idx
        if self.consumed is None:
            return super().state_dict()
        workers = max(1, self.num_workers)
        # Batches come from the workers in turn, so the worker of the last consumed batch is known.
        self._num_samples_yielded_streaming = self.consumed * int(self.batch_size or 1)
        self._latest_worker_idx = (self.consumed - 1) % workers if self.consumed else workers - 1
        try:
            state = super().state_dict()
        finally:
            self._num_samples_yielded_streaming, self._latest_worker_idx = yielded, worker
        state["dataset"] = dict(state["dataset"])
        return state

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        super().load_state_dict(obj)
        self.restore_pending = True
