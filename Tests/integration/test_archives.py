"""Archives as directories: `models/X/v1/` beside `v1.zip` (and `.tar`, `.tar.gz`), read through a real
mount with the tools training code uses: os.walk, open, mmap, safetensors.safe_open, sha256sum,
8 readers at once. On every store (local directory, s3api, moto)."""
import errno
import io
import json
import mmap
import os
import random
import subprocess
import tarfile
import zipfile

import pytest

from helpers import sh, sha256_file, xattr


def hf_model_dir(root):
    """A small Hugging Face-style model directory: config, tokenizer, two safetensors shards, a nested folder."""
    import numpy as np
    from safetensors.numpy import save_file
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 64, "num_layers": 2}))
    (root / "tokenizer.json").write_text(json.dumps({"vocab": {f"tok{i}": i for i in range(3000)}}))
    rng = np.random.default_rng(7)
    save_file({"embed.weight": rng.standard_normal((512, 64)).astype(np.float32),
               "layer0.weight": rng.standard_normal((64, 64)).astype(np.float32)}, str(root / "model-00001-of-00002.safetensors"))
    save_file({"layer1.weight": rng.standard_normal((64, 64)).astype(np.float16),
               "head.bias": np.arange(64, dtype=np.int64)}, str(root / "model-00002-of-00002.safetensors"))
    (root / "nested" / "folder").mkdir(parents=True)
    (root / "nested" / "folder" / "readme.txt").write_text("nested member\n" * 500)
    return root


