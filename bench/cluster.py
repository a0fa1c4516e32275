#!/usr/bin/env python3
"""Many nodes, one catalog: SQLite (one mount) against PostgreSQL (two mounts of one bucket),
in the same run. Prints, per engine:
  - creating N small versions by `cp` into the mount (versions/s), and the rate of the last 100
    against the first 100 (about 1.0 when a version costs the same however many the model has),
  - `ls -l` of the model's N versions (ms, median of 5),
  - change propagation: the delay from a `cp` returning on one mount until the version is listed
    on the other (median and p99 over --propagate versions). On SQLite "the other" is the same
    mount (the baseline: nothing to propagate); on PostgreSQL it is the second node.
Needs AWS_ENDPOINT_URL (+ credentials) for the bucket and MODELFS_BENCH_PG_URL, or starts
scripts/pg-server itself."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELFS = os.environ.get("MODELFS_BIN") or os.path.join(ROOT, ".build/release/modelfs")


def run(*cmd, env=None, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {p.stderr}")
    return p


def bucket():
    import boto3
    from botocore.config import Config
    name = "bench-cluster-" + uuid.uuid4().hex[:8]
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], config=Config(s3={"addressing_style": "path"})).create_bucket(Bucket=name)
    return name


def mount(path, data, bucket, catalog=None):
    env = dict(os.environ, MODELFS_DATA_DIR=data, MODELFS_BUCKET=bucket, MODELFS_ENDPOINT=os.environ["AWS_ENDPOINT_URL"])
    if catalog:
        env["MODELFS_CATALOG"] = catalog
    run(MODELFS, "mount", path, "--cache-dir", "none", env=env)


def unmount(path):
    if subprocess.run(["fusermount3", "-u", path]).returncode != 0:
        subprocess.run(["fusermount3", "-uz", path])


def measure(tmp, label, catalog, n, propagate):
    b = bucket()
    a_path, b_path = f"{tmp}/{label}-a", f"{tmp}/{label}-b"
    mount(a_path, f"{tmp}/{label}-a-data", b, catalog)
    second = catalog is not None
    if second:
        mount(b_path, f"{tmp}/{label}-b-data", b, catalog)
    other = b_path if second else a_path
    try:
        src = f"{tmp}/small.pt"
        with open(src, "wb") as f:
            f.write(os.urandom(1024))
        os.mkdir(f"{a_path}/models/m")
        stamps = [time.perf_counter()]
        for i in range(n):
            run("cp", src, f"{a_path}/models/m/v{i + 1}.pt")
            stamps.append(time.perf_counter())
        create = n / (stamps[-1] - stamps[0])
        k = min(100, n // 2)
        late_vs_early = (stamps[k] - stamps[0]) / (stamps[-1] - stamps[-1 - k])
        ls = []
        for _ in range(5):
            t = time.perf_counter()
            run("ls", "-l", f"{other}/models/m")
            ls.append((time.perf_counter() - t) * 1000)
        os.mkdir(f"{a_path}/models/p")
        delays = []
        for i in range(propagate):
            name = f"v{i + 1}.pt"
            run("cp", src, f"{a_path}/models/p/{name}")
            t = time.perf_counter()
            while name not in os.listdir(f"{other}/models/p"):
                time.sleep(0.0005)
            delays.append((time.perf_counter() - t) * 1000)
        delays.sort()
        return {"create": create, "late_vs_early": late_vs_early, "ls": statistics.median(ls), "p50": statistics.median(delays),
                "p99": delays[min(len(delays) - 1, int(len(delays) * 0.99))]}
    finally:
        unmount(a_path)
        if second:
            unmount(b_path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--propagate", type=int, default=200)
    ap.add_argument("--size-mib", type=int, default=0, help="ignored (bench/run passes it to every benchmark)")
    args = ap.parse_args()
    state = None
    url = os.environ.get("MODELFS_BENCH_PG_URL")
    if not url:
        state = tempfile.mkdtemp(prefix="modelfs-bench-pg.")
        out = run(os.path.join(ROOT, "scripts/pg-server"), "start", state).stdout
        url = next(l.split("=", 1)[1] for l in out.split() if l.startswith("MODELFS_TEST_PG_URL="))
    db = "bench_" + uuid.uuid4().hex[:8]
    run("psql", url, "-qc", f"CREATE DATABASE {db}")
    pg = url.rsplit("/", 1)[0] + "/" + db
    try:
        with tempfile.TemporaryDirectory(prefix="modelfs-bench-cluster.") as tmp:
            s = measure(tmp, "sqlite", None, args.versions, args.propagate)
            p = measure(tmp, "pg", pg, args.versions, args.propagate)
    finally:
        if state:
            run(os.path.join(ROOT, "scripts/pg-server"), "stop", state, check=False)
    print(f"| measure | SQLite (one mount) | PostgreSQL (two mounts) | PostgreSQL / SQLite |")
    print(f"|---|---|---|---|")
    print(f"| create {args.versions} small versions by cp (versions/s) | {s['create']:.1f} | {p['create']:.1f} | {p['create'] / s['create']:.2f}x |")
    print(f"| rate of the last 100 / the first 100 versions | {s['late_vs_early']:.2f} | {p['late_vs_early']:.2f} | |")
    print(f"| ls -l of {args.versions} versions (ms, median of 5) | {s['ls']:.1f} | {p['ls']:.1f} | {p['ls'] / s['ls']:.2f}x |")
    print(f"| listed after cp returns, median (ms; SQLite: same mount) | {s['p50']:.2f} | {p['p50']:.2f} | {p['p50'] / max(s['p50'], 0.001):.1f}x |")
    print(f"| listed after cp returns, p99 (ms; SQLite: same mount) | {s['p99']:.2f} | {p['p99']:.2f} | {p['p99'] / max(s['p99'], 0.001):.1f}x |")


if __name__ == "__main__":
    sys.exit(main())
