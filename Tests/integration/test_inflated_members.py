"""Compressed archive members (a deflated zip's, a .tar.gz's) inflated once into the mount's disk
cache and read from there, through a real mount: every member byte-identical, a loader reading
tensors in the model's order (not the file's) inflates each shard once, a remount reuses the
files, and a damaged member is EIO with nothing kept (libdeflate's whole-buffer inflate on the
local store, zlib's streaming one from S3). On the local store and s3api; what one member's read
fetches on every S3 implementation."""
import os
import shutil
import subprocess
import tarfile
import zipfile
import zlib

import pytest

from helpers import sh, sha256_file

MiB = 1 << 20


def shards_dir(root):
    """Three safetensors shards of 2-3 MiB (members of 1 MiB and more go to files) and a config."""
    import numpy as np
    from safetensors.numpy import save_file
    root.mkdir()
    (root / "config.json").write_text('{"model_type": "test"}\n')
    rng = np.random.default_rng(11)
    for s in range(3):
        save_file({f"layers.{s * 4 + i:02d}.weight": rng.standard_normal(128 * 1024 + 4096 * i).astype(np.float32)
                   for i in range(4)} | {f"layers.{s * 4:02d}.bias": np.arange(1000, dtype=np.int64)},
                  str(root / f"model-{s + 1:05d}-of-00003.safetensors"))
    return root


def members(src):
    return sorted(p.name for p in src.iterdir())


