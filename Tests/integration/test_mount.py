"""The mount end to end, on the embedded local store and on a real S3 server, driven with cp, ls,
rm, mkdir, mv, dd, getfattr, setfattr, sha256sum and Python's zipfile and safetensors."""
import errno
import hashlib
import json
import os
import subprocess
import zipfile

import pytest

from conftest import Store
from helpers import errno_of, make_file, process_ended, sha256_file, sh, wait_for, xattrs

MiB = 1 << 20


def test_layout_and_generated_files(mount, name):
    assert sorted(os.listdir(mount.path)) == [".stats", "datasets", "jobs", "models", "services"]
    model = name()
    sh("mkdir", mount.p("models", model))
    assert open(mount.p("models", model, ".next")).read() == "v1\n"
    stats = mount.stats()
    assert stats["models"] == 1 and stats["versions"] == 0


@pytest.mark.parametrize("size", [0, 5 * MiB + 1, 300 * MiB], ids=["0B", "5MiB+1", "300MiB"])
def test_cp_in_and_read_back(mount, name, tmp_path, size):
    model = name()
    src = make_file(tmp_path / "w.bin", size, seed=size)
    sh("mkdir", mount.p("models", model))
    sh("cp", str(src), mount.p("models", model, "v1.safetensors"))
    ls = sh("ls", "-l", mount.p("models", model)).stdout
    assert f" {size} " in ls and "v1.safetensors" in ls
    got = sh("sha256sum", mount.p("models", model, "v1.safetensors")).stdout.split()[0]
    assert got == sha256_file(src)
    a = xattrs(mount.p("models", model, "v1.safetensors"))
    assert a["user.modelfs.status"] == "ready"
    assert a["user.modelfs.sha256"] == got
    assert a["user.modelfs.size"] == str(size)
    # The CLI sees the same store.
    assert mount.store.versions(model)["v1"]["sha256"] == got


def test_xattrs_type_and_note(mount, name, tmp_path):
    model = name()
    d = mount.p("models", model)
    sh("mkdir", d)
    sh("cp", str(make_file(tmp_path / "a.zip", 1000)), os.path.join(d, "v1.zip"))
    sh("setfattr", "-n", "user.modelfs.type", "-v", "text", d)
    sh("setfattr", "-n", "user.modelfs.note", "-v", "fine-tuned on 金融 QA", os.path.join(d, "v1.zip"))
    assert xattrs(d)["user.modelfs.type"] == "text"
    assert xattrs(os.path.join(d, "v1.zip"))["user.modelfs.note"] == "fine-tuned on 金融 QA"
    bad = sh("setfattr", "-n", "user.modelfs.type", "-v", "audio", d, check=False)
    assert bad.returncode != 0 and "Invalid argument" in bad.stderr
    assert xattrs(d)["user.modelfs.type"] == "text"
    assert json.loads(mount.store.run("models", "--type", "text", "--json").stdout)[0]["name"] == model


def test_rm_rules_and_rmdir(mount, name, tmp_path):
    model = name()
    d = mount.p("models", model)
    sh("mkdir", d)
    src = make_file(tmp_path / "a.pt", 4096)
    sh("cp", str(src), os.path.join(d, "v1.pt"))
    sh("cp", str(src), os.path.join(d, "v2.pt"))
    sh("rm", os.path.join(d, "v1.pt"))
    assert os.listdir(d) == ["v2.pt"]
    last = sh("rm", os.path.join(d, "v2.pt"), check=False)
    assert last.returncode != 0 and "Operation not permitted" in last.stderr
    assert errno_of(os.unlink, os.path.join(d, "v2.pt")) == errno.EPERM
    assert sha256_file(os.path.join(d, "v2.pt")) == sha256_file(src)
    sh("rmdir", d)  # a model goes with all its versions
    assert model not in os.listdir(mount.p("models"))
    assert mount.store.keys(model + "/") == []
    assert errno_of(os.rmdir, mount.p("models")) == errno.EPERM


