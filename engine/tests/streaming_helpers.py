"""What the streaming tests share: a tiny PNG image folder, its shards, a real S3 API (moto's server) on
127.0.0.1 with credentials checked, and a callback that records the sample ids each rank trains on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lightning.pytorch import Callback, LightningModule, Trainer
from PIL import Image

from tests.launchers import free_port

SHARD_ARGS = ["--shard-bytes", "1KB"]  # about 6 images per shard: many shards from a tiny set


def digits_folder(root: Path, train: int = 128, val: int = 32, test: int = 40, size: int = 16) -> Path:
    """Real scikit-learn digits as `size` px PNGs in `root/train|val|test/<digit>/` (val/ only if `val`)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(train + val + test):
        split = "train" if i < train else "val" if i < train + val else "test"
        path = root / split / str(digits.target[i]) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST).save(path)
    return root


def write_shards(data: Path, out: str, *extra: str) -> None:
    from trainforge.tools.shards import main

    assert main([str(data), out, *SHARD_ARGS, *extra]) == 0


class S3Server:
    """moto's S3 in server mode: a real HTTP S3 API; after `lock()`, only `key`/`secret` are accepted."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.key = self.secret = ""

    def client(self, key: str = "testing", secret: str = "testing") -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
        )

    def lock(self, bucket: str) -> None:
        """Create `bucket` and a user with full access, then turn on moto's credential checks."""
        import boto3

        self.client().create_bucket(Bucket=bucket)
        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        iam.create_user(UserName="trainer")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="trainer", PolicyName="all", PolicyDocument=json.dumps(policy))
        created = iam.create_access_key(UserName="trainer")["AccessKey"]
        self.key, self.secret = created["AccessKeyId"], created["SecretAccessKey"]
        # What moto's /moto-api/reset-auth does; the server runs in this process, so set it directly.
        from moto import settings
        from moto.core.authorization import ActionAuthenticatorMixin

        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.lock("data")
    try:
        yield server
    finally:
        server.stop()


class SampleIds(Callback):
    """Each rank appends one JSON line per training batch to `<run>/ids-rank<R>.jsonl`: epoch, batch index
    and the ids of its samples (batch[2]), flushed at once so a killed run leaves what it trained on."""

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        line = {"epoch": trainer.current_epoch, "batch": batch_idx, "ids": batch[2].tolist()}
        with Path(trainer.default_root_dir, f"ids-rank{trainer.global_rank}.jsonl").open("a") as f:
            f.write(json.dumps(line) + "\n")


def read_ids(run: Path, rank: int = 0) -> list[dict[str, Any]]:
    path = run / f"ids-rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