def files_of(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = p
    return out


def pack_zip(src, dest):
    """Shards stored (a byte range of the object), everything else deflated."""
    with zipfile.ZipFile(dest, "w") as z:
        for rel, p in sorted(files_of(src).items()):
            z.write(p, rel, compress_type=zipfile.ZIP_STORED if rel.endswith(".safetensors") else zipfile.ZIP_DEFLATED)
    return dest


def pack_tar(src, dest, mode="w"):
    with tarfile.open(dest, mode) as t:
        for rel, p in sorted(files_of(src).items()):
            t.add(p, rel)
    return dest


@pytest.fixture
def model(mount, name, tmp_path):
    src = hf_model_dir(tmp_path / "hf")
    m = name()
    os.mkdir(mount.p("models", m))
    sh("cp", str(pack_zip(src, tmp_path / "m.zip")), mount.p("models", m, "v1.zip"))
    sh("cp", str(pack_tar(src, tmp_path / "m.tar")), mount.p("models", m, "v2.tar"))
    sh("cp", str(pack_tar(src, tmp_path / "m.tar.gz", "w:gz")), mount.p("models", m, "v3.tar.gz"))
    return m, src


def test_the_view_lists_the_archive_and_every_member_is_byte_identical(mount, model):
    m, src = model
    assert sorted(os.listdir(mount.p("models", m))) == ["v1", "v1.zip", "v2", "v2.tar", "v3", "v3.tar.gz"]
    want = {rel: os.path.getsize(p) for rel, p in files_of(src).items()}
    for view in ["v1", "v2", "v3"]:
        root = mount.p("models", m, view)
        got = {rel: os.path.getsize(p) for rel, p in files_of(root).items()}
        assert got == want, view
        ls = sh("ls", "-lR", root).stdout
        assert "nested" in ls and "readme.txt" in ls
        for rel, p in files_of(src).items():
            assert sh("sha256sum", os.path.join(root, rel)).stdout.split()[0] == sha256_file(p), f"{view}/{rel}"
        assert os.stat(root).st_mode & 0o777 == 0o555


def test_safetensors_and_mmap_on_members(mount, model):
    import numpy as np
    from safetensors import safe_open
    m, src = model
    for view in ["v1", "v2", "v3"]:
        member = mount.p("models", m, view, "model-00001-of-00002.safetensors")
        with safe_open(member, framework="numpy") as f, safe_open(str(src / "model-00001-of-00002.safetensors"), framework="numpy") as g:
            assert sorted(f.keys()) == ["embed.weight", "layer0.weight"]
            assert np.array_equal(f.get_tensor("embed.weight"), g.get_tensor("embed.weight"))
        with open(member, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            assert mm[:] == (src / "model-00001-of-00002.safetensors").read_bytes()
        # A deflated member mapped too.
        with open(mount.p("models", m, view, "tokenizer.json"), "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            assert json.loads(mm[:])["vocab"]["tok2999"] == 2999


def test_random_reads_of_a_deflated_member(mount, model):
    m, src = model
    want = (src / "tokenizer.json").read_bytes()
    path = mount.p("models", m, "v1", "tokenizer.json")
    assert subprocess.run(["getfattr", "--only-values", "-n", "user.modelfs.compression", path],
                          capture_output=True, text=True).stdout == "deflated"
    rng = random.Random(3)
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(300):
            off, n = rng.randrange(len(want)), rng.randrange(1, 70000)
            assert os.pread(fd, n, off) == want[off:off + n], (off, n)
    finally:
        os.close(fd)


def test_eight_processes_read_one_member_at_once(mount, model):
    m, src = model
    member = mount.p("models", m, "v1", "model-00002-of-00002.safetensors")
    before = mount.stats()["s3.bytes_fetched"]
    procs = [subprocess.Popen(["sha256sum", member], stdout=subprocess.PIPE, text=True) for _ in range(8)]
    sums = {p.communicate(timeout=120)[0].split()[0] for p in procs}
    assert sums == {sha256_file(src / "model-00002-of-00002.safetensors")}
    if mount.store.kind != "local":
        # Fetched once, whoever asked first (the kernel's readahead and 64 KiB blocks add a little).
        size = os.path.getsize(src / "model-00002-of-00002.safetensors")
        assert mount.stats()["s3.bytes_fetched"] - before <= size + (1 << 20)


def test_the_inside_is_read_only(mount, model):
    m, _ = model
    view = mount.p("models", m, "v1")
    for op in [lambda: open(os.path.join(view, "new.txt"), "w"),
               lambda: os.mkdir(os.path.join(view, "d")),
               lambda: os.unlink(os.path.join(view, "config.json")),
               lambda: os.rename(os.path.join(view, "config.json"), os.path.join(view, "c.json")),
               lambda: open(os.path.join(view, "config.json"), "r+b"),
               lambda: os.rmdir(view)]:
        with pytest.raises(OSError) as e:
            op()
        assert e.value.errno == errno.EROFS, e.value
    assert "config.json" in os.listdir(view)


def test_the_view_follows_the_version(mount, model):
    m, _ = model
    sh("mv", mount.p("models", m, "v1.zip"), mount.p("models", m, "v7.zip"))
    assert sorted(os.listdir(mount.p("models", m))) == ["v2", "v2.tar", "v3", "v3.tar.gz", "v7", "v7.zip"]
    assert json.load(open(mount.p("models", m, "v7", "config.json")))["model_type"] == "bert"
    sh("rm", mount.p("models", m, "v7.zip"))
    assert not os.path.exists(mount.p("models", m, "v7"))
    assert sorted(os.listdir(mount.p("models", m))) == ["v2", "v2.tar", "v3", "v3.tar.gz"]


def test_hostile_archives_stay_files_and_say_why(mount, name, tmp_path):
    m = name()
    os.mkdir(mount.p("models", m))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.txt", "x")
        z.writestr("/etc/passwd", "y")
        z.writestr("ok.txt", "fine")
    (tmp_path / "h.zip").write_bytes(buf.getvalue())
    (tmp_path / "cut.zip").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    sh("cp", str(tmp_path / "h.zip"), mount.p("models", m, "v1.zip"))
    sh("cp", str(tmp_path / "cut.zip"), mount.p("models", m, "v2.zip"))
    assert os.listdir(mount.p("models", m, "v1")) == ["ok.txt"]
    why = sh("getfattr", "--only-values", "-n", "user.modelfs.archive_error", mount.p("models", m, "v1")).stdout
    assert "../evil.txt: leaves the archive" in why and "/etc/passwd: an absolute path" in why
    assert os.listdir(mount.p("models", m, "v2")) == []
    why = sh("getfattr", "--only-values", "-n", "user.modelfs.archive_error", mount.p("models", m, "v2")).stdout
    assert "end of central directory" in why
    assert "end of central directory" in sh("getfattr", "--only-values", "-n", "user.modelfs.archive_error",
                                            mount.p("models", m, "v2.zip")).stdout, "on the version's file too"
    assert sha256_file(mount.p("models", m, "v2.zip")) == sha256_file(tmp_path / "cut.zip"), "still a readable file"


def test_a_dataset_packed_as_a_tar_is_a_directory_too(mount, name, tmp_path):
    d = name()
    src = tmp_path / "dataset-src"
    src.mkdir()
    (src / "train.jsonl").write_text("".join(json.dumps({"x": i}) + "\n" for i in range(1000)))
    (src / "test.jsonl").write_text("".join(json.dumps({"x": -i}) + "\n" for i in range(100)))
    sh("cp", str(pack_tar(src, tmp_path / "d.tar")), mount.p("datasets", f"{d}.tar"))
    assert sorted(os.listdir(mount.p("datasets", d))) == ["test.jsonl", "train.jsonl"]
    assert sha256_file(mount.p("datasets", d, "train.jsonl")) == sha256_file(src / "train.jsonl")


def test_safetensors_headers_as_xattrs_on_files_and_members(mount, model, name, tmp_path):
    m, src = model
    shard = src / "model-00001-of-00002.safetensors"
    sh("cp", str(shard), mount.p("models", m, "v4.safetensors"))
    for path in [mount.p("models", m, "v4.safetensors"), mount.p("models", m, "v1", shard.name), mount.p("models", m, "v2", shard.name),
                 mount.p("models", m, "v3", shard.name)]:
        assert xattr(path, "tensors") == "2", path
        assert xattr(path, "parameters") == str(512 * 64 + 64 * 64)
        assert xattr(path, "dtypes") == "F32"
        header = json.loads(xattr(path, "safetensors_header"))
        assert header["embed.weight"]["shape"] == [512, 64]
    # Not a safetensors file under that name: the reason, and the bytes still read.
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 64)
    sh("cp", str(tmp_path / "bad.safetensors"), mount.p("models", m, "v5.safetensors"))
    assert "not a safetensors file" in xattr(mount.p("models", m, "v5.safetensors"), "safetensors_error")
    assert open(mount.p("models", m, "v5.safetensors"), "rb").read() == b"\xff" * 64