def test_mv_version_and_model(mount, name, tmp_path):
    a, b = name("a"), name("b")
    sh("mkdir", mount.p("models", a))
    sh("mkdir", mount.p("models", b))
    src = make_file(tmp_path / "x.zip", 3 * MiB)
    sh("cp", str(src), mount.p("models", a, "v2.zip"))
    sh("cp", str(src), mount.p("models", a, "v3.zip"))
    sh("mv", mount.p("models", a, "v2.zip"), mount.p("models", a, "v2.1.zip"))
    assert sorted(os.listdir(mount.p("models", a))) == ["v2.1", "v2.1.zip", "v3", "v3.zip"], "each zip with its view"
    assert sha256_file(mount.p("models", a, "v2.1.zip")) == sha256_file(src)
    assert errno_of(os.rename, mount.p("models", a, "v3.zip"), mount.p("models", b, "v3.zip")) == errno.EXDEV
    assert errno_of(os.rename, mount.p("models", a, "v3.zip"), mount.p("models", a, "v2.1.zip")) == errno.EEXIST
    assert errno_of(os.rename, mount.p("models", a), mount.p("models", b)) == errno.EEXIST
    c = name("c")
    sh("mv", mount.p("models", a), mount.p("models", c))
    assert sorted(os.listdir(mount.p("models", c))) == ["v2.1", "v2.1.zip", "v3", "v3.zip"]
    assert sha256_file(mount.p("models", c, "v3.zip")) == sha256_file(src)


def test_refusals(mount, name, tmp_path):
    model = name()
    d = mount.p("models", model)
    sh("mkdir", d)
    src = make_file(tmp_path / "a.zip", 100)
    sh("cp", str(src), os.path.join(d, "v1.zip"))
    dup = sh("cp", str(src), os.path.join(d, "v1.zip"), check=False)
    assert dup.returncode != 0 and "File exists" in dup.stderr
    assert errno_of(os.open, os.path.join(d, "v1.pth"), os.O_WRONLY | os.O_CREAT) == errno.EEXIST
    assert errno_of(os.open, os.path.join(d, "v9.exe"), os.O_WRONLY | os.O_CREAT) == errno.EINVAL
    assert errno_of(os.open, os.path.join(d, "v1.zip"), os.O_WRONLY | os.O_APPEND) == errno.EPERM
    assert errno_of(os.truncate, os.path.join(d, "v1.zip"), 0) == errno.EPERM
    assert errno_of(os.chmod, os.path.join(d, "v1.zip"), 0o777) == errno.EPERM
    assert errno_of(os.link, os.path.join(d, "v1.zip"), os.path.join(d, "v2.zip")) == errno.EPERM
    assert errno_of(os.symlink, "v1.zip", os.path.join(d, "v3.zip")) == errno.EINVAL  # links are @names
    assert errno_of(os.mkdir, mount.p("models", ".hidden")) == errno.EINVAL
    assert errno_of(os.mkdir, mount.p("models", model)) == errno.EEXIST
    assert sorted(os.listdir(d)) == ["v1", "v1.zip"]
    assert sha256_file(os.path.join(d, "v1.zip")) == sha256_file(src)


def test_skipping_ahead_writes_zeros_and_shrinking_fails_the_version(mount, name):
    model = name()
    sh("mkdir", mount.p("models", model))
    target = mount.p("models", model, "v1.zip")
    sh("dd", "if=/dev/urandom", f"of={target}", "bs=1M", "count=2", "seek=3")
    assert xattrs(target)["user.modelfs.status"] == "ready"
    data = open(target, "rb").read()
    assert len(data) == 5 * MiB and data[:3 * MiB] == bytes(3 * MiB)
    # A pwrite ahead inside one open file is a hole too.
    fd = os.open(mount.p("models", model, "v2.zip"), os.O_WRONLY | os.O_CREAT)
    os.write(fd, b"x" * 100)
    os.pwrite(fd, b"y", 5000)
    os.close(fd)
    assert open(mount.p("models", model, "v2.zip"), "rb").read() == b"x" * 100 + bytes(4900) + b"y"
    # Shrinking what was streamed cannot be done: the version fails, and every close says so.
    fd = os.open(mount.p("models", model, "v3.zip"), os.O_WRONLY | os.O_CREAT)
    os.write(fd, b"x" * 100)
    assert errno_of(os.ftruncate, fd, 10) == errno.EINVAL
    assert errno_of(os.close, fd) == errno.EINVAL  # close() reports the failed upload too
    assert xattrs(mount.p("models", model, "v3.zip"))["user.modelfs.status"] == "failed"
    assert errno_of(lambda: open(mount.p("models", model, "v3.zip"), "rb").read()) == errno.EIO
    assert mount.store.multipart_uploads(model + "/") == []


