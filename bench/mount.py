#!/usr/bin/env python3
"""Reads through the mount against baselines measured in the same run:
  1. cold sequential read of a version (dd bs=1M, fresh mount) vs curl of the same object from the
     same server (one stream, and 4 parallel ranged streams);
  2. warm re-read of the same version vs reading a local file from the page cache;
  3. `ls -l` of a model with 1,000 versions vs `ls -l` of a local directory of 1,000 files.
Needs AWS_ENDPOINT_URL and credentials in the environment and MODELFS_BIN (bench/run sets them)."""
import argparse
import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import MiB, s3_client, timed  # noqa: E402,F401 (archives.py and hardening.py take timed from here)
from common import ModelfsMount as Mount  # noqa: E402 (its default: no disk cache)


def run(*cmd, env=None, check=True):
    p = subprocess.run(list(cmd), env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {p.stderr}")
    return p


def dd(path):
    run("dd", f"if={path}", "of=/dev/null", "bs=1M")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    # Its own bucket (bench/run makes it): a bucket belongs to one catalog, and each benchmark makes a new one.
    ap.add_argument("--bucket", default="bench-mount")
    ap.add_argument("--versions", type=int, default=1000)
    args = ap.parse_args()

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    modelfs = os.environ["MODELFS_BIN"]
    s3 = s3_client(endpoint)

    work = tempfile.mkdtemp(prefix="modelfs-bench-")
    src = os.path.join(work, "weights.safetensors")
    with open(src, "wb") as f:
        for i in range(args.size_mib):
            f.write(os.urandom(MiB))
    size = os.path.getsize(src)
    env = dict(os.environ, MODELFS_DATA_DIR=os.path.join(work, "data"), MODELFS_BUCKET=args.bucket, MODELFS_ENDPOINT=endpoint)
    model = f"bench-{uuid.uuid4().hex[:8]}"
    run(modelfs, "import", src, "--model", model, "--quiet", env=env)
    key = f"{model}/v1.safetensors"
    url = s3.generate_presigned_url("get_object", Params={"Bucket": args.bucket, "Key": key}, ExpiresIn=3600)
    mnt = os.path.join(work, "mnt")
    target = os.path.join(mnt, "models", model, "v1.safetensors")

    def curl_one():
        run("curl", "-sf", "-o", "/dev/null", url)

    def curl_four():
        quarter = size // 4
        ranges = [(i * quarter, size - 1 if i == 3 else (i + 1) * quarter - 1) for i in range(4)]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda r: run("curl", "-sf", "-o", "/dev/null", "-r", f"{r[0]}-{r[1]}", url), ranges))

    cold, warm, curl1, curl4, local_warm, rss, filled, remount = [], [], [], [], [], [], [], []
    for _ in range(args.runs):
        curl1.append(timed(curl_one))
        curl4.append(timed(curl_four))
        with Mount(modelfs, env, mnt) as m:
            cold.append(timed(lambda: dd(target)))
            warm += [timed(lambda: dd(target)) for _ in range(3)]
            rss.append(m.peak_rss_mib())
        dd(src)
        local_warm += [timed(lambda: dd(src)) for _ in range(3)]
        # A node restarted a minute after reading: the disk cache (named by content) serves the
        # re-read; the cold read before it filled the cache.
        cache = os.path.join(work, f"cache-{len(remount)}")
        with Mount(modelfs, env, mnt, ["--cache-dir", cache]):
            filled.append(timed(lambda: dd(target)))
        with Mount(modelfs, env, mnt, ["--cache-dir", cache]):
            remount.append(timed(lambda: dd(target)))
        shutil.rmtree(cache, ignore_errors=True)

    def mbps(ts):
        return size / statistics.median(ts) / 1e6

    # ls -l of a model with many versions, on the embedded local store (no server in the way).
    lenv = dict(os.environ, MODELFS_DATA_DIR=os.path.join(work, "local"))
    lenv.pop("MODELFS_BUCKET", None)
    lmnt = os.path.join(work, "lmnt")
    localdir = os.path.join(work, "plain")
    os.makedirs(localdir)
    with Mount(modelfs, lenv, lmnt):
        os.mkdir(os.path.join(lmnt, "models", "many"))
        for i in range(args.versions):
            with open(os.path.join(lmnt, "models", "many", f"v{i}.pt"), "wb") as f:
                f.write(b"w" * 100)
            with open(os.path.join(localdir, f"v{i}.pt"), "wb") as f:
                f.write(b"w" * 100)
        ls_fs = [timed(lambda: run("ls", "-l", os.path.join(lmnt, "models", "many"))) for _ in range(7)]
        ls_local = [timed(lambda: run("ls", "-l", localdir)) for _ in range(7)]
        assert len(run("ls", os.path.join(lmnt, "models", "many")).stdout.split()) == args.versions

    print(f"\nversion: {size / MiB:.0f} MiB, {args.runs} runs (medians), server {endpoint}")
    print(f"{'scenario':<44}{'modelfs':>12}{'baseline':>12}{'ratio':>8}  baseline")
    print(f"{'cold sequential read (MB/s)':<44}{mbps(cold):>12.1f}{mbps(curl1):>12.1f}{mbps(cold) / mbps(curl1):>7.2f}x  curl GET, one stream")
    print(f"{'cold sequential read (MB/s)':<44}{mbps(cold):>12.1f}{mbps(curl4):>12.1f}{mbps(cold) / mbps(curl4):>7.2f}x  curl, 4 ranged streams")
    print(f"{'warm re-read (MB/s)':<44}{mbps(warm):>12.1f}{mbps(local_warm):>12.1f}{mbps(warm) / mbps(local_warm):>7.2f}x  local file, page cache")
    print(f"{'cold read filling the disk cache (MB/s)':<44}{mbps(filled):>12.1f}{mbps(cold):>12.1f}{mbps(filled) / mbps(cold):>7.2f}x  cold read, no disk cache")
    print(f"{'re-read after a remount (MB/s)':<44}{mbps(remount):>12.1f}{mbps(cold):>12.1f}{mbps(remount) / mbps(cold):>7.2f}x  cold read")
    ms_fs, ms_local = statistics.median(ls_fs) * 1000, statistics.median(ls_local) * 1000
    print(f"{f'ls -l of {args.versions} versions (ms)':<44}{ms_fs:>12.1f}{ms_local:>12.1f}{ms_local / ms_fs:>7.2f}x  ls -l of a local dir")
    print(f"{'mount peak RSS during reads (MiB)':<44}{max(rss):>12.1f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