@pytest.fixture
def packed(mount, name, tmp_path):
    src = shards_dir(tmp_path / "hf")
    m = name()
    os.mkdir(mount.p("models", m))
    with zipfile.ZipFile(tmp_path / "m.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for rel in members(src):
            z.write(src / rel, rel)
    with tarfile.open(tmp_path / "m.tar.gz", "w:gz") as t:
        for rel in members(src):
            t.add(src / rel, rel)
    sh("cp", str(tmp_path / "m.zip"), mount.p("models", m, "v1.zip"))
    sh("cp", str(tmp_path / "m.tar.gz"), mount.p("models", m, "v2.tar.gz"))
    return m, src


def shard_bytes(src):
    return sum(os.path.getsize(src / r) for r in members(src) if r.endswith(".safetensors"))


def member_files(data_dir):
    """The inflated members in the disk cache: complete ones (their `.idx` is a recorded CRC-32) and partial ones."""
    d = os.path.join(data_dir, "cache", "objects")
    out = []
    for f in os.listdir(d) if os.path.isdir(d) else []:
        if ".partial-" in f:
            out.append(f)
        elif f.endswith(".data"):
            idx = os.path.join(d, f[:-5] + ".idx")
            if os.path.exists(idx) and open(idx, "rb").read().startswith(b"modelfs-crc32"):
                out.append(f)
    return out


def test_every_member_through_both_views_is_byte_identical(mount, packed):
    m, src = packed
    for view in ["v1", "v2"]:
        for rel in members(src):
            assert sha256_file(mount.p("models", m, view, rel)) == sha256_file(src / rel), (view, rel)
    # Each shard of each view was inflated once into a file (the .tar.gz's from its access point).
    assert mount.stats()["archives.bytes_inflated"] >= 2 * shard_bytes(src)
    assert len(member_files(mount.store.data_dir)) == 6


def test_a_loader_reading_in_the_models_order_inflates_each_shard_once(mount, packed):
    from safetensors import safe_open
    from safetensors.numpy import load_file
    m, src = packed
    before = mount.stats()["archives.bytes_inflated"]
    for rel in reversed([r for r in members(src) if r.endswith(".safetensors")]):
        want = load_file(str(src / rel))
        with safe_open(mount.p("models", m, "v1", rel), framework="numpy") as f:
            for k in sorted(f.keys(), reverse=True):
                assert (f.get_tensor(k) == want[k]).all(), (rel, k)
    assert mount.stats()["archives.bytes_inflated"] - before == shard_bytes(src)
    # On the local store the compressed bytes are a local file: libdeflate inflated each shard in
    # one call once the loader read past its header (from S3 they stream, unless a whole copy is local).
    if mount.store.kind == "local":
        assert mount.stats()["archives.whole_inflates"] == len([r for r in members(src) if r.endswith(".safetensors")])


def test_a_remount_reads_the_inflated_files_again(mount, packed):
    m, src = packed
    shard = "model-00002-of-00003.safetensors"
    assert sha256_file(mount.p("models", m, "v1", shard)) == sha256_file(src / shard)
    mount.remount()
    assert sha256_file(mount.p("models", m, "v1", shard)) == sha256_file(src / shard)
    s = mount.stats()
    assert s["archives.files_reused"] == 1 and s["archives.bytes_inflated"] == 0


def test_a_damaged_member_is_eio_and_no_file_is_kept(mount, name, tmp_path):
    src = shards_dir(tmp_path / "hf")
    rel = "model-00001-of-00003.safetensors"
    with zipfile.ZipFile(tmp_path / "bad.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(src / rel, rel)
    with zipfile.ZipFile(tmp_path / "bad.zip") as z:
        info = z.getinfo(rel)
    data = bytearray((tmp_path / "bad.zip").read_bytes())
    # A byte in the middle of the member's deflate data, flipped: bad deflate or a bad CRC-32.
    data[info.header_offset + 30 + len(rel) + info.compress_size // 2] ^= 0x40
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    m = name()
    os.mkdir(mount.p("models", m))
    sh("cp", str(tmp_path / "bad.zip"), mount.p("models", m, "v1.zip"))
    p = subprocess.run(["sha256sum", mount.p("models", m, "v1", rel)], capture_output=True, text=True)
    assert p.returncode != 0 and "Input/output error" in p.stderr, p
    assert member_files(mount.store.data_dir) == []
    # It stays damaged for the next reader, and the view says why.
    p = subprocess.run(["cat", mount.p("models", m, "v1", rel)], capture_output=True)
    assert p.returncode != 0
    err = subprocess.run(["getfattr", "--only-values", "-n", "user.modelfs.archive_error", mount.p("models", m, "v1")],
                         capture_output=True, text=True).stdout
    assert rel in err, err


def gz_compressed_end(tgz, end):
    """Where in tgz (64 KiB steps) the first `end` bytes of its inflated stream have come out."""
    data, d, out = open(tgz, "rb").read(), zlib.decompressobj(wbits=31), 0
    for at in range(0, len(data), 64 << 10):
        out += len(d.decompress(data[at:at + (64 << 10)]))
        if out >= end:
            return min(at + (64 << 10), len(data))
    raise AssertionError("the stream ends first")


@pytest.mark.every_s3
@pytest.mark.parametrize("kind,cache", [("tar.gz", "disk"), ("tar.gz", "none"), ("zip", "disk")])
def test_one_members_read_fetches_its_compressed_bytes_about_once(store, name, tmp_path, mounts, kind, cache):
    """The run prefetcher read half again a .tar.gz member's compressed bytes past its end (1.5-1.8x
    on S3); a member's reader now prefetches no further than its compressed end. A member after
    the first starts from the access point the index keeps just before it."""
    src = tmp_path / "src"
    src.mkdir()
    for rel, mib in (("a.bin", 16), ("b.bin", 8)):
        (src / rel).write_bytes(os.urandom(mib * MiB))
    arc = tmp_path / f"m.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as z:
            for rel in ("a.bin", "b.bin"):
                z.write(src / rel, rel)
        with zipfile.ZipFile(arc) as z:
            span = z.getinfo("b.bin").compress_size
            both = span + z.getinfo("a.bin").compress_size
    else:
        subprocess.run(["tar", "czf", str(arc), "-C", str(src), "a.bin", "b.bin"], check=True)
        with tarfile.open(arc, "r:gz") as t:
            b = t.getmember("b.bin").offset_data
            both = gz_compressed_end(arc, b + 8 * MiB)
            span = both - gz_compressed_end(arc, b)
    m = name()
    store.run("import", str(arc), "--model", m, "--version", "v1")
    with mounts(store) as mnt:
        assert sorted(os.listdir(mnt.p("models", m, "v1"))) == ["a.bin", "b.bin"]  # the index, built once
    # Cold: nothing of the archive in the disk cache the index was read through.
    shutil.rmtree(os.path.join(store.data_dir, "cache"), ignore_errors=True)
    mnt.start(*(["--cache-dir", "none"] if cache == "none" else []))
    # The second member first: it starts from the access point the index keeps just before
    # it, not from the last 8 MiB step (8 MiB more of the first member's bytes).
    assert sha256_file(mnt.p("models", m, "v1", "b.bin")) == sha256_file(src / "b.bin")
    # On the local store a deflated zip member is inflated whole by libdeflate straight from
    # the mapped object file, which counts as no fetch: there only the upper bound holds.
    whole = store.kind == "local" and kind == "zip"
    fetched = mnt.settled()
    assert (0 if whole else 0.9 * span) <= fetched <= 1.1 * span, (fetched, span)
    # Then the first: its compressed bytes, and nothing of the second again.
    assert sha256_file(mnt.p("models", m, "v1", "a.bin")) == sha256_file(src / "a.bin")
    fetched = mnt.settled()
    assert (0 if whole else 0.95 * both) <= fetched <= 1.1 * both, (fetched, both)
    if whole:
        stats = mnt.stats()
        assert stats["archives.whole_inflates"] == 2, stats
