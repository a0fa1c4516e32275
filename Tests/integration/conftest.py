"""End-to-end fixtures: a fresh data dir per test, both stores (the embedded local store and the
real S3 test servers that scripts/test starts), a TCP relay that a test can cut to play an S3
outage, and `mounts`, the mount factory that unmounts every mount a test made (docs/TESTING.md).
What tests share besides fixtures is in helpers.py.

S3 comes in three implementations (S3_SERVERS): "s3" is the s3api server
(MODELFS_TEST_S3_ENDPOINT, the AWS_* credentials), "moto" is moto's server
(MODELFS_TEST_S3_ENDPOINT_2, MODELFS_TEST_S3_ACCESS_KEY_ID_2 / MODELFS_TEST_S3_SECRET_ACCESS_KEY_2),
"rgw" is Ceph RGW (scripts/rgw-server: MODELFS_TEST_S3_ENDPOINT_3 and the _3 credentials). Every
test using the `store` or `s3store` fixture runs on "s3"; it runs on moto and RGW too only when it
is marked `every_s3` (a test, or a module's `pytestmark`): the other moto and RGW cases are
deselected, to keep the run short. (`every_s3` was called `moto` before RGW came: a test still
marked `moto` is an error, so a branch written before the rename cannot lose its cases silently.)

A server that is not configured skips its cases; when it must be there (MODELFS_REQUIRE_S3=1 for
s3api and moto, MODELFS_REQUIRE_RGW=1 for RGW, both set by scripts/test) its cases fail instead,
with the reason it did not start (MODELFS_*_START_ERROR, set by scripts/test)."""
import os
import socket
import subprocess
import threading
import uuid

import pytest

# Test files import these from here too (`from conftest import sh, Mount`): helpers.py holds them.
from helpers import MODELFS, Mount, Mounts, is_mounted, make_file, sh, sha256_file  # noqa: F401

BUCKET = os.environ.get("MODELFS_TEST_S3_BUCKET", "models")


class S3Server:
    """Where one S3 implementation's test server is, as scripts/test exports it."""

    def __init__(self, suffix, require, start_error):
        self.variable = "MODELFS_TEST_S3_ENDPOINT" + suffix
        self.endpoint = os.environ.get(self.variable)
        self.keys = (("MODELFS_TEST_S3_ACCESS_KEY_ID" + suffix, "MODELFS_TEST_S3_SECRET_ACCESS_KEY" + suffix)
                     if suffix else None)  # None: the environment's AWS_* credentials
        self.require, self.start_error = require, start_error


S3_SERVERS = {
    "s3": S3Server("", "MODELFS_REQUIRE_S3", "MODELFS_S3_START_ERROR"),
    "moto": S3Server("_2", "MODELFS_REQUIRE_S3", "MODELFS_MOTO_START_ERROR"),
    "rgw": S3Server("_3", "MODELFS_REQUIRE_RGW", "MODELFS_RGW_START_ERROR"),
}
S3_ENDPOINT = S3_SERVERS["s3"].endpoint
# The implementations a test runs on only when marked `every_s3`.
EXTRA_S3 = ("moto", "rgw")


def s3_credentials(impl):
    """(access key id, secret) for one S3 implementation; None: the environment's AWS_* ones."""
    keys = S3_SERVERS[impl].keys if impl else None
    return tuple(os.environ.get(k) for k in keys) if keys else None


def new_bucket(client=None):
    """A fresh bucket on an S3 test server: a bucket belongs to one catalog, and every test's
    data dir is a new catalog, so every S3 store gets its own bucket."""
    b = f"t-{uuid.uuid4().hex[:16]}"
    (client or s3_client()).create_bucket(Bucket=b)
    return b


