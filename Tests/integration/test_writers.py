"""Writers as they come on a real cluster, through a real mount on both stores: killed mid-copy,
sharing a descriptor with a child, closing on another thread, seeking (zipfile, safetensors,
numpy, sparse cp), touching, retrying a failed copy, a stale writer behind rmdir, the mount
stopped under a writer, and a second user. A version is `ready` only with every byte its writer
meant to store."""
import hashlib
import os
import stat
import signal
import subprocess
import sys
import threading

import pytest

from helpers import make_file, sh, sha256_file, wait_for, xattr

MiB = 1 << 20


def default_signals():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def settled_status(path, timeout=60):
    """The status once it is no longer `uploading` (a close's outcome lands as the kernel releases)."""
    wait_for(lambda: xattr(path, "status") != "uploading", timeout, f"{path} to settle")
    return xattr(path, "status")


def test_killed_writer_never_leaves_a_short_ready_version(mount, store, name):
    """kill -9, Ctrl-C and kill of a `cp` fed from a pipe, at several offsets: the version fails
    with the reason, its bytes and multipart upload are gone, and nothing counts it as ready."""
    model = name("killed")
    os.mkdir(mount.p("models", model))
    cases = [(signal.SIGKILL, 1 * MiB), (signal.SIGINT, 20 * MiB), (signal.SIGTERM, 9 * MiB), (signal.SIGKILL, 20 * MiB)]
    for i, (sig, offset) in enumerate(cases):
        dst = mount.p("models", model, f"v{i + 1}.zip")
        # Default dispositions: a runner started in the background ignores SIGINT, and so would cp.
        cp = subprocess.Popen(["cp", "/dev/stdin", dst], stdin=subprocess.PIPE, preexec_fn=default_signals)
        block = os.urandom(MiB)
        for _ in range(offset // MiB):
            cp.stdin.write(block)
        cp.stdin.flush()
        # cp holds at most a buffer's worth: wait until the mount has the rest.
        wait_for(lambda: os.path.exists(dst) and os.stat(dst).st_size >= offset - 256 * 1024, what=f"{offset} bytes written")
        cp.send_signal(sig)
        cp.wait(timeout=30)
        try:
            cp.stdin.close()
        except BrokenPipeError:
            pass
        assert cp.returncode == -sig
        assert settled_status(dst) == "failed", f"{sig!r} at {offset}"
        error = xattr(dst, "error")
        assert f"killed by signal {int(sig)}" in error, error
        with pytest.raises(OSError):
            open(dst, "rb").read(1)
    versions = store.versions(model)
    assert all(v["status"] == "failed" for v in versions.values()), versions
    assert not [k for k in store.keys(model + "/")], "no bytes of a killed writer stay in the bucket"
    assert store.multipart_uploads(model + "/") == []
    # The model has no ready version: the last-version rule protects nothing here, rm works.
    for f in os.listdir(mount.p("models", model)):
        os.unlink(mount.p("models", model, f))


def test_a_descriptor_shared_with_a_child_completes_when_the_child_is_done(mount, store, name, tmp_path):
    """`f = open(...); Popen(cmd, stdout=f); f.close()`: the parent's close does not complete the
    version; the child's last write and exit do, with every byte."""
    model = name("shared")
    os.mkdir(mount.p("models", model))
    dst = mount.p("models", model, "v1.zip")
    child = ("import os, sys, time\n"
             "for i in range(20):\n"
             "    os.write(1, bytes([i]) * (1 << 20))\n"
             "    time.sleep(0.02)\n")
    with open(dst, "wb") as f:
        p = subprocess.Popen([sys.executable, "-c", child], stdout=f)
    # The parent closed its descriptor; the child is still writing.
    assert xattr(dst, "status") == "uploading"
    assert p.wait(timeout=60) == 0
    assert settled_status(dst) == "ready"
    expected = b"".join(bytes([i]) * MiB for i in range(20))
    assert int(xattr(dst, "size")) == 20 * MiB
    assert xattr(dst, "sha256") == hashlib.sha256(expected).hexdigest()
    assert open(dst, "rb").read() == expected


def test_a_close_on_another_thread_reports_the_failure(store, name, tmp_path, mounts):
    """Writes on one thread, the close on another, on a full disk (local store on a small tmpfs):
    the close fails, whichever thread makes it."""
    if store.kind != "local":
        pytest.skip("a full disk is the local store's")
    data = tmp_path / "small"
    data.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(data))
    path = str(tmp_path / "mnt")
    env = store.env(MODELFS_DATA_DIR=str(data), MODELFS_DB=str(tmp_path / "catalog.db"))
    try:
        m = mounts(store, "--spool-dir", str(tmp_path / "spool"), "--log-file", str(tmp_path / "mount.log"),
                   path=path, env=env)
        model = name("full")
        os.mkdir(os.path.join(path, "models", model))
        dst = os.path.join(path, "models", model, "v1.zip")
        f = open(dst, "wb", buffering=0)
        write_error = []

        def writer():
            try:
                for _ in range(64):
                    f.write(os.urandom(MiB))
            except OSError as e:
                write_error.append(e)
        t = threading.Thread(target=writer)
        t.start()
        t.join()
        close_error = []

        def closer():
            try:
                f.close()
            except OSError as e:
                close_error.append(e)
        c = threading.Thread(target=closer)
        c.start()
        c.join()
        assert write_error or close_error, "the disk filled, and someone must hear of it"
        assert close_error, "the close (on another thread) reports the failed upload"
        assert xattr(dst, "status") == "failed"
    finally:
        m.unmount()
        subprocess.run(["umount", str(data)])


