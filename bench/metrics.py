#!/usr/bin/env python3
"""What `/metrics` costs the mount (issue 24, item 5): its CPU seconds for a cold and a warm `dd`
of one version on the embedded local store, with the instrumentation recording (`--metrics`),
with it idle (no `--metrics`: swift-metrics' no-op handlers), and a baseline binary built without
it (--baseline, e.g. main's release build); interleaved round by round, so that drift on a shared
machine falls on every variant alike. Reads go through the daemon (`--passthrough off`, where
every read is a FUSE request the adapter counts and times) and, for comparison, through
passthrough (the default: the kernel reads the store's file, the daemon sees only the open).

  cold       page cache dropped, a fresh mount, one dd of the version
  warm       the same dd again in that mount
  direct 4k  dd iflag=direct bs=4k of the version through the daemon: one FUSE request per 4 KiB,
             the most requests per byte a reader can make (the worst case for per-request costs)

With AWS_ENDPOINT_URL set (e.g. `scripts/rgw-server start DIR` then its exports), the version is
on that S3 server instead (a bucket per binary, made and removed here; no disk cache): reads go
through the memory cache, whose counters (bytes by source, hits and misses) run on every read.

Each row: the median CPU seconds of the mount (/proc/PID/stat) per dd, with min-max over the
rounds, and the ratio to the baseline. Needs root (drop_caches).
  bench/metrics.py --modelfs .build/release/modelfs --baseline /path/to/main/modelfs [--size-mib 256] [--rounds 5]"""
import argparse
import os
import shutil
import sys
import tempfile
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from common import (free_port, MiB, ModelfsMount, cleanup, cpu_seconds, dd, drop_caches, empty_bucket, fmt, loadavg, log, med,  # noqa: E402
                    modelfs_env, run, s3_client)


PHASES = {"off": ("cold", "warm", "direct 4k"), "auto": ("cold", "warm")}


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in r.read().decode().splitlines()
                                          if line and not line.startswith("#"))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modelfs", default=os.environ.get("MODELFS_BIN", os.path.join(os.path.dirname(BENCH), ".build/release/modelfs")))
    ap.add_argument("--baseline", help="a modelfs binary without the instrumentation")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="modelfs-bench-metrics.")
    size = args.size_mib * MiB
    src = os.path.join(work, "w.pt")
    with open(src, "wb") as f:
        block = os.urandom(MiB)
        for i in range(args.size_mib):
            f.write(i.to_bytes(8, "little") + block[8:])
    variants = [("--metrics", args.modelfs, True), ("no --metrics", args.modelfs, False)]
    if args.baseline:
        variants.append(("baseline", args.baseline, False))
    # One data dir per binary: the same store layout, imported once.
    envs = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    s3 = s3_client() if endpoint else None
    buckets = []
    for _, binary, _ in variants:
        if binary not in envs:
            bucket = None
            if s3:
                bucket = f"bench-metrics-{len(envs)}-{os.getpid()}"
                s3.create_bucket(Bucket=bucket)
                buckets.append(bucket)
            env = modelfs_env(os.path.join(work, f"data{len(envs)}"), bucket, endpoint)
            run([binary, "import", src, "--model", "m", "--version", "v1", "--quiet"], env=env)
            envs[binary] = env
    cpu = {}  # (variant, mode, phase) -> [seconds]
    checked = False
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else list(reversed(variants))
        for label, binary, metrics in order:
            for mode in ("off", "auto"):
                port = free_port()
                extra = ["--metrics", f"127.0.0.1:{port}"] if metrics else []
                drop_caches()
                with ModelfsMount(binary, envs[binary], os.path.join(work, "mnt"), ["--passthrough", mode, *extra]) as m:
                    path = m.version("m", "v1.pt")
                    for phase in PHASES[mode]:
                        before = cpu_seconds(m.pid)
                        if phase == "direct 4k":
                            run(["dd", f"if={path}", "of=/dev/null", "bs=4k", "iflag=direct"], timeout=1800)
                        else:
                            dd(path, size)
                        cpu.setdefault((label, mode, phase), []).append(cpu_seconds(m.pid) - before)
                    if metrics and mode == "off" and not checked:  # the counters saw the reads
                        got = scrape(port)
                        assert got['modelfs_read_bytes_total{source="object_store"}'] >= size, got
                        assert got['modelfs_fuse_requests_total{op="read"}'] >= size / (4 << 10), got
                        checked = True
        log(f"round {r + 1}/{args.rounds} done (load {loadavg()})")
    cleanup()
    for bucket in buckets:
        empty_bucket(s3, bucket)
    shutil.rmtree(work, ignore_errors=True)  # the version's file and the data dirs

    where = f"S3 ({endpoint})" if endpoint else "the local store"
    print(f"\n{args.size_mib} MiB version on {where}, {args.rounds} rounds; CPU seconds of the mount per dd "
          f"(median, min-max), ratio to {'the baseline' if args.baseline else 'no --metrics'}\n")
    print("| reads | dd | " + " | ".join(label for label, _, _ in variants) + " | --metrics / base |")
    print("|---|---|" + "---|" * len(variants) + "---|")
    base = "baseline" if args.baseline else "no --metrics"
    for mode in ("off", "auto"):
        for phase in PHASES[mode]:
            cells = []
            for label, _, _ in variants:
                xs = cpu[(label, mode, phase)]
                cells.append(f"{fmt(med(xs), 3)} ({fmt(min(xs), 3)}-{fmt(max(xs), 3)})")
            ours, theirs = med(cpu[("--metrics", mode, phase)]), med(cpu[(base, mode, phase)])
            ratio = f"{ours / theirs:.2f}x" if theirs > 0.005 else "-"
            what = "daemon" if mode == "off" else "passthrough"
            print(f"| {what} | {phase} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