def test_reading_an_uploading_version_is_refused(mount, name):
    model = name()
    sh("mkdir", mount.p("models", model))
    target = mount.p("models", model, "v1.pt")
    with open(target, "wb") as f:
        f.write(b"a" * MiB)
        f.flush()
        assert xattrs(target)["user.modelfs.status"] == "uploading"
        assert errno_of(os.open, target, os.O_RDONLY) == errno.EAGAIN
    assert xattrs(target)["user.modelfs.status"] == "ready"
    assert open(target, "rb").read() == b"a" * MiB


def test_shell_redirection_and_python_copy(mount, name, tmp_path):
    model = name()
    sh("mkdir", mount.p("models", model))
    src = make_file(tmp_path / "w.ckpt", 9 * MiB + 3)
    sh("bash", "-c", f'cat "{src}" > "{mount.p("models", model, "v1.ckpt")}"')
    import shutil
    shutil.copyfile(src, mount.p("models", model, "v2.ckpt"))
    for v in ("v1.ckpt", "v2.ckpt"):
        assert sha256_file(mount.p("models", model, v)) == sha256_file(src)
    assert open(mount.p("models", model, ".next")).read() == "v3\n"


def test_chinese_and_space_names(mount, name, tmp_path):
    model = name("千问-7B 中文 +%#&")
    src = make_file(tmp_path / "a.zip", 2 * MiB)
    sh("mkdir", mount.p("models", model))
    sh("cp", str(src), mount.p("models", model, "v1 最终版.zip"))
    assert sorted(os.listdir(mount.p("models", model))) == ["v1 最终版", "v1 最终版.zip"]
    assert sha256_file(mount.p("models", model, "v1 最终版.zip")) == sha256_file(src)
    assert f"{model}/v1 最终版.zip" in mount.store.keys(model)


def test_zipfile_lists_and_extracts_one_member(mount, name, tmp_path):
    model = name()
    src = tmp_path / "bundle.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_STORED) as z:
        for i in range(20):
            z.writestr(f"layer{i}.bin", os.urandom(MiB))
        z.writestr("config.json", json.dumps({"hidden": 768}))
    sh("mkdir", mount.p("models", model))
    sh("cp", str(src), mount.p("models", model, "v1.zip"))
    with zipfile.ZipFile(mount.p("models", model, "v1.zip")) as z:
        assert len(z.namelist()) == 21
        assert json.loads(z.read("config.json")) == {"hidden": 768}
        with zipfile.ZipFile(src) as local:
            assert z.read("layer7.bin") == local.read("layer7.bin")


def test_safetensors_reads_one_tensor_of_a_large_file(mount, name, tmp_path):
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save_file
    from safetensors import safe_open
    model = name()
    rng = np.random.default_rng(1)
    tensors = {f"layer{i}.weight": rng.standard_normal((1024, 1024), dtype=np.float32) for i in range(28)}  # 112 MiB
    src = tmp_path / "model.safetensors"
    save_file(tensors, str(src))
    sh("mkdir", mount.p("models", model))
    sh("cp", str(src), mount.p("models", model, "v1.safetensors"))
    before = mount.stats()["s3.bytes_fetched"]
    with safe_open(mount.p("models", model, "v1.safetensors"), framework="numpy") as f:
        assert len(list(f.keys())) == 28
        t = f.get_tensor("layer13.weight")
    assert np.array_equal(t, tensors["layer13.weight"])
    # mmap reads what it needs, not the whole file (the kernel's readahead adds a little).
    assert mount.stats()["s3.bytes_fetched"] - before < os.path.getsize(src) // 2


