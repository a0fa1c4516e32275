"""FUSE passthrough (`--passthrough auto`, the default): a file with a whole local copy (a version of
the local store; a version complete in the disk cache) is read by the kernel from that copy, never
through the daemon. Passthrough on and off give the same bytes (sha256sum, mmap, safetensors);
`.stats`' read counter shows which path served them (the local store counts every byte the daemon
reads from its files); several opens of one file at once share its backing file; a version deleted
while open; a mount by a user who is not root falls back to the daemon path."""
import hashlib
import mmap
import os
import subprocess

import pytest

from conftest import Store
from helpers import MODELFS, make_file, sh, sha256_file

MiB = 1 << 20


def weights(path, seed=0):
    """A safetensors file of 8 tensors (~24 MiB), and its tensors."""
    import numpy as np
    from safetensors.numpy import save_file
    rng = np.random.default_rng(seed)
    tensors = {f"layer{i}.weight": rng.standard_normal((768, 1024)).astype(np.float32) for i in range(8)}
    save_file(tensors, str(path))
    return tensors


@pytest.fixture
def mounted(mounts):
    """`with mounted(store, path, mode, *extra) as m`: a mount of `store` with `--passthrough MODE`,
    unmounted on exit whatever happens; `m.said()` is what it logged."""
    def mount(store, path, mode, *extra):
        log = str(path) + ".log"
        m = mounts(store, "--passthrough", mode, "--log-file", log, *extra, path=path)
        m.said = lambda: open(log).read()
        return m
    return mount


def require_passthrough(m):
    """Passthrough is on for this mount; a kernel that does not offer it skips (the build must have it)."""
    log = m.said()
    if "the kernel did not offer it" in log:
        pytest.skip("this kernel offers no FUSE passthrough (Linux >= 6.9 with CONFIG_FUSE_PASSTHROUGH)")
    assert "passthrough on" in log, log


def read_all_ways(m, rel, tensors):
    """(sha256sum's digest, the digest of an mmap of the file); checks safetensors' load_file."""
    import numpy as np
    from safetensors.numpy import load_file
    p = m.p(*rel)
    digest = sh("sha256sum", p).stdout.split()[0]
    with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
        mapped = hashlib.sha256(mm).hexdigest()
    loaded = load_file(p)
    assert loaded.keys() == tensors.keys()
    for k, v in tensors.items():
        assert np.array_equal(loaded[k], v), k
    return digest, mapped


def test_passthrough_on_and_off_read_the_same_bytes_and_on_the_daemon_reads_none(tmp_path, name, mounted):
    store = Store("local", str(tmp_path / "data"))
    model = name()
    src = tmp_path / "w.safetensors"
    tensors = weights(src)
    store.run("import", str(src), "--model", model, "--version", "v1", "--quiet")
    expected = sha256_file(src)
    size = os.path.getsize(src)
    rel = ("models", model, "v1.safetensors")

    with mounted(store, tmp_path / "on", "auto") as m:
        require_passthrough(m)
        before = m.stats()["s3.bytes_fetched"]
        assert read_all_ways(m, rel, tensors) == (expected, expected)
        # The kernel read the store's file itself: not one byte came through the daemon.
        assert m.stats()["s3.bytes_fetched"] == before

    with mounted(store, tmp_path / "off", "off") as m:
        before = m.stats()["s3.bytes_fetched"]
        assert read_all_ways(m, rel, tensors) == (expected, expected)
        assert m.stats()["s3.bytes_fetched"] - before >= size
        assert "passthrough on" not in m.said() and "passthrough off" not in m.said()


