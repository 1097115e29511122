"""Where a sharded dataset lives: a local folder or `s3://bucket/prefix` on any S3-compatible endpoint.

The one place that talks to the store outside LitData: the shards tool writes through it, the streaming
DataModule reads the manifest and checks the shards through it before LitData starts. Credentials are
boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or `profile`, ~/.aws); the
endpoint is `endpoint_url`, else AWS_ENDPOINT_URL, else AWS. Every request has a timeout and few retries,
and every failure becomes one TemplateError that names the endpoint and the object: LitData's own client
retries up to 1,000 times, which looks like a hang to the user.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from trainforge.errors import TemplateError

MANIFEST = "manifest.json"
FORMAT = "trainforge-shards/1"
AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "403",
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ShardStore:
    """A dataset root. `rel` paths below are relative to it (`train/chunk-0-0.bin`, `manifest.json`)."""

    uri: str
    endpoint_url: str | None = None
    profile: str | None = None
    timeout_s: float = 30.0

    @property
    def remote(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "the AWS default endpoint"

    def url(self, rel: str = "") -> str:
        base = self.uri.rstrip("/")
        return f"{base}/{rel}" if rel else base

    def _bucket_key(self, rel: str) -> tuple[str, str]:
        parsed = urlparse(self.url(rel))
        return parsed.netloc, parsed.path.lstrip("/")

    # ------------------------------------------------------------------ clients
    def client(self) -> Any:
        import boto3

        session = boto3.Session(profile_name=self.profile) if self.profile else boto3.Session()
        return session.client("s3", endpoint_url=self.endpoint_url, config=self.botocore_config())

    def botocore_config(self) -> Any:
        from botocore.config import Config

        timeout = max(1, int(self.timeout_s))
        return Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 3, "mode": "standard"}
        )

    def storage_options(self) -> dict[str, Any]:
        """What LitData's S3 client is built with: our endpoint, timeouts and retry budget."""
        options: dict[str, Any] = {"config": self.botocore_config()}
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        return options

    def session_options(self) -> dict[str, Any]:
        return {"profile_name": self.profile} if self.profile else {}

    def error(self, rel: str, err: BaseException) -> TemplateError:
        """One line naming the endpoint and the object, and what to check."""
        from botocore.exceptions import ClientError, NoCredentialsError, ProfileNotFound

        where = f"{self.url(rel)} at {self.endpoint}"
        if isinstance(err, NoCredentialsError):
            return TemplateError(
                f"no AWS credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            )
        if isinstance(err, ProfileNotFound):
            return TemplateError(f"AWS profile '{self.profile}' not found (~/.aws/config) for {where}")
        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in AUTH_CODES:
                return TemplateError(
                    f"the S3 endpoint {self.endpoint} refused the credentials for {self.url(rel)} ({code}): check "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
                )
            if code in ("NoSuchBucket",):
                return TemplateError(f"bucket of {where} does not exist ({code}): check data.uri")
            if code in ("NoSuchKey", "404", "NotFound"):
                return TemplateError(
                    f"{where} not found: write the shards there with `make shards`, or fix data.uri"
                )
            return TemplateError(f"S3 error on {where}: {code or err}")
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return TemplateError(
            f"cannot reach the S3 endpoint {self.endpoint} for {self.url(rel)} ({first}): check data.endpoint_url "
            "(or AWS_ENDPOINT_URL) and the network"
        )

    # ------------------------------------------------------------------ reading
    def read_bytes(self, rel: str) -> bytes:
        if not self.remote:
            path = Path(self.uri) / rel
            if not path.is_file():
                raise TemplateError(
                    f"{path} not found: write the shards there with `make shards`, or fix data.uri"
                )
            return path.read_bytes()
        bucket, key = self._bucket_key(rel)
        try:
            return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as err:  # every boto/botocore failure: one line naming the endpoint
            raise self.error(rel, err) from err

    def manifest(self) -> dict[str, Any]:
        """The manifest the shards tool wrote, checked for its format."""
        raw = self.read_bytes(MANIFEST)
        try:
            manifest = json.loads(raw)
        except ValueError as err:
            raise TemplateError(
                f"{self.url(MANIFEST)} is not valid JSON ({err}); write the shards again"
            ) from err
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise TemplateError(
                f"{self.url(MANIFEST)} is not a trainforge shard manifest (format {FORMAT}); write it with `make shards`"
            )
        return manifest

    def sizes(self, prefix: str) -> dict[str, int]:
        """Object name -> size in bytes under `prefix/` (one listing, no downloads)."""
        if not self.remote:
            folder = Path(self.uri) / prefix
            return (
                {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
            )
        bucket, key = self._bucket_key(prefix)
        found: dict[str, int] = {}
        try:
            pages = (
                self.client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/")
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found[item["Key"].rsplit("/", 1)[-1]] = int(item["Size"])
        except Exception as err:
            raise self.error(prefix, err) from err
        return found

    # ------------------------------------------------------------------ writing
    def upload(self, local: Path, rel: str) -> None:
        bucket, key = self._bucket_key(rel)
        try:
            self.client().upload_file(str(local), bucket, key)
        except Exception as err:
            raise self.error(rel, err) from err

    def check_writable(self) -> None:
        """Fail before the work starts when the bucket cannot be reached or written."""
        bucket, _ = self._bucket_key("")
        try:
            self.client().head_bucket(Bucket=bucket)
        except Exception as err:
            code = str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise TemplateError(
                    f"bucket {bucket} does not exist at {self.endpoint}: create it first"
                ) from err
            raise self.error("", err) from err
