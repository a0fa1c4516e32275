"""A file being written, seen through a real mount (docs/STORE.md, "The states of an upload"):
`stat` and `getfattr` show the bytes written so far, read from the upload's one state while the
writer writes; a writer that seeks back into bytes already sent goes on in the spool, which kept
what was sent, so nothing is read back from object storage and the version is what was written."""
import hashlib
import os
import subprocess

import pytest

from helpers import make_file, sh, sha256_file, wait_for, xattr

MiB = 1 << 20


@pytest.mark.every_s3
def test_stat_follows_dd_while_it_writes(store, name, mounts, tmp_path):
    """`dd` writes from a pipe the test feeds 4 MiB at a time: after each step (dd blocked on the
    pipe) `stat` and `getfattr` say exactly what it wrote, `uploading`, writable; at the end the
    version is the source's bytes."""
    m = mounts(store)
    model = name("statwrite")
    os.mkdir(m.p("models", model))
    dst = m.p("models", model, "v1.pt")
    src = make_file(tmp_path / "src", 24 * MiB, seed=3)
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    dd = subprocess.Popen(["dd", f"if={fifo}", f"of={dst}", "bs=1M", "iflag=fullblock", "status=none"])
    try:
        with open(fifo, "wb", buffering=0) as feed, open(src, "rb") as source:
            for step in range(1, 7):
                feed.write(source.read(4 * MiB))
                want = step * 4 * MiB
                wait_for(lambda: os.stat(dst).st_size >= want, timeout=120, what=f"stat to show {want} bytes")
                st = os.stat(dst)
                assert st.st_size == want, "dd waits on the pipe: the size is what it wrote, no more"
                assert st.st_mode & 0o200, "a file being written shows its owner's write bit"
                assert xattr(dst, "status") == "uploading"
                assert xattr(dst, "size") == str(want), "getfattr reads the same state as stat"
    finally:
        dd.wait(timeout=300)
    assert dd.returncode == 0
    digest = sha256_file(src)
    assert store.versions(model)["v1"]["status"] == "ready"
    assert store.versions(model)["v1"]["sha256"] == digest
    assert sh("sha256sum", dst).stdout.split()[0] == digest
    assert os.stat(dst).st_size == 24 * MiB


@pytest.mark.every_s3
def test_a_python_writer_seeking_back_mid_write_stores_what_it_wrote(store, name, mounts):
    """Python writes 20 MiB (parts sent), seeks back to patch 4 KiB at 1 MiB, seeks to the end
    and writes 3 MiB more: the size never drops meanwhile, the version's sha256 is the bytes as
    written, no multipart upload is left, and (on S3) nothing was read back."""
    m = mounts(store)
    model = name("seekback")
    os.mkdir(m.p("models", model))
    dst = m.p("models", model, "v1.pt")
    head = hashlib.sha256(b"head").digest() * (20 * MiB // 32)
    tail = hashlib.sha256(b"tail").digest() * (3 * MiB // 32)
    with open(dst, "wb", buffering=0) as f:
        f.write(head)
        if store.kind == "s3":
            wait_for(lambda: store.multipart_uploads(model + "/") != [], timeout=120, what="the multipart upload to start")
        f.seek(MiB)
        f.write(b"\x07" * 4096)
        assert os.stat(dst).st_size == len(head), "the move to the spool keeps the size"
        f.seek(0, os.SEEK_END)
        f.write(tail)
        assert os.fstat(f.fileno()).st_size == len(head) + len(tail)
    expected = bytearray(head)
    expected[MiB:MiB + 4096] = b"\x07" * 4096
    expected += tail
    digest = hashlib.sha256(expected).hexdigest()
    assert store.versions(model)["v1"]["status"] == "ready"
    assert store.versions(model)["v1"]["sha256"] == digest
    assert sh("sha256sum", dst).stdout.split()[0] == digest
    assert store.multipart_uploads(model + "/") == [], "no multipart upload left"
    log = m.log()
    if store.kind == "s3":
        assert "kept while sent" in log, log[-2000:]
    assert "bytes back into" not in log, "no round trip through object storage"


def test_a_file_sized_first_is_spooled_before_its_first_part(store, name, mounts):
    """`ftruncate` to 100 MiB before writing (as `safetensors` does), then writes at both ends:
    spooled at once, nothing stored before the last close."""
    m = mounts(store)
    model = name("sizedfirst")
    os.mkdir(m.p("models", model))
    dst = m.p("models", model, "v1.safetensors")
    size = 100 * MiB
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"h" * 1000)
        os.ftruncate(fd, size)
        assert os.fstat(fd).st_size == size
        assert store.keys(model + "/") == [] and store.multipart_uploads(model + "/") == [], "nothing sent yet"
        os.pwrite(fd, b"t" * 10, size - 10)
    finally:
        os.close(fd)
    expected = hashlib.sha256(b"h" * 1000 + bytes(size - 1010) + b"t" * 10).hexdigest()
    assert store.versions(model)["v1"]["sha256"] == expected
    assert sh("sha256sum", dst).stdout.split()[0] == expected
    assert store.multipart_uploads(model + "/") == []
