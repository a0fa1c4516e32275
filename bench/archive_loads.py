#!/usr/bin/env python3
"""A model of 4 safetensors shards loaded through archive views (stored zip, deflated zip,
.tar.gz), each tensor read in the model's order (not the file's: reverse), against the same load
from a local directory after a download (copy of the archive) and unpacking. Cold each time: fresh
mount, empty disk cache, page cache dropped. Also the bytes fetched for one sequential read of a
.tar.gz member. On the local store by default; with AWS_ENDPOINT_URL (and credentials) on S3.
  MODELFS_BIN=.build/debug/modelfs python3 bench/archive_loads.py [--size-mib 1024] [--runs 3]
Prints medians and ranges; ratios are download-then-load time / through-the-view time (>= 1.0:
the view is at least as fast).

Measured 2026-12-07 (2 runs each, release builds, a machine shared with four other builds):
  local store, 512 MiB:  deflated zip 0.18x -> 0.90x [view 4.1-8.8 s]; tar.gz 0.30x -> 1.09x;
                         stored zip 6.4x -> 6.8x; one tar.gz shard's dd fetched 3.31x -> 1.06x
                         its compressed size.
  s3api, 256 MiB:        deflated zip 0.30x -> 1.18x; tar.gz 0.29x -> 1.19x; stored 1.53x -> 1.86x;
                         one tar.gz shard fetched 1.63x -> 1.50x (the run prefetcher reads past
                         the member's end)."""
import argparse
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
import uuid
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import MiB, drop_caches, s3_client, stats  # noqa: E402
from mount import Mount, run  # noqa: E402


