#!/usr/bin/env python3
"""modelfs import of one file vs `aws s3 cp` of the same file to the same S3 server, in one run.

Prints each run, the medians, the ratio (modelfs throughput / aws throughput; > 1 means modelfs
is faster) and modelfs's peak RSS. Needs AWS_ENDPOINT_URL and credentials in the environment
(bench/run sets them up) and MODELFS_BIN pointing at a release build."""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

MiB = 1 << 20


def timed(cmd, env):
    """Wall time and peak RSS (KiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {p.stderr}")
    # ru_maxrss of children is the max over all waited children; run the big one last or read it
    # from /usr/bin/time instead. We use /usr/bin/time -f %M for modelfs below.
    return elapsed, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    # Its own bucket (bench/run makes it): a bucket belongs to one catalog, and each benchmark makes a new one.
    ap.add_argument("--bucket", default="bench-import")
    args = ap.parse_args()

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    modelfs = os.environ["MODELFS_BIN"]
    work = tempfile.mkdtemp(prefix="modelfs-bench-")
    src = os.path.join(work, "weights.safetensors")
    with open(src, "wb") as f:
        block = os.urandom(MiB)
        for i in range(args.size_mib):
            f.write(i.to_bytes(8, "little") + block[8:])
    size = os.path.getsize(src)

    env = dict(os.environ, MODELFS_DATA_DIR=os.path.join(work, "data"), MODELFS_BUCKET=args.bucket,
               MODELFS_ENDPOINT=endpoint)
    ours, theirs, rss = [], [], []
    for run in range(args.runs):
        model = f"bench-{uuid.uuid4().hex[:8]}"
        # Page cache warm for both: each reads the same cached file.
        subprocess.run(["cat", src], stdout=subprocess.DEVNULL)
        cmd = ["/usr/bin/time", "-f", "%M", modelfs, "import", src, "--model", model, "--quiet"]
        start = time.perf_counter()
        p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t = time.perf_counter() - start
        if p.returncode != 0:
            sys.exit(f"modelfs import failed: {p.stderr}")
        peak_kib = int(p.stderr.strip().splitlines()[-1])
        ours.append(t)
        rss.append(peak_kib / 1024)

        key = f"s3://{args.bucket}/aws-bench-{uuid.uuid4().hex[:8]}/weights.safetensors"
        t_aws, _ = timed(["aws", "s3", "cp", "--only-show-errors", src, key], env)
        theirs.append(t_aws)
        print(f"run {run + 1}: modelfs import {t:6.2f} s ({size / t / 1e6:7.1f} MB/s, peak RSS {peak_kib / 1024:6.1f} MiB)"
              f" | aws s3 cp {t_aws:6.2f} s ({size / t_aws / 1e6:7.1f} MB/s)")
        subprocess.run(["aws", "s3", "rm", "--only-show-errors", key], env=env)
        subprocess.run([modelfs, "model", "rm", model], env=env, stdout=subprocess.DEVNULL)

    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    print()
    print(f"file: {size / MiB:.0f} MiB, {args.runs} runs, server {endpoint}")
    print(f"{'scenario':<28}{'modelfs':>14}{'aws s3 cp':>14}{'ratio':>8}")
    print(f"{'import (median MB/s)':<28}{size / m_ours / 1e6:>14.1f}{size / m_theirs / 1e6:>14.1f}{m_theirs / m_ours:>7.2f}x")
    print(f"{'modelfs peak RSS (MiB)':<28}{max(rss):>14.1f}")


if __name__ == "__main__":
    main()
