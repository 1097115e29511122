"""Shards on S3 without the internet: moto's S3 server on 127.0.0.1 (credentials checked), written by the
shards tool and read back in training through the CLI; the cache bound; wrong endpoint, bad credentials."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST, run_cli
from tests.streaming_helpers import S3Server, digits_folder, free_port, read_ids, s3  # noqa: F401
from trainforge.data.streaming import StreamingDataModule
from trainforge.errors import TemplateError

pytestmark = pytest.mark.timeout(600)
URI = "s3://data/digits"


@pytest.fixture(scope="module")
def on_s3(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:  # noqa: F811
    """The digits shards written to S3 by the tool through the CLI, with the user's credentials in the env."""
    root = tmp_path_factory.mktemp("s3")
    saved = {k: os.environ.get(k) for k in s3.env()}
    os.environ.update(s3.env())
    try:
        out = run_cli(
            "shards", str(digits_folder(root / "digits")), URI, "--endpoint-url", s3.endpoint,
            "--shard-bytes", "1KB", cwd=root,
        )  # fmt: skip
        assert f"shards: {URI}" in out.stdout
        yield s3
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_training_streams_from_s3_through_the_cli(on_s3: S3Server, tmp_path: Path) -> None:
    manifest = json.loads(
        on_s3.client(on_s3.key, on_s3.secret)
        .get_object(Bucket="data", Key="digits/manifest.json")["Body"]
        .read()
    )
    assert manifest["splits"]["train"]["samples"] == 128
    cache = tmp_path / "cache"
    run_cli(
        "fit", "--experiment", "streaming", f"--data.uri={URI}", f"--data.endpoint_url={on_s3.endpoint}",
        f"--data.cache_dir={cache}", "--data.cache_limit=4KB", "--data.num_workers=1", "--data.batch_size=16",
        *FAST, "--trainer.limit_train_batches=8", "--trainer.max_epochs=1", "--wandb.enabled=false",
        "--run.name=s3", "--trainer.callbacks+=tests.streaming_helpers.SampleIds", cwd=tmp_path,
    )  # fmt: skip
    run = tmp_path / "runs" / "streaming" / "s3"
    seen = [i for line in read_ids(run) for i in line["ids"]]
    assert sorted(seen) == list(range(128))  # the whole training split, streamed from S3, once
    summary = json.loads((run / "summary.json").read_text())
    assert 0.0 <= summary["metrics"]["test/acc"] <= 1.0 and summary["shards"] == URI
    assert any(cache.rglob("index.json"))  # downloads went to the configured cache


def test_cache_stays_under_its_bound(on_s3: S3Server, tmp_path: Path) -> None:
    def size() -> int:
        return sum(p.stat().st_size for p in tmp_path.rglob("*.bin"))

    dm = StreamingDataModule(
        uri=URI, endpoint_url=on_s3.endpoint, cache_dir=str(tmp_path), cache_limit="3KB", image_size=16, batch_size=8,
        num_workers=0,
    )  # fmt: skip
    dm.setup()
    peak, seen = 0, 0
    for batch in dm.train_dataloader():
        peak, seen = max(peak, size()), seen + len(batch[2])
    shards = [m["bytes"] for m in dm.manifest["splits"]["train"]["shards"].values()]
    assert seen == 128 and sum(shards) > 5 * 3000  # the split is several times the bound
    # LitData evicts read shards to stay under the bound; one more shard may be landing meanwhile.
    assert 0 < peak <= 3000 + max(shards)


def test_wrong_endpoint_and_bad_credentials_are_one_line(on_s3: S3Server, refused, monkeypatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    code, err = refused("fit", "--experiment", "streaming", f"--data.uri={URI}", f"--data.endpoint_url={closed}",
                        "--data.timeout_s=3")  # fmt: skip
    assert code == 2 and err.startswith(
        f"error: cannot reach the S3 endpoint {closed} for {URI}/manifest.json"
    )
    assert len(err.strip().splitlines()) == 2  # the message and the --debug hint
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    code, err = refused(
        "fit", "--experiment", "streaming", f"--data.uri={URI}", f"--data.endpoint_url={on_s3.endpoint}"
    )
    assert code == 2
    assert err.startswith(
        f"error: the S3 endpoint {on_s3.endpoint} refused the credentials for {URI}/manifest.json"
    )
    with pytest.raises(TemplateError, match=f"the S3 endpoint {on_s3.endpoint} refused the credentials"):
        from trainforge.tools.shards import main

        main([str(Path(__file__)), "s3://data/other", "--endpoint-url", on_s3.endpoint])


def test_missing_manifest_names_the_object(on_s3: S3Server) -> None:
    dm = StreamingDataModule(uri="s3://data/nothing-here", endpoint_url=on_s3.endpoint)
    with pytest.raises(
        TemplateError, match="s3://data/nothing-here/manifest.json at http://127.0.0.1:.* not found"
    ):
        dm.setup()


def test_workers_sharing_a_shard_read_it_whole(on_s3: S3Server, tmp_path: Path) -> None:
    """Few shards for the workers: LitData splits a shard between two workers (with `batch_decode=0` such a
    shard read as empty records: a regression test)."""
    from tests.streaming_helpers import write_shards

    write_shards(digits_folder(tmp_path / "digits"), "s3://data/few",
                 "--endpoint-url", on_s3.endpoint, "--shard-bytes", "8KB")  # fmt: skip
    dm = StreamingDataModule(uri="s3://data/few", endpoint_url=on_s3.endpoint, cache_dir=str(tmp_path / "cache"),
                             image_size=16, batch_size=8, num_workers=2)  # fmt: skip
    dm.setup()
    assert len(dm.manifest["splits"]["train"]["shards"]) < 6
    ids = sorted(i for batch in dm.train_dataloader() for i in batch[2].tolist())
    assert ids == list(range(128))
