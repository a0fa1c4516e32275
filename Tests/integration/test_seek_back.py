"""Writers that seek back into bytes already sent to object storage, through a real mount: the
file goes on in the spool, which kept what was sent, so nothing is read back; the version is
byte-identical to the file written locally, and no multipart upload is left (docs/STORE.md,
"The states of an upload")."""
import hashlib
import os
import subprocess

from conftest import make_file, sh

MiB = 1 << 20


def mount_log(store):
    try:
        with open(os.path.join(store.data_dir, "mount.log"), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def test_dd_seeking_back_into_sent_parts_reads_nothing_back(mount, store, name, tmp_path):
    """One descriptor, three `dd`s: 20 MiB (two parts sent), a 4 KiB patch at 1 MiB, then the
    rest at 20 MiB. The version's sha256 is the local file's."""
    model = name("seekback")
    os.mkdir(mount.p("models", model))
    head, tail = make_file(tmp_path / "head", 20 * MiB, seed=1), make_file(tmp_path / "tail", 3 * MiB, seed=2)
    patch = tmp_path / "patch"
    patch.write_bytes(b"\x07" * 4096)
    dst = mount.p("models", model, "v1.pt")
    script = (f'exec 3> "{dst}"\n'
              f'dd if="{head}" bs=1M status=none >&3\n'
              f'dd if="{patch}" bs=4096 seek=256 status=none >&3\n'
              f'dd if="{tail}" bs=1M seek=20 status=none >&3\n'
              'exec 3>&-\n')
    subprocess.run(["bash", "-c", script], check=True, timeout=300)
    expected = bytearray(open(head, "rb").read())
    expected[MiB:MiB + 4096] = b"\x07" * 4096
    expected += open(tail, "rb").read()
    digest = hashlib.sha256(expected).hexdigest()
    assert sh("sha256sum", dst).stdout.split()[0] == digest
    assert store.versions(model)["v1"]["sha256"] == digest
    assert store.versions(model)["v1"]["status"] == "ready"
    assert store.multipart_uploads(model + "/") == [], "no multipart upload left"
    log = mount_log(store)
    if store.kind == "s3":
        assert "kept while sent" in log, log[-2000:]
    assert "read back" not in log and "bytes back into" not in log, "no round trip through object storage"


def test_a_file_sized_first_is_spooled_before_its_first_part(mount, store, name, tmp_path):
    """`ftruncate` to 100 MiB before writing (as `safetensors` does), then writes at both ends:
    spooled at once, nothing stored before the last close."""
    model = name("sizedfirst")
    os.mkdir(mount.p("models", model))
    dst = mount.p("models", model, "v1.safetensors")
    size = 100 * MiB
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"h" * 1000)
        os.ftruncate(fd, size)
        assert os.fstat(fd).st_size == size
        if store.kind == "s3":
            assert store.keys(model + "/") == [] and store.multipart_uploads(model + "/") == [], "nothing sent yet"
        os.pwrite(fd, b"t" * 10, size - 10)
    finally:
        os.close(fd)
    expected = b"h" * 1000 + bytes(size - 1010) + b"t" * 10
    assert store.versions(model)["v1"]["sha256"] == hashlib.sha256(expected).hexdigest()
    assert sh("sha256sum", dst).stdout.split()[0] == hashlib.sha256(expected).hexdigest()
    assert store.multipart_uploads(model + "/") == []
