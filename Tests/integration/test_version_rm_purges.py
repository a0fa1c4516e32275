"""`modelfs version rm` from the CLI (another process than the mount) purges the version from the
node's caches: the delete records a purge in the catalog, the mount applies it (memory and disk
cache) within a second or so, and a new version under the same name reads its own bytes."""
import hashlib
import os
import time

import pytest

from conftest import make_file, sha256_file


def cache_file(store, sha256, size):
    """The disk cache's data file of the object with this content (ReadPath's ObjectIdentity)."""
    digest = hashlib.sha256(f"modelfs-object\0{sha256}\0{size}".encode()).digest()
    ident = int.from_bytes(digest[:8], "big") & ~(1 << 63)
    return os.path.join(store.data_dir, "cache", "objects", f"{ident:x}.data")


def eventually(predicate, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.parametrize("store", ["s3"], indirect=True)
def test_version_rm_from_the_cli_purges_the_mounts_caches(mount, name, tmp_path):
    store = mount.store
    model = name("purge")
    old = make_file(tmp_path / "old.pt", 3 << 20, seed=1)
    new = make_file(tmp_path / "new.pt", 2 << 20, seed=2)
    store.run("import", str(make_file(tmp_path / "keep.pt", 1000, seed=3)), "--model", model, "--version", "keep", "--quiet")
    store.run("import", str(old), "--model", model, "--version", "v1", "--quiet")
    path = mount.p("models", model, "v1.pt")
    assert sha256_file(path) == sha256_file(old)
    cached = cache_file(store, sha256_file(old), os.path.getsize(old))
    assert eventually(lambda: os.path.exists(cached)), "the read landed in the disk cache"

    store.run("version", "rm", model, "v1")
    assert eventually(lambda: not os.path.exists(cached)), "the deleted version's blocks left the disk cache"
    assert not os.path.exists(cached[:-len(".data")] + ".idx")

    store.run("import", str(new), "--model", model, "--version", "v1", "--quiet")
    assert eventually(lambda: os.path.exists(path) and sha256_file(path) == sha256_file(new)), "the new v1's bytes"
    assert sha256_file(path) == sha256_file(new)