def test_eight_readers_fetch_the_version_once(mount, name, tmp_path):
    model = name()
    size = 64 * MiB
    src = make_file(tmp_path / "w.pth", size, seed=3)
    sh("mkdir", mount.p("models", model))
    sh("cp", str(src), mount.p("models", model, "v1.pth"))
    before = mount.stats()["s3.bytes_fetched"]
    target = mount.p("models", model, "v1.pth")
    procs = [subprocess.Popen(["sha256sum", target], stdout=subprocess.PIPE, text=True) for _ in range(8)]
    sums = {p.communicate(timeout=600)[0].split()[0] for p in procs}
    assert sums == {sha256_file(src)}
    fetched = mount.stats()["s3.bytes_fetched"] - before
    # On the local store the kernel reads the object's file itself (passthrough): nothing to count.
    assert (mount.store.kind == "local" or size <= fetched) and fetched <= 1.1 * size, fetched


def test_the_local_store_is_read_straight_from_its_files(tmp_path, name, mounts):
    store = Store("local", str(tmp_path / "data"), None)
    # The daemon's path (with passthrough the kernel reads the file: test_passthrough.py).
    m = mounts(store, "--passthrough", "off", path=tmp_path / "m")
    model = name()
    size = 24 * MiB + 5
    src = make_file(tmp_path / "w.pth", size, seed=5)
    sh("mkdir", m.p("models", model))
    sh("cp", str(src), m.p("models", model, "v1.pth"))
    assert sha256_file(m.p("models", model, "v1.pth")) == sha256_file(src)
    with open(m.p("models", model, "v1.pth"), "rb") as f:
        assert os.pread(f.fileno(), 100, size - 50) == open(src, "rb").read()[-50:]
    stats = m.stats()
    # Served from the object's file (spliced), never copied into the block cache.
    assert stats["cache.bytes"] == 0
    assert size <= stats["s3.bytes_fetched"] <= 1.1 * size


def test_datasets_copy_in_with_records(mount, tmp_path, name):
    ds = name("qa")
    src = tmp_path / "qa.jsonl"
    src.write_text("".join(json.dumps({"q": i}) + "\n" for i in range(999)) + '{"q": 999}')
    sh("cp", str(src), mount.p("datasets", ds + ".jsonl"))
    a = xattrs(mount.p("datasets", ds + ".jsonl"))
    assert a["user.modelfs.status"] == "ready" and a["user.modelfs.records"] == "1000"
    assert sha256_file(mount.p("datasets", ds + ".jsonl")) == sha256_file(src)
    assert errno_of(os.open, mount.p("datasets", ds + ".exe"), os.O_WRONLY | os.O_CREAT) == errno.EINVAL


def test_unmount_with_fusermount_ends_the_process(store, mounts):
    m = mounts(store)
    sh("fusermount3", "-u", m.path)
    wait_for(lambda: process_ended(m.pid), 10, "the mount process to end after its unmount")


