"""Streaming shards, fast tier: the shards tool, exactly-once reading across ranks and workers, exact
mid-epoch resume of the loader, and one-line errors for bad shards, endpoints and credentials."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from litdata.utilities.env import _DistributedEnv

from tests.streaming_helpers import digits_folder, write_shards
from trainforge.data.shard_store import sha256_file
from trainforge.data.streaming import StreamingDataModule
from trainforge.errors import TemplateError

pytestmark = pytest.mark.timeout(300)

TRAIN = 128  # 2 ranks x 2 workers x 4 batches of 8: nothing is cut to even the ranks out


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINFORGE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("streaming")
    write_shards(digits_folder(root / "digits"), str(root / "shards"))
    return root / "shards"


def module(uri: Path | str, workers: int = 0, **kwargs) -> StreamingDataModule:
    dm = StreamingDataModule(uri=str(uri), image_size=16, batch_size=8, num_workers=workers, **kwargs)
    dm.setup()
    return dm


def rank_loader(dm: StreamingDataModule, rank: int, world: int):
    """The training loader rank `rank` of `world` builds (LitData reads the rank from its env object)."""
    dataset = dm.view("train")
    dataset.distributed_env = _DistributedEnv(world, rank, 1)
    return dm._loader(dataset, "train", shuffle=True)


def test_shards_keep_the_folder_splits_classes_and_checksums(shards: Path) -> None:
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["class_names"] == [str(d) for d in range(10)]
    assert {k: v["samples"] for k, v in manifest["splits"].items()} == {"train": TRAIN, "val": 32, "test": 40}
    for split, entry in manifest["splits"].items():
        files = sorted(p.name for p in (shards / split).glob("*.bin"))
        assert files == sorted(entry["shards"]) and len(files) > 3  # several shards per split
        for name, meta in entry["shards"].items():
            assert sha256_file(shards / split / name) == meta["sha256"]
    dm = module(shards)
    assert dm.class_names == manifest["class_names"] and dm.summary_fields()["evaluated_on"] == "test"
    x, y, sample = next(iter(dm.view("test")))
    assert tuple(x.shape) == (3, 16, 16) and 0 <= y < 10 and 0 <= sample < 40
    # Nothing written is overwritten: a second copy into the same folder is refused.
    with pytest.raises(TemplateError, match="exists and is not empty"):
        write_shards(shards.parent / "digits", str(shards))


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("world", [1, 2])
def test_every_sample_once_per_epoch_across_ranks(shards: Path, world: int, workers: int) -> None:
    dm = module(shards, workers)
    for epoch in range(2):
        per_rank = []
        for rank in range(world):
            loader = rank_loader(dm, rank, world)
            loader.current_epoch = epoch
            per_rank.append([batch[2].tolist() for batch in loader])
        ids = sorted(i for batches in per_rank for batch in batches for i in batch)
        assert ids == list(range(TRAIN))  # every sample once, none twice, none left out
        assert len({len(batches) for batches in per_rank}) == 1  # equal batch counts: no rank waits
    assert per_rank[0][0] != sorted(per_rank[0][0])  # shuffled


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_sees_exactly_the_unseen_samples(shards: Path, workers: int) -> None:
    """Lightning holds one batch ahead of the step it trains: the state must count consumed batches."""
    reference = [batch[2].tolist() for batch in module(shards, workers).train_dataloader()]
    loader = module(shards, workers).train_dataloader()
    batches, seen = iter(loader), []
    current = next(batches)
    for step in range(5):
        ahead = next(batches)  # what Lightning's fetcher does before running the step on `current`
        seen.append(current[2].tolist())
        loader.consumed = step + 1  # what ResumableLoaderCallback tells it after the step
        current = ahead
    state = loader.state_dict()
    del batches, loader
    resumed = module(shards, workers).train_dataloader()
    resumed.load_state_dict(state)
    assert resumed.restore_pending
    rest = [batch[2].tolist() for batch in resumed]
    assert seen + rest == reference  # the same epoch, in the same order, each sample once


def test_corrupt_shard_stops_with_its_name(shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    victim = sorted((copy / "train").glob("*.bin"))[1]
    data = bytearray(victim.read_bytes())
    data[-20:] = bytes(20)  # same size, different bytes: only the checksum can tell
    victim.write_bytes(bytes(data))
    for workers in (0, 2):
        with pytest.raises(TemplateError) as error:
            for _ in module(copy, workers).train_dataloader():
                pass
        message = str(error.value)
        assert victim.name in message and "corrupt" in message and "\n" not in message


def test_truncated_and_missing_shards_are_named_before_training(shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    victim = sorted((copy / "val").glob("*.bin"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(TemplateError, match=f"shard .*val/{victim.name} has 100 bytes"):
        module(copy)
    victim.unlink()
    with pytest.raises(TemplateError, match=f"shard .*val/{victim.name} is missing"):
        module(copy)
    with pytest.raises(TemplateError, match="manifest.json not found"):
        module(tmp_path / "nowhere")


def test_cli_refuses_missing_shards_in_one_line(shards: Path, tmp_path: Path, refused) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    victim = sorted((copy / "train").glob("*.bin"))[2]
    victim.unlink()
    code, err = refused("fit", "--experiment", "streaming", f"--data.uri={copy}", "--data.num_workers=0")
    assert code == 2
    assert err.splitlines()[0] == (
        f"error: shard {copy}/train/{victim.name} is missing; write the shards again with `make shards`"
    )


def test_shards_from_a_csv_list(shards: Path, tmp_path: Path) -> None:
    digits = shards.parent / "digits"
    rows = [f"{p.relative_to(digits)},{p.parent.name}" for p in sorted((digits / "train").rglob("*.png"))]
    (digits / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    write_shards(digits / "train.csv", str(tmp_path / "csv-shards"))
    manifest = json.loads((tmp_path / "csv-shards" / "manifest.json").read_text())
    counts = {k: v["samples"] for k, v in manifest["splits"].items()}
    assert sum(counts.values()) == TRAIN and set(counts) == {"train", "val", "test"}  # held-out parts carved
    assert manifest["class_names"] == [str(d) for d in range(10)]
    assert len(module(tmp_path / "csv-shards").view("test").shards) >= 1