def test_opens_of_one_file_at_once_share_its_backing_file(tmp_path, name, mounted):
    """The kernel passes an inode through to one backing file: a second open registering its own
    would fail with EIO. Opens overlap, close in any order, and the file opens again afterwards."""
    store = Store("local", str(tmp_path / "data"))
    model = name()
    src = make_file(str(tmp_path / "w.pth"), 24 * MiB, seed=3)
    store.run("import", src, "--model", model, "--version", "v1", "--quiet")
    expected = sha256_file(src)
    with open(src, "rb") as f:
        want = f.read()
    with mounted(store, tmp_path / "m", "auto") as m:
        require_passthrough(m)
        p = m.p("models", model, "v1.pth")
        before = m.stats()["s3.bytes_fetched"]
        fds = []
        try:
            for _ in range(4):
                fds.append(os.open(p, os.O_RDONLY))  # EIO if each open asked for a backing file of its own
            with mmap.mmap(fds[1], 0, prot=mmap.PROT_READ) as mm:
                assert mm[5 * MiB:6 * MiB] == want[5 * MiB:6 * MiB]
            for i, fd in enumerate(fds):
                off = i * 5 * MiB
                assert os.pread(fd, MiB, off) == want[off:off + MiB]
            os.close(fds.pop(2))
            os.close(fds.pop(0))
            assert sha256_file(p) == expected  # opened while two others still are
        finally:
            for fd in fds:
                os.close(fd)
        # After the last close, a new open registers the file again.
        assert sha256_file(p) == expected
        assert m.stats()["s3.bytes_fetched"] == before


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_local_version_deleted_while_open_keeps_its_bytes_for_that_open(tmp_path, name, mode, mounted):
    """The local store's reader holds the object's file open: a version deleted under it keeps
    answering with its bytes, through the daemon or passing through (the kernel holds the same
    file); a new open finds no file. (On S3 a read that needs the store says ESTALE:
    test_mount.py's test_a_version_deleted_under_an_open_reader_is_stale.)"""
    store = Store("local", str(tmp_path / "data"))
    model = name()
    src = make_file(str(tmp_path / "w.pth"), 40 * MiB, seed=4)
    store.run("import", src, "--model", model, "--version", "v1", "--quiet")
    store.run("import", src, "--model", model, "--version", "v2", "--quiet")
    with open(src, "rb") as f:
        want = f.read()
    with mounted(store, tmp_path / "m", mode) as m:
        p = m.p("models", model, "v1.pth")
        fd = os.open(p, os.O_RDONLY)
        mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)  # mapped before, its pages faulted in after
        try:
            assert os.pread(fd, 4096, 0) == want[:4096]
            store.run("version", "rm", model, "v1")
            assert os.pread(fd, MiB, 30 * MiB) == want[30 * MiB:31 * MiB]
            assert hashlib.sha256(mm).hexdigest() == hashlib.sha256(want).hexdigest()
        finally:
            mm.close()
            os.close(fd)
        with pytest.raises(FileNotFoundError):
            open(p, "rb")


@pytest.mark.every_s3
def test_s3_versions_read_the_same_with_passthrough_on_and_off(s3store, name, tmp_path, mounted):
    """Through the disk cache, cold then after a remount (the copy complete: passthrough where the
    read path offers its file), with passthrough on and off: the same bytes, mapped or read."""
    model = name()
    src = tmp_path / "w.safetensors"
    tensors = weights(src, seed=5)
    s3store.run("import", str(src), "--model", model, "--version", "v1", "--quiet")
    expected = sha256_file(src)
    rel = ("models", model, "v1.safetensors")
    for mode in ("auto", "off"):
        cache = str(tmp_path / f"cache-{mode}")
        for run in range(2):
            with mounted(s3store, tmp_path / f"m-{mode}-{run}", mode, "--cache-dir", cache) as m:
                assert read_all_ways(m, rel, tensors) == (expected, expected)


def test_a_mount_by_a_user_who_is_not_root_reads_through_the_daemon(tmp_path, name, mounts):
    """Only a server with CAP_SYS_ADMIN may hand files to the kernel: a user's mount says once that
    passthrough is off, and reads the same bytes through the daemon (mounted with Debian's
    fusermount3, beside the newer libfuse linked into modelfs)."""
    import pwd
    import tempfile
    if os.geteuid() != 0:
        pytest.skip("needs root to make a user")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK) or os.stat("/dev/fuse").st_mode & 0o006 != 0o006:
        pytest.skip("/dev/fuse is not open to other users on this machine: they cannot mount")
    user = "modelfs-bob"
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/bin/sh", user], check=True)
    top = tempfile.mkdtemp(prefix="modelfs-pt-", dir="/tmp")
    os.chmod(top, 0o755)
    os.chown(top, pwd.getpwnam(user).pw_uid, -1)
    store = Store("local", os.path.join(top, "data"))
    src = make_file(os.path.join(top, "w.pth"), 8 * MiB, seed=6)
    os.chmod(src, 0o644)
    mnt = os.path.join(top, "m")
    env = ["env", f"MODELFS_DATA_DIR={store.data_dir}"]
    as_user = lambda *argv: subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, timeout=120)
    model = name()
    r = as_user(*env, MODELFS, "import", src, "--model", model, "--version", "v1", "--quiet")
    assert r.returncode == 0, r.stderr
    try:
        with mounts(store, path=mnt, user=user, timeout=120) as m:
            r = as_user("sha256sum", m.p("models", model, "v1.pth"))
            assert r.returncode == 0 and r.stdout.split()[0] == sha256_file(src), r.stderr
            log = m.log()
            assert log.count("passthrough off") == 1 and "CAP_SYS_ADMIN" in log, log
    finally:
        subprocess.run(["rm", "-rf", top])