def load(directory, shards):
    """from_pretrained's way: each shard with safe_open, its tensors in the model's order."""
    from safetensors import safe_open
    total = 0
    for s in shards:
        with safe_open(os.path.join(directory, s), framework="numpy") as f:
            for k in sorted(f.keys(), reverse=True):
                total += f.get_tensor(k).nbytes
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bucket", default=f"bench-loads-{uuid.uuid4().hex[:8]}")
    ap.add_argument("--kinds", default="stored,deflated,tgz")
    ap.add_argument("--compare", default="", help="LABEL=BIN,...: other modelfs builds measured in the same run (e.g. before=...)")
    args = ap.parse_args()
    import numpy as np
    from safetensors.numpy import save_file

    modelfs = os.environ["MODELFS_BIN"]
    bins = [("modelfs", modelfs)] + [tuple(c.split("=", 1)) for c in args.compare.split(",") if c]
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    work = tempfile.mkdtemp(prefix="modelfs-bench-archive-loads-", dir=os.environ.get("BENCH_DIR", "/tmp"))
    env = dict(os.environ, MODELFS_DATA_DIR=os.path.join(work, "data"))
    if endpoint:
        env.update(MODELFS_BUCKET=args.bucket, MODELFS_ENDPOINT=endpoint)
    model = f"bench-{uuid.uuid4().hex[:8]}"
    s3 = None
    if endpoint:
        s3 = s3_client(endpoint)
        try:
            s3.create_bucket(Bucket=args.bucket)
        except Exception:
            pass

    # 4 shards of 16 MiB float32 tensors drawn from a normal distribution (deflate: about 0.93).
    src = os.path.join(work, "model")
    os.makedirs(src)
    rng = np.random.default_rng(1)
    per_shard = max(1, args.size_mib // 4 // 16)
    shards = [f"model-{i + 1:05d}-of-00004.safetensors" for i in range(4)]
    for i, s in enumerate(shards):
        save_file({f"layers.{i * per_shard + j:03d}.weight": rng.standard_normal(4 * MiB, dtype=np.float32)
                   for j in range(per_shard)}, os.path.join(src, s))
    with open(os.path.join(src, "config.json"), "w") as f:
        f.write('{"model_type": "bench"}\n')
    archives = {}
    if "stored" in args.kinds:
        archives["stored"] = os.path.join(work, "stored.zip")
        run("sh", "-c", f"cd {src} && zip -q -0 -r {archives['stored']} .")
    if "deflated" in args.kinds:
        archives["deflated"] = os.path.join(work, "deflated.zip")
        run("sh", "-c", f"cd {src} && zip -q -r {archives['deflated']} .")
    if "tgz" in args.kinds:
        archives["tgz"] = os.path.join(work, "model.tar.gz")
        run("sh", "-c", f"cd {src} && tar czf {archives['tgz']} .")
    versions = {}
    for i, (kind, path) in enumerate(archives.items()):
        name = f"v{i + 1}"
        run(modelfs, "import", path, "--model", model, "--version", name, "--quiet", env=env)
        versions[kind] = name
    shutil.rmtree(src)
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    cache = os.path.join(work, "cache")
    local = os.path.join(work, "local")
    results = {}
    for kind, path in archives.items():
        ext = ".zip" if kind != "tgz" else ".tar.gz"
        view, base, fetched = {b: [] for b, _ in bins}, [], {b: [] for b, _ in bins}
        for _ in range(args.runs):
            for label, binary in bins:
                shutil.rmtree(cache, ignore_errors=True)
                drop_caches()
                with Mount(binary, env, mnt, ("--cache-dir", cache)):
                    d = os.path.join(mnt, "models", model, versions[kind])
                    t = time.perf_counter()
                    n = load(d, shards)
                    view[label].append(time.perf_counter() - t)
                if kind == "tgz":
                    shutil.rmtree(cache, ignore_errors=True)
                    drop_caches()
                    with Mount(binary, env, mnt, ("--cache-dir", cache)):
                        before = stats(mnt)["s3.bytes_fetched"]
                        run("dd", f"if={os.path.join(mnt, 'models', model, versions[kind], shards[1])}", "of=/dev/null", "bs=1M")
                        fetched[label].append(stats(mnt)["s3.bytes_fetched"] - before)
            shutil.rmtree(cache, ignore_errors=True)
            drop_caches()
            # Download (a GET of the object; on the local store a copy of the archive file), unpack, load.
            shutil.rmtree(local, ignore_errors=True)
            os.makedirs(local)
            dest = os.path.join(local, "a" + ext)
            t = time.perf_counter()
            if endpoint:
                s3.download_file(args.bucket, f"{model}/{versions[kind]}{ext}", dest)
            else:
                shutil.copyfile(path, dest)
            if kind == "tgz":
                run("tar", "xzf", dest, "-C", local)
            else:
                run("unzip", "-q", dest, "-d", local)
            assert load(local, shards) == n
            base.append(time.perf_counter() - t)
        results[kind] = (view, base, fetched)
    med = statistics.median
    print(f"\narchive loads: {args.size_mib} MiB model, 4 shards, {args.runs} runs (medians [ranges]), "
          f"store {endpoint or 'local'}, {modelfs}")
    print(f"{'view':<10}{'build':<10}{'view s':>20}{'download+unpack+load s':>28}{'ratio':>8}")
    for kind, (view, base, fetched) in results.items():
        for label, _ in bins:
            v = view[label]
            print(f"{kind:<10}{label:<10}{med(v):>8.2f} [{min(v):.2f}-{max(v):.2f}]{'':>4}{med(base):>10.2f} [{min(base):.2f}-{max(base):.2f}]"
                  f"{'':>3}{med(base) / med(v):>7.2f}x")
            if fetched[label]:
                f = fetched[label]
                whole = os.path.getsize(archives[kind])
                print(f"{'':<20}one shard's dd fetched {med(f) / MiB:.1f} MiB [{min(f) / MiB:.1f}-{max(f) / MiB:.1f}]"
                      f" = {med(f) / (whole / 4):.2f}x its compressed size (a quarter of the {whole / MiB:.0f} MiB archive)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
