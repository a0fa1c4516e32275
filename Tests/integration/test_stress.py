"""A full disk, and many writers, readers and listings at once."""
import concurrent.futures
import os
import sqlite3
import subprocess
import time

import pytest

from conftest import Store
from helpers import make_file, sha256_file, sh

MiB = 1 << 20


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs for the data dir."""
    d = tmp_path / "small"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(d)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield str(d)
    finally:
        subprocess.run(["umount", "-l", str(d)])


def test_a_full_disk_gives_a_clear_error_and_a_sound_catalog(small_disk, tmp_path, name, mounts):
    store = Store("local", os.path.join(small_disk, "data"))
    path = str(tmp_path / "m")
    m = mounts(store, path=path)
    with m:
        model = name()
        d = os.path.join(path, "models", model)
        os.mkdir(d)
        small = make_file(tmp_path / "small.pt", 2 * MiB)
        sh("cp", str(small), os.path.join(d, "v1.pt"))
        big = make_file(tmp_path / "big.pt", 40 * MiB)
        cp = sh("cp", str(big), os.path.join(d, "v2.pt"), check=False)
        assert cp.returncode != 0
        assert "No space left on device" in cp.stderr or "Input/output error" in cp.stderr, cp.stderr
        # What was there is still there, whole.
        assert sha256_file(os.path.join(d, "v1.pt")) == sha256_file(small)
        status = subprocess.run(["getfattr", "-n", "user.modelfs.status", "--only-values", os.path.join(d, "v2.pt")],
                                capture_output=True, text=True).stdout
        assert status in ("failed", "")  # failed, or never recorded
    with sqlite3.connect(os.path.join(store.data_dir, "catalog.db")) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT status FROM versions WHERE name = 'v1'").fetchone()[0] == "ready"
        assert c.execute("SELECT count(*) FROM versions WHERE status = 'ready' AND name = 'v2'").fetchone()[0] == 0
    # Space comes back: the next copy works.
    store.run("version", "rm", model, "v2", check=False)
    m.start()
    sh("cp", str(small), os.path.join(path, "models", model, "v3.pt"))
    assert sha256_file(os.path.join(path, "models", model, "v3.pt")) == sha256_file(small)


def test_sixteen_writers_sixteen_readers_and_listings_for_a_while(store, name, tmp_path, mounts):
    seconds = float(os.environ.get("MODELFS_STRESS_SECONDS", "60" if store.kind == "s3" else "20"))
    path = str(tmp_path / "m")
    errors = []
    with mounts(store, path=path):
        model = name()
        d = os.path.join(path, "models", model)
        os.mkdir(d)
        sources = [make_file(tmp_path / f"s{i}.pt", (i % 4 + 1) * 3 * MiB + i, seed=i) for i in range(4)]
        sums = {str(s): sha256_file(s) for s in sources}
        for i, s in enumerate(sources):
            sh("cp", str(s), os.path.join(d, f"base{i}.pt"))
        deadline = time.time() + seconds
        counter = iter(range(10**9))

        def writer(k):
            n = 0
            while time.time() < deadline:
                src = sources[(k + n) % 4]
                target = os.path.join(d, f"w{k}-{next(counter)}.pt")
                p = subprocess.run(["cp", str(src), target], capture_output=True, text=True)
                if p.returncode != 0:
                    errors.append(f"cp {target}: {p.stderr}")
                elif sha256_file(target) != sums[str(src)]:
                    errors.append(f"wrong bytes in {target}")
                n += 1
            return n

        def reader(k):
            n = 0
            while time.time() < deadline:
                i = (k + n) % 4
                with open(os.path.join(d, f"base{i}.pt"), "rb") as f:
                    f.seek((n * 7919) % (1 * MiB))
                    chunk = f.read(256 << 10)
                with open(sources[i], "rb") as f:
                    f.seek((n * 7919) % (1 * MiB))
                    if chunk != f.read(256 << 10):
                        errors.append(f"wrong bytes reading base{i}.pt")
                n += 1
            return n

        def lister():
            n = 0
            while time.time() < deadline:
                p = subprocess.run(["ls", "-l", d], capture_output=True, text=True)
                if p.returncode != 0:
                    errors.append(f"ls: {p.stderr}")
                n += 1
            return n

        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            writes = [pool.submit(writer, k) for k in range(16)]
            reads = [pool.submit(reader, k) for k in range(16)]
            lists = [pool.submit(lister) for _ in range(4)]
            done = [f.result(timeout=seconds + 600) for f in writes + reads + lists]
        print(f"\nstress ({store.kind}, {seconds:.0f} s): {sum(done[:16])} copies, {sum(done[16:32])} reads, {sum(done[32:])} listings")
        assert not errors, errors[:5]
        assert not any("database is locked" in e for e in errors)
        assert sum(done[:16]) >= 16
    db = store.db
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT count(*) FROM versions WHERE status != 'ready'").fetchone()[0] == 0