class Store:
    """One store under test: runs the CLI against it and looks at its bucket directly.
    S3 stores get a bucket of their own (`bucket`) unless one is given, on their own server
    (`impl`: "s3" for s3api, "moto" or "rgw"), with that server's credentials."""

    def __init__(self, kind, data_dir, endpoint=None, impl=None, bucket=None):
        self.kind = kind  # "local" or "s3", whichever S3 implementation
        self.data_dir = data_dir
        self.endpoint = endpoint
        self.impl = impl or ("s3" if kind == "s3" else None)  # a key of S3_SERVERS
        self.credentials = s3_credentials(self.impl)
        self.bucket = bucket or (new_bucket(self.client()) if kind == "s3" else None)

    def client(self):
        """boto3 on this store's S3 server, with its credentials."""
        return s3_client(self.endpoint, self.credentials)

    @property
    def db_file(self):
        """The catalog's file name in the data dir."""
        return f"{self.bucket}.db" if self.kind == "s3" else "catalog.db"

    @property
    def db(self):
        return os.path.join(self.data_dir, self.db_file)

    def env(self, **extra):
        env = dict(os.environ)
        env["MODELFS_DATA_DIR"] = self.data_dir
        env.pop("MODELFS_BUCKET", None)
        if self.kind == "s3":
            env["MODELFS_BUCKET"] = self.bucket
            env["MODELFS_ENDPOINT"] = self.endpoint
            if self.credentials:
                env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = self.credentials
                env.pop("AWS_SESSION_TOKEN", None)
        env.update(extra)
        return env

    def run(self, *args, check=True, timeout=600, env=None, **kwargs):
        p = subprocess.run([MODELFS, *args], capture_output=True, text=True, timeout=timeout,
                           env=env or self.env(), **kwargs)
        if check and p.returncode != 0:
            raise AssertionError(f"modelfs {' '.join(args)} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def popen(self, *args, env=None, **kwargs):
        return subprocess.Popen([MODELFS, *args], env=env or self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kwargs)

    def versions(self, model):
        import json
        return {v["name"]: v for v in json.loads(self.run("versions", model, "--json").stdout)}

    # The bucket as it is, seen without modelfs.
    def keys(self, prefix=""):
        if self.kind == "local":
            root = os.path.join(self.data_dir, "blobs", "objects")
            out = []
            for d, _, files in os.walk(root):
                for f in files:
                    key = os.path.relpath(os.path.join(d, f), root)
                    if key.startswith(prefix):
                        out.append(key)
            return sorted(out)
        s3 = self.client()
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def put_object(self, key, body):
        """Puts an object behind modelfs's back."""
        if self.kind == "local":
            path = os.path.join(self.data_dir, "blobs", "objects", key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(body)
        else:
            self.client().put_object(Bucket=self.bucket, Key=key, Body=body)

    def get_object(self, key):
        if self.kind == "local":
            with open(os.path.join(self.data_dir, "blobs", "objects", key), "rb") as f:
                return f.read()
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def multipart_uploads(self, prefix=""):
        if self.kind == "local":
            root = os.path.join(self.data_dir, "blobs", "multipart")
            return [open(os.path.join(root, d, "key")).read() for d in os.listdir(root)] if os.path.isdir(root) else []
        r = self.client().list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        return [u["Key"] for u in r.get("Uploads", [])]


def s3_client(endpoint=None, credentials=None):
    import boto3
    from botocore.config import Config
    keys = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]} if credentials else {}
    return boto3.client("s3", endpoint_url=endpoint or S3_ENDPOINT, **keys,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))


def _s3_store(impl, tmp_path):
    server = S3_SERVERS[impl]
    if not server.endpoint:
        if os.environ.get(server.require) == "1":
            pytest.fail(f"{server.variable} is not set. {os.environ.get(server.start_error, '')}")
        pytest.skip(f"no {impl} S3 test server (run scripts/test)")
    return Store("s3", str(tmp_path / "data"), server.endpoint, impl=impl)


@pytest.fixture(params=["local", *S3_SERVERS])
def store(request, tmp_path):
    if request.param == "local":
        return Store("local", str(tmp_path / "data"))
    return _s3_store(request.param, tmp_path)


@pytest.fixture(params=list(S3_SERVERS))
def s3store(request, tmp_path):
    return _s3_store(request.param, tmp_path)


def pytest_configure(config):
    config.addinivalue_line("markers", "every_s3: run on every S3 implementation (the store/s3store fixtures' "
                                       "moto and rgw cases too), not only on s3api")


def pytest_collection_modifyitems(config, items):
    """Drops the moto and RGW cases of tests not marked `every_s3`."""
    keep, drop = [], []
    for item in items:
        if item.get_closest_marker("moto") is not None:
            raise pytest.UsageError(f"{item.nodeid}: the `moto` marker is now `every_s3` (it runs on RGW too)")
        params = getattr(getattr(item, "callspec", None), "params", {})
        extra = params.get("store") in EXTRA_S3 or params.get("s3store") in EXTRA_S3
        (drop if extra and item.get_closest_marker("every_s3") is None else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def name():
    """A model name no other test uses (they share one bucket)."""
    return lambda base="model": f"{base}-{uuid.uuid4().hex[:8]}"


class Relay:
    """A TCP relay on 127.0.0.1 in front of the S3 server; `cut()` closes every connection and
    refuses new ones (the server is gone), `restore()` brings it back on the same port."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.listener = None
        self.conns = []
        self.lock = threading.Lock()
        self.restore()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def restore(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        # shutdown() wakes the thread blocked in accept(); close() alone would leave it listening.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
                except OSError:
                    pass
            self.conns = []


@pytest.fixture
def relay(s3store):
    from urllib.parse import urlparse
    u = urlparse(s3store.endpoint)
    r = Relay(u.hostname, u.port)
    yield r
    r.cut()


@pytest.fixture
def mounts(tmp_path):
    """The mount factory (helpers.Mounts): `mounts(store, *args, path=, env=, user=, check=)` runs
    `modelfs mount PATH ARGS…` and returns its `Mount`; every mount it made or adopted is
    unmounted when the test ends, even when the test failed."""
    factory = Mounts(tmp_path)
    yield factory
    factory.unmount_all()


@pytest.fixture
def mount(store, mounts):
    """A mount of `store` with the default options, at tmp_path/mnt."""
    return mounts(store)