SEEKING_WRITERS = {
    # Fixed member times: the local file and the version must come out byte-identical.
    "zipfile": ("import zipfile, sys\n"
                "t = (2024, 1, 1, 0, 0, 0)\n"
                "with zipfile.ZipFile(sys.argv[1], 'w') as z:\n"
                "    z.writestr(zipfile.ZipInfo('config.json', t), '{\"a\": 1}')\n"
                "    z.writestr(zipfile.ZipInfo('weights.bin', t), bytes(range(256)) * (40 * 4096))\n"
                "    z.writestr(zipfile.ZipInfo('tokenizer.json', t), 'x' * 1000)\n"),
    "safetensors": ("import numpy as np, sys\n"
                    "from safetensors.numpy import save_file\n"
                    "save_file({'w': np.arange(3 << 20, dtype=np.float32), 'b': np.ones(7, dtype=np.int8)}, sys.argv[1])\n"),
    "numpy": ("import numpy as np, sys\n"
              "with open(sys.argv[1], 'wb') as f:\n"
              "    np.save(f, np.arange(5 << 20, dtype=np.int32))\n"),
}


@pytest.mark.parametrize("writer", sorted(SEEKING_WRITERS))
def test_seeking_writers_make_byte_identical_versions(mount, name, tmp_path, writer):
    model = name("seek")
    os.mkdir(mount.p("models", model))
    ext = {"zipfile": "zip", "safetensors": "safetensors", "numpy": "pt"}[writer]
    local = str(tmp_path / f"local.{ext}")
    dst = mount.p("models", model, f"v1.{ext}")
    for target in (local, dst):
        sh(sys.executable, "-c", SEEKING_WRITERS[writer], target)
    assert settled_status(dst) == "ready"
    assert xattr(dst, "sha256") == sha256_file(local)
    assert sha256_file(dst) == sha256_file(local)
    if writer == "zipfile":
        import zipfile
        with zipfile.ZipFile(dst) as z:
            assert z.testzip() is None
            assert z.read("config.json") == b'{"a": 1}'
    # Nothing is left in the spool.
    spool = os.path.join(mount.store.data_dir, "spool")
    assert not os.path.isdir(spool) or os.listdir(spool) == []


def test_a_sparse_cp_stores_its_holes_as_zeros(mount, name, tmp_path):
    model = name("sparse")
    os.mkdir(mount.p("models", model))
    local = str(tmp_path / "sparse.ckpt")
    with open(local, "wb") as f:
        f.write(b"head" * 1000)
        f.seek(30 * MiB)
        f.write(b"middle" * 1000)
        f.seek(70 * MiB)
        f.write(b"tail")
    dst = mount.p("models", model, "v1.ckpt")
    sh("cp", "--sparse=always", local, dst)
    assert xattr(dst, "status") == "ready"
    assert os.stat(dst).st_size == os.stat(local).st_size
    assert sha256_file(dst) == sha256_file(local)


