#!/usr/bin/env python3
"""Archives as directories and model-aware reads, against baselines measured in the same run
(every modelfs figure through a fresh mount, no disk cache, so every byte comes from S3):
  1. one 1 MiB member of a stored zip: bytes fetched from S3 / the member's size;
  2. all of a large stored member (dd) against a cold read of the whole version;
  3. a deflated member (cat) against `unzip -p` of the same archive from local disk;
  4. every tensor of a safetensors file with safetensors.numpy.load_file (mmap) against curl of
     the object, and against the same load with whole-tensor reads off (MODELFS_WHOLE_TENSORS=0);
  5. one 16 MiB tensor with safe_open: bytes fetched / the tensor's size;
  6. listing a zip of 10,000 members: the first `ls -lR` (reads the index) and the next.
Needs AWS_ENDPOINT_URL and credentials, MODELFS_BIN (bench/run sets them)."""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import MiB, fetched, s3_client  # noqa: E402
from mount import Mount, run, timed  # noqa: E402


def cat(path):
    with open(path, "rb") as f:
        while f.read(MiB):
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bucket", default="bench-archives")
    ap.add_argument("--members", type=int, default=10000)
    args = ap.parse_args()
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    modelfs = os.environ["MODELFS_BIN"]
    s3 = s3_client(endpoint)
    work = tempfile.mkdtemp(prefix="modelfs-bench-archives-")
    env = dict(os.environ, MODELFS_DATA_DIR=os.path.join(work, "data"), MODELFS_BUCKET=args.bucket, MODELFS_ENDPOINT=endpoint)
    model = f"bench-{uuid.uuid4().hex[:8]}"
    size = args.size_mib * MiB

    # A stored zip: filler, a 1 MiB member, a large member.
    stored = os.path.join(work, "stored.zip")
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as z:
        z.writestr("filler.bin", os.urandom(8 * MiB))
        z.writestr("small.bin", os.urandom(MiB))
        with z.open("big.bin", "w", force_zip64=True) as f:
            for _ in range(args.size_mib - 10):
                f.write(os.urandom(MiB))
    # A deflated member: text that compresses about 4:1.
    words = [uuid.uuid4().hex[:random.randint(3, 9)] for _ in range(5000)]
    text = os.path.join(work, "deflated.zip")
    rng = random.Random(1)
    with zipfile.ZipFile(text, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("corpus.jsonl", "w") as f:
            for _ in range(max(1, args.size_mib // 16)):
                f.write(("".join('{"text": "' + " ".join(rng.choices(words, k=12)) + '"}\n' for _ in range(64 * 1024 // 8))).encode() * 4)
    deflated_size = zipfile.ZipFile(text).getinfo("corpus.jsonl").file_size
    # A safetensors file of 16 MiB tensors.
    st = os.path.join(work, "model.safetensors")
    tensors = {f"layer{i:03d}.weight": np.frombuffer(os.urandom(16 * MiB), dtype=np.float32).reshape(2048, 2048)
               for i in range(max(1, args.size_mib // 16))}
    save_file(tensors, st)
    del tensors
    # Many small members.
    many = os.path.join(work, "many.zip")
    with zipfile.ZipFile(many, "w", zipfile.ZIP_STORED) as z:
        for i in range(args.members):
            z.writestr(f"shard{i // 1000:02d}/item{i:05d}.json", b'{"x": %d}' % i)

    for name, path in [("v1.zip", stored), ("v2.zip", text), ("v3.safetensors", st), ("v4.zip", many)]:
        run(modelfs, "import", path, "--model", model, "--version", name.split(".")[0], "--quiet", env=env)
    mnt = os.path.join(work, "mnt")
    m = lambda *p: os.path.join(mnt, "models", model, *p)  # noqa: E731
    url = s3.generate_presigned_url("get_object", Params={"Bucket": args.bucket, "Key": f"{model}/v3.safetensors"}, ExpiresIn=3600)
    st_size = os.path.getsize(st)

    small_ratio, big, whole, infl, unzip, load_on, load_off, curl, tensor_ratio, ls_first, ls_next = ([] for _ in range(11))
    for _ in range(args.runs):
        with Mount(modelfs, env, mnt):
            small_ratio.append(fetched(mnt, lambda: cat(m("v1", "small.bin"))) / MiB)
        with Mount(modelfs, env, mnt):
            whole.append(timed(lambda: run("dd", f"if={m('v1.zip')}", "of=/dev/null", "bs=1M")))
        with Mount(modelfs, env, mnt):
            big.append(timed(lambda: run("dd", f"if={m('v1', 'big.bin')}", "of=/dev/null", "bs=1M")))
        with Mount(modelfs, env, mnt):
            infl.append(timed(lambda: cat(m("v2", "corpus.jsonl"))))
        unzip.append(timed(lambda: subprocess.run(["unzip", "-p", text, "corpus.jsonl"], stdout=subprocess.DEVNULL, check=True)))
        curl.append(timed(lambda: run("curl", "-sf", "-o", "/dev/null", url)))
        with Mount(modelfs, env, mnt):
            load_on.append(timed(lambda: load_file(m("v3.safetensors"))))
        with Mount(modelfs, dict(env, MODELFS_WHOLE_TENSORS="0"), mnt):
            load_off.append(timed(lambda: load_file(m("v3.safetensors"))))
        with Mount(modelfs, env, mnt):
            def one_tensor():
                with safe_open(m("v3.safetensors"), framework="numpy") as f:
                    f.get_tensor("layer000.weight")
            tensor_ratio.append(fetched(mnt, one_tensor) / (16 * MiB))
        # The index is kept in the catalog: only the first run's first listing builds it.
        with Mount(modelfs, env, mnt):
            ls_first.append(timed(lambda: run("ls", "-lR", m("v4"))))
            ls_next.append(timed(lambda: run("ls", "-lR", m("v4"))))
            assert len(run("ls", "-R", m("v4")).stdout.split()) >= args.members

    med = statistics.median
    big_size = (args.size_mib - 10) * MiB
    print(f"\narchives: {args.size_mib} MiB stored zip and safetensors, {deflated_size / MiB:.0f} MiB deflated member, "
          f"{args.runs} runs (medians), server {endpoint}")
    print(f"{'scenario':<58}{'modelfs':>10}{'baseline':>10}{'ratio':>8}  baseline")
    print(f"{'1 MiB stored zip member: bytes fetched / member':<58}{med(small_ratio):>10.2f}{1.0:>10.2f}{med(small_ratio):>7.2f}x  the member's size")
    print(f"{'all of a large stored member (MB/s)':<58}{big_size / med(big) / 1e6:>10.1f}{size / med(whole) / 1e6:>10.1f}"
          f"{(big_size / med(big)) / (size / med(whole)):>7.2f}x  cold read of the whole version")
    print(f"{'a deflated member, cat (MB/s)':<58}{deflated_size / med(infl) / 1e6:>10.1f}{deflated_size / med(unzip) / 1e6:>10.1f}"
          f"{med(unzip) / med(infl):>7.2f}x  unzip -p from local disk")
    print(f"{'safetensors load_file (mmap), every tensor (MB/s)':<58}{st_size / med(load_on) / 1e6:>10.1f}{st_size / med(curl) / 1e6:>10.1f}"
          f"{med(curl) / med(load_on):>7.2f}x  curl of the object")
    print(f"{'safetensors load_file (mmap), every tensor (MB/s)':<58}{st_size / med(load_on) / 1e6:>10.1f}{st_size / med(load_off) / 1e6:>10.1f}"
          f"{med(load_off) / med(load_on):>7.2f}x  the same, whole-tensor reads off")
    print(f"{'one 16 MiB tensor, safe_open: bytes fetched / tensor':<58}{med(tensor_ratio):>10.2f}{1.0:>10.2f}{med(tensor_ratio):>7.2f}x  the tensor's size")
    print(f"{f'ls -lR of a zip of {args.members} members, first (ms)':<58}{ls_first[0] * 1000:>10.1f}")
    print(f"{f'ls -lR of a zip of {args.members} members, index kept (ms)':<58}{med(ls_next) * 1000:>10.1f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
