"""What `make bench` times: a step timer callback for the template's fit, the hand-written loop it is
compared with, and the data loader alone. Timing windows: the same `steps` steps after `warmup` steps."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import lightning as L
import timm
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

AMP_DTYPES = {"32-true": None, "32": None, "16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


@dataclass
class Timing:
    seconds: float
    peak_rss_mb: float
    peak_cuda_mb: float | None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    except OSError:  # not Linux: ru_maxrss is the process's lifetime peak, the best left
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemory:
    """Peak resident memory of this process (sampled every 20 ms) and peak CUDA allocation while open."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_rss = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.peak_rss = _rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_rss = max(self.peak_rss, _rss_mb())

    def stop(self) -> tuple[float, float | None]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss = max(self.peak_rss, _rss_mb())
        cuda = torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None
        return self.peak_rss, cuda


class StepTimer(Callback):
    """Times training steps `warmup+1 .. warmup+steps` of a fit (fetch, step, callbacks and logging
    included) and writes the result to `path` as JSON. The clock stops from the start of validation to
    the start of the next training epoch or step: evaluation, epoch-end hooks and checkpoint saves are
    not steps, and the raw loop does none of them; a new epoch's first fetch is timed, as in the raw loop."""

    def __init__(self, path: str, warmup: int, steps: int) -> None:
        self.path = Path(path)
        self.warmup = warmup
        self.steps = steps
        self._done = 0
        self._start = 0.0
        self._paused_at: float | None = None
        self._memory: PeakMemory | None = None

    def _timing(self) -> bool:
        return self._memory is not None and self._done < self.warmup + self.steps

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._timing():
            _sync(pl_module.device)
            self._paused_at = time.perf_counter()

    def _resume(self) -> None:
        if self._paused_at is not None:
            self._start += time.perf_counter() - self._paused_at
            self._paused_at = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._resume()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._resume()  # after a validation inside the epoch (val_check_interval < 1)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._done += 1
        if self._done == self.warmup:
            _sync(pl_module.device)
            self._memory = PeakMemory(pl_module.device)
            self._memory.start()
            self._start = time.perf_counter()
        elif self._done == self.warmup + self.steps and self._memory is not None:
            _sync(pl_module.device)
            seconds = time.perf_counter() - self._start
            rss, cuda = self._memory.stop()
            self.path.write_text(json.dumps({"seconds": seconds, "peak_rss_mb": rss, "peak_cuda_mb": cuda}))


class EpochTimer(Callback):
    """Wall time of each training epoch, its validation and checkpointing included, and the time from the
    fit's start to the first epoch (head initialisation, loader start-up); rewritten to `path` as JSON
    after every epoch, so a stopped run still leaves what it timed."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.epoch_s: list[float] = []
        self.before_first_epoch_s: float | None = None
        self.images = {"train": 0, "val": 0}  # of the last epoch, so that images/s can be compared
        self._fit_start = 0.0
        self._epoch_start = 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self.images = {"train": 0, "val": 0}
        if self.before_first_epoch_s is None:
            self.before_first_epoch_s = self._epoch_start - self._fit_start

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        self.images["train"] += len(batch[1])

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        if not trainer.sanity_checking:
            self.images["val"] += len(batch[1])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_s.append(time.perf_counter() - self._epoch_start)  # Lightning validates before this hook
        if trainer.is_global_zero:
            record = {"epoch_s": self.epoch_s, "before_first_epoch_s": self.before_first_epoch_s}
            record |= {f"{k}_images_per_epoch": v for k, v in self.images.items()}
            self.path.write_text(json.dumps(record))


class ModelOptions(Callback):
    """The bench's channels_last and compile options applied to the template's model, as the raw loop
    applies them to its own (the template itself may grow its own flags for these)."""

    def __init__(self, channels_last: bool = False, compile: bool = False) -> None:
        self.channels_last = channels_last
        self.compile = compile

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.channels_last:
            pl_module.to(memory_format=torch.channels_last)
        if self.compile:
            pl_module.compile()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.channels_last and isinstance(batch, list) and batch[0].dim() == 4:
            batch[0] = batch[0].contiguous(memory_format=torch.channels_last)  # the list is the step's batch


def _epochs(loader: Any) -> Any:
    """The loader's batches, epoch after epoch: small real data sets span several epochs of a bench, so
    what lasts between epochs (persistent workers, the decoded-image cache) shows in the timing."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the train loader gave no batch: use more data or a smaller --batch-size")


def _timed_batches(loader: Any, device: torch.device, warmup: int, steps: int, step: Any) -> Timing:
    memory = PeakMemory(device)
    start = 0.0
    for i, (x, y) in enumerate(islice(_epochs(loader), warmup + steps), start=1):
        step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        if i == warmup:
            _sync(device)
            memory.start()
            start = time.perf_counter()
    _sync(device)
    seconds = time.perf_counter() - start
    rss, cuda = memory.stop()
    return Timing(seconds, rss, cuda)


def _device_transform(datamodule: Any) -> Any:
    """The template DataModule's training-batch device transform; identity for any other DataModule."""
    return getattr(datamodule, "device_transform", lambda x: x)


def raw_loop(
    datamodule: Any,
    model_name: str,
    precision: str,
    channels_last: bool,
    compile: bool,
    device: torch.device,
    warmup: int,
    steps: int,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
) -> Timing:
    """The minimal hand-written PyTorch loop: same timm model, data loader, optimizer, precision, memory format."""
    if precision not in AMP_DTYPES:
        raise ValueError(f"--precision: the raw loop knows {', '.join(AMP_DTYPES)}, not '{precision}'")
    dtype = AMP_DTYPES[precision]
    torch.manual_seed(0)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    model = timm.create_model(
        model_name, pretrained=False, num_classes=datamodule.num_classes, in_chans=datamodule.in_chans
    ).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if compile:
        model.compile()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    loss_fn = nn.CrossEntropyLoss()

    augment = _device_transform(datamodule)  # the same device augmentation as (A)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        x = augment(x).contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return _timed_batches(loader, device, warmup, steps, step)


def loader_only(datamodule: Any, device: torch.device, warmup: int, steps: int) -> Timing:
    """The data loader's own throughput, batches moved to the device (and augmented there, if the
    DataModule does), with no model."""
    datamodule.setup("fit")
    augment = _device_transform(datamodule)
    return _timed_batches(datamodule.train_dataloader(), device, warmup, steps, lambda x, y: augment(x))