def test_touch_makes_an_empty_version_that_never_counts_as_the_last(mount, name, tmp_path):
    model = name("touch")
    os.mkdir(mount.p("models", model))
    src = make_file(str(tmp_path / "w.pt"), 3 * MiB)
    sh("cp", src, mount.p("models", model, "v1.pt"))
    sh("touch", mount.p("models", model, "v2.pt"))
    assert xattr(mount.p("models", model, "v2.pt"), "status") == "ready"
    assert os.stat(mount.p("models", model, "v2.pt")).st_size == 0
    r = sh("rm", mount.p("models", model, "v1.pt"), check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, "the empty v2 does not stand in for v1"
    sh("rm", mount.p("models", model, "v2.pt"))
    assert sorted(os.listdir(mount.p("models", model))) == ["v1.pt"]


def test_a_failed_version_shows_and_a_new_copy_replaces_it(mount, store, name, tmp_path):
    model = name("retry")
    os.mkdir(mount.p("models", model))
    dst = mount.p("models", model, "v1.zip")
    cp = subprocess.Popen(["cp", "/dev/stdin", dst], stdin=subprocess.PIPE)
    cp.stdin.write(os.urandom(2 * MiB))
    cp.stdin.flush()
    wait_for(lambda: os.path.exists(dst) and os.stat(dst).st_size >= MiB, what="bytes written")
    cp.kill()
    cp.wait()
    assert settled_status(dst) == "failed"
    mode = sh("ls", "-l", dst).stdout.split()[0]
    assert mode == "----------", mode
    src = make_file(str(tmp_path / "good.zip"), 12 * MiB, seed=3)
    sh("cp", src, dst)
    assert xattr(dst, "status") == "ready"
    # The new copy keeps the mode the file was made with (`cp /dev/stdin`: a pipe's 0600, read bits
    # 0400), as a file overwritten in place keeps its mode; a ready version shows its owner's write
    # bit besides (the note is the owner's to set).
    assert sh("ls", "-l", dst).stdout.split()[0] == "-rw-------"
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o600
    assert sha256_file(dst) == sha256_file(src) == xattr(dst, "sha256")
    assert store.multipart_uploads(model + "/") == []


def test_rmdir_while_a_version_is_written_is_busy_and_the_stale_writer_touches_nothing(mount, store, name, tmp_path):
    model = name("stale")
    os.mkdir(mount.p("models", model))
    dst = mount.p("models", model, "v1.zip")
    f = open(dst, "wb", buffering=0)
    try:
        f.write(os.urandom(6 * MiB))
        with pytest.raises(OSError) as e:
            os.rmdir(mount.p("models", model))
        assert e.value.errno == 16  # EBUSY
        f.write(os.urandom(MiB))
    finally:
        f.close()
    assert xattr(dst, "status") == "ready"
    assert store.versions(model)["v1"]["status"] == "ready"


def test_stopping_the_mount_fails_the_upload_it_was_writing(store, name, mounts):
    m = mounts(store)
    model = name("stopped")
    os.mkdir(m.p("models", model))
    dst = m.p("models", model, "v1.zip")
    cp = subprocess.Popen(["cp", "/dev/stdin", dst], stdin=subprocess.PIPE)
    cp.stdin.write(os.urandom(3 * MiB))
    cp.stdin.flush()
    wait_for(lambda: os.path.exists(dst) and os.stat(dst).st_size >= 2 * MiB, what="bytes written")
    os.kill(m.pid, signal.SIGTERM)
    wait_for(lambda: subprocess.run(["kill", "-0", str(m.pid)], capture_output=True).returncode != 0, 30, "the mount to exit")
    cp.kill()
    cp.wait()
    m.unmount()
    v = store.versions(model)["v1"]
    assert v["status"] == "failed", v
    assert store.multipart_uploads(model + "/") == []
