"""Storage fixtures for the imaging tests: a private filesystem directory, or a real S3 API (moto)."""

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from django.core.files.storage import Storage, storages
from moto.server import ThreadedMotoServer

S3_BUCKET = "yingxiang-test-objects"
S3_REGION = "us-east-1"
S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=S3_REGION, **S3_CREDENTIALS)


def _forget_storages() -> None:
    """Drop the storage handler's cached backends so the next lookup reads settings.STORAGES again.

    Django's setting_changed receiver does the same when pytest-django's ``settings`` changes
    STORAGES; doing it here as well keeps the fixtures correct whatever order teardowns run in.
    """
    storages.__dict__.pop("backends", None)  # StorageHandler.backends is a cached_property
    storages._backends = None
    storages._storages = {}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server on a free local port, with one empty bucket, for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3Server(endpoint_url=f"http://{host}:{port}", bucket=S3_BUCKET)
    s3.client().create_bucket(Bucket=S3_BUCKET)
    yield s3
    server.stop()


def _use_default_storage(settings, backend: dict) -> Storage:
    settings.STORAGES = {**settings.STORAGES, "default": backend}
    _forget_storages()
    return storages["default"]


@pytest.fixture
def local_storage(settings, tmp_path) -> Iterator[Storage]:
    """The default storage as a filesystem directory of this test's own."""
    location = tmp_path / "storage"
    yield _use_default_storage(
        settings,
        {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}},
    )
    _forget_storages()


@pytest.fixture
def s3_storage(settings, s3_server: S3Server) -> Iterator[Storage]:
    """The default storage as django-storages' S3 backend, pointed at the moto server."""
    options = {
        "bucket_name": s3_server.bucket,
        "endpoint_url": s3_server.endpoint_url,
        "access_key": S3_CREDENTIALS["aws_access_key_id"],
        "secret_key": S3_CREDENTIALS["aws_secret_access_key"],
        "region_name": S3_REGION,
        "default_acl": None,
        "querystring_auth": True,
        "file_overwrite": False,
    }
    yield _use_default_storage(settings, {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options})
    _forget_storages()
