"""`modelfs version rm` from the CLI (another process than the mount) purges the version from the
mount's caches: the delete's transaction records what it leaves there, the mount's follower reads
the record and drops the blocks (memory and disk cache) within a second or so, and the next
version under the reused name reads its own bytes."""
import os

import pytest

from helpers import disk_cache_file, make_file, sha256_file, wait_for


@pytest.mark.every_s3
def test_version_rm_from_the_cli_purges_the_mounts_caches_and_the_reused_name_reads_new_bytes(s3store, mounts, name, tmp_path):
    m = mounts(s3store)
    model = name("purge")
    old = make_file(tmp_path / "old.pt", 3 << 20, seed=1)
    new = make_file(tmp_path / "new.pt", 3 << 20, seed=2)  # the same size: only the bytes tell them apart
    s3store.run("import", str(make_file(tmp_path / "keep.pt", 1000, seed=3)), "--model", model, "--version", "keep", "--quiet")
    s3store.run("import", str(old), "--model", model, "--version", "v1", "--quiet")
    path = m.p("models", model, "v1.pt")
    assert sha256_file(path) == sha256_file(old)
    cached = disk_cache_file(m, sha256_file(old), os.path.getsize(old))
    wait_for(lambda: os.path.exists(cached), 30, "the read landing in the disk cache")
    assert m.stats()["cache.bytes"] > 0, "and in memory"

    s3store.run("version", "rm", model, "v1")
    wait_for(lambda: not os.path.exists(cached), 30, "the deleted version's blocks leaving the disk cache")
    assert not os.path.exists(cached[: -len(".data")] + ".idx")
    assert m.wait_stat("cache.bytes", 0) == 0, "and from memory (nothing else was read)"

    s3store.run("import", str(new), "--model", model, "--version", "v1", "--quiet")
    wait_for(lambda: os.path.exists(path), 30, "the new v1 showing in the mount")
    assert sha256_file(path) == sha256_file(new), "the new v1's bytes, not the cached old ones"
    assert sha256_file(path) != sha256_file(old)
