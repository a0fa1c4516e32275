"""Whole-file loads through a real mount on S3: a loader's reads fetch the version whole, once,
into the disk cache and are served from there; after a remount the copy on disk is whole at the
first open, neither fetched nor re-read; one tensor read with safe_open still fetches about that tensor.
On every S3 implementation: a fast one (RGW) lets the kernel's readahead run further ahead."""
import hashlib
import os
import subprocess

import pytest

from helpers import sh

pytestmark = pytest.mark.every_s3

MiB = 1 << 20


def tensors_file(tmp_path, count, mib):
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save_file
    rng = np.random.default_rng(21)
    tensors = {f"layer{i:02d}.weight": rng.integers(0, 2**31, size=(mib * 256, 1024), dtype=np.int32) for i in range(count)}
    src = tmp_path / "model.safetensors"
    save_file(tensors, str(src))
    return src, {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in tensors.items()}


@pytest.fixture
def model_file(tmp_path):
    return tensors_file(tmp_path, 48, 2)  # 96 MiB


def load_sums(path):
    from safetensors.numpy import load_file
    return {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in load_file(path).items()}


def test_load_file_fetches_the_version_once_and_a_remount_fetches_nothing(s3store, name, mounts, model_file):
    src, sums = model_file
    model = name()
    s3store.run("import", str(src), "--model", model, "--version", "v1")
    m = mounts(s3store)
    target = m.p("models", model, "v1.safetensors")
    assert load_sums(target) == sums
    st = m.stats()
    assert st["whole.fetches"] == 1
    assert m.wait_stat("whole.complete", 1) == 1
    size = os.path.getsize(src)
    fetched = m.stats()["s3.bytes_fetched"]
    assert size <= fetched <= 1.1 * size, fetched
    # Read again by a second loader in the same mount: nothing more is fetched.
    assert hashlib.sha256(open(target, "rb").read()).hexdigest() == hashlib.sha256(src.read_bytes()).hexdigest()
    assert m.stats()["s3.bytes_fetched"] == fetched
    m.remount()
    sh("sh", "-c", "echo 3 > /proc/sys/vm/drop_caches", check=False)
    assert load_sums(m.p("models", model, "v1.safetensors")) == sums
    assert m.stats()["s3.bytes_fetched"] == 0, "the disk cache's copy is not fetched again"
    assert m.stats()["disk_cache.blocks_dropped"] == 0
    # Its complete record is trusted at the first open: whole at once (passthrough when the
    # kernel offers it), not re-read block by block to check it first.
    assert m.stats()["disk_cache.bytes_served"] == 0


# What the kernel reads around one tensor read through mmap, with the mount's 512 KiB readahead: the
# header's read-around (512 KiB), the first fault's (256 KiB before the tensor), and its asynchronous
# readahead up to two windows past the tensor's end. The mount must fetch nothing more: a neighbour
# the readahead spilled into is not fetched whole (a 2 MiB tensor cost 4.8 MiB on RGW), and no
# prefetch runs past the tensor.
KERNEL_READS = 512 * 1024 + 256 * 1024 + 1 * MiB


@pytest.mark.parametrize("count,mib", [(48, 2), (6, 16)], ids=["2MiB", "16MiB"])
def test_one_tensor_with_safe_open_does_not_fetch_the_file(s3store, name, tmp_path, mounts, count, mib):
    pytest.importorskip("numpy")
    from safetensors import safe_open
    src, sums = tensors_file(tmp_path, count, mib)
    model = name()
    s3store.run("import", str(src), "--model", model, "--version", "v1")
    m = mounts(s3store)
    tensor = f"layer{count * 29 // 48:02d}.weight"  # in the middle, neighbours on both sides
    with safe_open(m.p("models", model, "v1.safetensors"), framework="numpy") as f:
        t = f.get_tensor(tensor)
    assert hashlib.sha256(t.tobytes()).hexdigest() == sums[tensor]
    fetched = m.settled()
    assert m.stats()["whole.fetches"] == 0
    assert fetched <= mib * MiB + KERNEL_READS, fetched
    if mib >= 16:
        assert fetched <= 1.2 * mib * MiB, fetched  # issue 21's goal


def test_eight_loaders_at_once_fetch_the_version_once(s3store, name, mounts, model_file):
    src, sums = model_file
    model = name()
    s3store.run("import", str(src), "--model", model, "--version", "v1")
    m = mounts(s3store)
    target = m.p("models", model, "v1.safetensors")
    script = "import sys, hashlib\nfrom safetensors.numpy import load_file\n" \
             "print(hashlib.sha256(b''.join(v.tobytes() for _, v in sorted(load_file(sys.argv[1]).items()))).hexdigest())"
    procs = [subprocess.Popen(["python3", "-c", script, target], stdout=subprocess.PIPE, text=True) for _ in range(8)]
    outs = {p.communicate(timeout=600)[0].strip() for p in procs}
    from safetensors.numpy import load_file
    want = hashlib.sha256(b"".join(v.tobytes() for _, v in sorted(load_file(str(src)).items()))).hexdigest()
    assert outs == {want}
    assert m.stats()["whole.fetches"] == 1
    fetched = m.stats()["s3.bytes_fetched"]
    assert fetched <= 1.1 * os.path.getsize(src), fetched