def test_dup_descriptors_and_rsync_inplace(mount, name, tmp_path):
    model = name()
    sh("mkdir", mount.p("models", model))
    # A duplicated descriptor: the first close after data completes the version, later closes are fine.
    fd = os.open(mount.p("models", model, "v1.pt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    dup = os.dup(fd)
    os.write(fd, b"weights")
    os.close(dup)
    os.close(fd)
    assert open(mount.p("models", model, "v1.pt"), "rb").read() == b"weights"
    assert xattrs(mount.p("models", model, "v1.pt"))["user.modelfs.status"] == "ready"
    if shutil_which("rsync"):
        src = make_file(tmp_path / "w.ckpt", 7 * MiB + 5)
        # rsync reopens the finished file to chmod it: a ready version accepts only its own mode.
        sh("rsync", "--inplace", "--chmod=F444", str(src), mount.p("models", model, "v2.ckpt"))
        assert sha256_file(mount.p("models", model, "v2.ckpt")) == sha256_file(src)


def shutil_which(cmd):
    import shutil
    return shutil.which(cmd)


def drop_page_cache():
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def test_disk_cache_serves_re_reads_beyond_the_memory_budget(s3store, name, tmp_path, mounts):
    # The disk cache is for remote object storage; the local store reads its own files.
    store = s3store
    m = mounts(store, "--cache-memory", "16", "--cache-dir", str(tmp_path / "cache"), "--cache-size", "512")
    model = name()
    size = 48 * MiB
    src = make_file(tmp_path / "w.pth", size, seed=11)
    sh("mkdir", m.p("models", model))
    sh("cp", str(src), m.p("models", model, "v1.pth"))
    assert sha256_file(m.p("models", model, "v1.pth")) == sha256_file(src)
    first = m.stats()
    assert first["s3.bytes_fetched"] >= size and first["disk_cache.bytes"] >= size
    if not drop_page_cache():
        pytest.skip("cannot drop the page cache here")
    assert sha256_file(m.p("models", model, "v1.pth")) == sha256_file(src)
    second = m.stats()
    # 48 MiB does not fit in 16 MiB of memory: the re-read came from disk, not object storage.
    assert second["s3.bytes_fetched"] == first["s3.bytes_fetched"]
    # Served from the disk copy by the daemon, or — once that copy is whole and checked — by
    # the kernel from it directly (passthrough), which no daemon counter sees.
    served = second["disk_cache.bytes_served"] - first["disk_cache.bytes_served"]
    assert served >= size or second["whole.complete"] >= 1, second


def test_refusals_say_what_posix_tools_expect_and_are_logged(store, name, tmp_path, mounts):
    """`cat` of a model is EISDIR, a path under a version ENOTDIR (the kernel answers both), a
    201-byte name ENAMETOOLONG; each refusal that reaches the mount is one line in its log with the
    operation, the path, the errno and the reason."""
    path = str(tmp_path / "m")
    log = str(tmp_path / "mount.log")
    mounts(store, "--log-file", log, path=path)
    model = name()
    d = os.path.join(path, "models", model)
    os.mkdir(d)
    sh("cp", make_file(str(tmp_path / "w.zip"), 1000), os.path.join(d, "v1.zip"))
    r = sh("cat", d, check=False)
    assert r.returncode != 0 and "Is a directory" in r.stderr, r.stderr
    assert errno_of(os.stat, os.path.join(d, "v1.zip", "inside")) == errno.ENOTDIR
    assert errno_of(os.mkdir, os.path.join(path, "models", "x" * 201)) == errno.ENAMETOOLONG
    r = sh("cp", os.path.join(d, "v1.zip"), os.path.join(d, "v2.exe"), check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    text = open(log).read()
    assert f"create models/{model}/v2.exe: Invalid argument" in text and "unsupported" in text, text
    assert "mkdir models/" + "x" * 201 + ": File name too long" in text, text


def test_a_version_deleted_under_an_open_reader_is_stale(s3store, name, tmp_path, mounts):
    """`modelfs version rm` from the CLI while the mount reads the version: the next read that
    needs object storage says ESTALE, not ENOENT."""
    path = mounts(s3store, "--cache-memory", "16", path=tmp_path / "m").path
    model = name()
    d = os.path.join(path, "models", model)
    os.mkdir(d)
    src = make_file(str(tmp_path / "w.zip"), 40 * MiB)
    sh("cp", src, os.path.join(d, "v1.zip"))
    sh("cp", src, os.path.join(d, "v2.zip"))
    fd = os.open(os.path.join(d, "v1.zip"), os.O_RDONLY)
    try:
        os.pread(fd, 4096, 0)
        s3store.run("version", "rm", model, "v1")
        assert errno_of(os.pread, fd, 1 << 20, 30 * MiB) == errno.ESTALE
    finally:
        os.close(fd)


def test_deleting_a_copy_of_a_version_leaves_the_other_loading(s3store, name, tmp_path, mounts):
    """Two versions with the same bytes (a `cp` of one) share their cached bytes, named by content:
    deleting one while the other is loaded whole leaves that load reading on, byte for byte (each
    read after the delete was ESTALE)."""
    m = mounts(s3store, path=tmp_path / "m")
    model = name()
    d = m.p("models", model)
    os.mkdir(d)
    src = make_file(str(tmp_path / "w.pth"), 64 * MiB, seed=9)
    # Both from the local file: no whole copy of them is in the cache yet, so v2's reads go
    # through its fetch, not through a copy the kernel reads directly (passthrough).
    sh("cp", src, os.path.join(d, "v1.pth"))
    sh("cp", src, os.path.join(d, "v2.pth"))
    with open(os.path.join(d, "v2.pth"), "rb") as f:
        f.read(40 * MiB)  # a long sequential run: loaded whole
        assert m.stats()["whole.fetches"] == 1
        os.remove(os.path.join(d, "v1.pth"))
        # What the kernel read ahead is dropped: the rest is read through the mount after the delete.
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        f.seek(0)
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    assert h.hexdigest() == sha256_file(src)
    assert sha256_file(os.path.join(d, "v2.pth")) == sha256_file(src)
    assert not os.path.exists(os.path.join(d, "v1.pth"))


def _read_through_a_mount(mounts, store, path, model, cache_dir, env=None):
    """Mounts, reads models/<model>/v1.pth whole, unmounts; returns (sha256, .stats)."""
    with mounts(store, "--cache-memory", "16", "--cache-dir", cache_dir, path=path, env=env) as m:
        digest = sha256_file(m.p("models", model, "v1.pth"))
        return digest, m.stats()


def test_the_disk_cache_is_reused_after_a_remount_and_never_serves_a_bad_block(s3store, name, tmp_path, mounts):
    store = s3store
    model = name()
    size = 40 * MiB
    src = make_file(tmp_path / "w.pth", size, seed=5)
    store.run("import", str(src), "--model", model, "--version", "v1", "--quiet")
    cache = str(tmp_path / "cache")
    digest, first = _read_through_a_mount(mounts, store, str(tmp_path / "m"), model, cache)
    assert digest == sha256_file(src) and first["s3.bytes_fetched"] >= size
    # A remount (or a restart of the node) reads it from the cache: under 10% from object storage.
    digest, second = _read_through_a_mount(mounts, store, str(tmp_path / "m"), model, cache)
    assert digest == sha256_file(src)
    assert second["s3.bytes_fetched"] < size // 10, second
    # A byte flipped in the cached copy: that block is dropped and fetched again, never served.
    data = [os.path.join(cache, "objects", f) for f in os.listdir(os.path.join(cache, "objects")) if f.endswith(".data")]
    assert len(data) == 1
    with open(data[0], "r+b") as f:
        f.seek(7 * MiB + 3)
        b = f.read(1)
        f.seek(7 * MiB + 3)
        f.write(bytes([b[0] ^ 0xFF]))
    digest, third = _read_through_a_mount(mounts, store, str(tmp_path / "m"), model, cache)
    assert digest == sha256_file(src)
    assert third["disk_cache.blocks_dropped"] >= 1 and 0 < third["s3.bytes_fetched"] < size // 10, third


def test_two_catalogs_sharing_a_cache_dir_each_read_their_own_bytes(s3store, name, tmp_path, mounts):
    """Two stores (own data dir, own bucket) with the same model and version names and different
    bytes, one node-wide cache dir: a re-read of each returns its own weights."""
    first = s3store
    second = Store("s3", str(tmp_path / "data2"), first.endpoint)  # a bucket of its own
    second_env = second.env()
    model = name()
    a = make_file(tmp_path / "a.pth", 12 * MiB, seed=1)
    b = make_file(tmp_path / "b.pth", 12 * MiB, seed=2)
    first.run("import", str(a), "--model", model, "--version", "v1", "--quiet")
    second.run("import", str(b), "--model", model, "--version", "v1", "--quiet", env=second_env)
    cache = str(tmp_path / "cache")
    for _ in range(2):
        assert _read_through_a_mount(mounts, first, str(tmp_path / "m1"), model, cache)[0] == sha256_file(a)
        assert _read_through_a_mount(mounts, second, str(tmp_path / "m2"), model, cache, env=second_env)[0] == sha256_file(b)


def _cache_name(sha256, size):
    """The name the disk cache gives an object's files (ObjectIdentity.id, in hex)."""
    digest = hashlib.sha256(f"modelfs-object\0{sha256}\0{size}".encode()).digest()
    return format(int.from_bytes(digest[:8], "big") & ~(1 << 63), "x")


def test_a_cached_block_moved_under_another_versions_name_is_refused(s3store, name, tmp_path, mounts):
    """The attack: the cache files of version A moved under version B's name (same size). A read
    of B through a new mount returns B's bytes (sha256sum), the moved blocks dropped and fetched again."""
    store = s3store
    model = name()
    size = 6 * MiB
    a = make_file(tmp_path / "a.pth", size, seed=21)
    b = make_file(tmp_path / "b.pth", size, seed=22)
    store.run("import", str(a), "--model", model, "--version", "v1", "--quiet")
    store.run("import", str(b), "--model", model, "--version", "v2", "--quiet")
    cache = str(tmp_path / "cache")
    objects = os.path.join(cache, "objects")
    digest, _ = _read_through_a_mount(mounts, store, str(tmp_path / "m"), model, cache)
    assert digest == sha256_file(a)
    a_name, b_name = _cache_name(sha256_file(a), size), _cache_name(sha256_file(b), size)
    assert sorted(os.listdir(objects)) == [a_name + ".data", a_name + ".idx"]
    for ext in (".data", ".idx"):
        os.rename(os.path.join(objects, a_name + ext), os.path.join(objects, b_name + ext))
    m = mounts(store, "--cache-memory", "16", "--cache-dir", cache, path=tmp_path / "m")
    out = sh("sha256sum", m.p("models", model, "v2.pth")).stdout.split()[0]
    assert out == sha256_file(b)
    stats = m.stats()
    assert stats["disk_cache.blocks_dropped"] >= 1 and stats["s3.bytes_fetched"] >= size, stats


def _access(path, mode):
    return subprocess.run(["python3", "-c", "import os, sys; print(os.access(sys.argv[1], int(sys.argv[2])))", path, str(mode)],
                          capture_output=True, text=True, check=True).stdout.strip() == "True"


def test_access_says_no_to_writes_where_nothing_is_written(mount, name, tmp_path):
    """`test -w` and os.access(W_OK), as root on a mount without --allow-other (the mount answers
    access): no on a ready version, its archive view and members, .stats and the layout; yes on a
    model directory and models/, where writes go. (--allow-other: test_sharing.py.)"""
    model = name()
    d = mount.p("models", model)
    os.mkdir(d)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("sub/notes.txt", "hi")
    sh("cp", str(tmp_path / "a.zip"), os.path.join(d, "v1.zip"))
    for p in ("v1.zip", "v1", "v1/config.json", "v1/sub", "v1/sub/notes.txt"):
        path = os.path.join(d, p)
        assert not _access(path, os.W_OK), p
        assert _access(path, os.R_OK), p
        assert sh("test", "-w", path, check=False).returncode == 1, p
    for path in (mount.p(".stats"), mount.path, mount.p("jobs")):
        assert not _access(path, os.W_OK), path
    for path in (d, mount.p("models"), mount.p("datasets")):
        assert _access(path, os.W_OK) and sh("test", "-w", path, check=False).returncode == 0, path
    assert not _access(os.path.join(d, "v1.zip"), os.X_OK) and _access(os.path.join(d, "v1"), os.X_OK)
