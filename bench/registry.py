#!/usr/bin/env python3
"""What the registry costs around the files: owners, modes and the audit trail on every change,
metrics as xattrs, compare and log. One mount of the embedded store (local directory + SQLite),
baselines measured in the same run:
  - creating N small versions by `cp` (each one also records its owner and an audit line) against
    the same `cp`s into a local directory, and the rate of the last 100 against the first 100
    (about 1.0 when the audit trail's growth costs nothing);
  - reading one metric xattr (`user.modelfs.metric.accuracy`) against reading a user xattr of a
    local file (median of 500 `getxattr` calls each);
  - `chmod` of a version (read bits: a catalog transaction, an audit line and the version's entry)
    against `chmod` of a local file;
  - `modelfs compare` of two versions against `modelfs versions` of the model (the CLI's own
    start-up is most of both), and `modelfs log` of the model's N+ audit lines."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELFS = os.environ.get("MODELFS_BIN") or os.path.join(ROOT, ".build/release/modelfs")


def run(*cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {p.stderr}")
    return p


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def median_ms(f, n):
    return statistics.median(timed(f) for _ in range(n)) * 1000


def create_rate(binary, n):
    """Versions per second of n `cp`s of 4 KiB into a fresh mount of `binary`."""
    top = tempfile.mkdtemp(prefix="modelfs-bench-create-")
    env = dict(os.environ, MODELFS_DATA_DIR=os.path.join(top, "data"))
    env.pop("MODELFS_BUCKET", None)
    mnt, src = os.path.join(top, "mnt"), os.path.join(top, "w.safetensors")
    os.makedirs(mnt)
    with open(src, "wb") as f:
        f.write(os.urandom(4096))
    run(binary, "mount", mnt, env=env)
    try:
        os.mkdir(os.path.join(mnt, "models", "m"))
        return n / sum(timed(lambda i=i: run("cp", src, os.path.join(mnt, "models", "m", f"v{i}.safetensors"))) for i in range(1, n + 1))
    finally:
        if subprocess.run(["fusermount3", "-u", mnt]).returncode != 0:
            subprocess.run(["fusermount3", "-uz", mnt])
        shutil.rmtree(top, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=500)
    ap.add_argument("--size-mib", type=int, default=None, help="ignored (bench/run passes it to every benchmark)")
    ap.add_argument("--against", metavar="BIN", help="also time the creates with another modelfs binary (an older build)")
    args = ap.parse_args()
    if args.against:
        older, now = create_rate(args.against, args.versions), create_rate(MODELFS, args.versions)
        print(f"create {args.versions} small versions by cp (versions/s): this build {now:.1f}, {args.against} {older:.1f}, ratio {now / older:.2f}x")
    top = tempfile.mkdtemp(prefix="modelfs-bench-registry-")
    env = dict(os.environ, MODELFS_DATA_DIR=os.path.join(top, "data"))
    env.pop("MODELFS_BUCKET", None)
    mnt, local = os.path.join(top, "mnt"), os.path.join(top, "local")
    os.makedirs(mnt)
    os.makedirs(local)
    src = os.path.join(top, "w.safetensors")
    with open(src, "wb") as f:
        f.write(os.urandom(4096))
    run(MODELFS, "mount", mnt, "--eval-command", """printf '{"accuracy": 0.91, "loss": 0.27}' > "$MODELFS_METRICS_FILE" """, env=env)
    rows = []
    try:
        d = os.path.join(mnt, "models", "m")
        os.mkdir(d)
        n = args.versions
        mount_times = [timed(lambda i=i: run("cp", src, os.path.join(d, f"v{i}.safetensors"))) for i in range(1, n + 1)]
        local_times = [timed(lambda i=i: run("cp", src, os.path.join(local, f"v{i}.safetensors"))) for i in range(1, n + 1)]
        rows.append((f"create {n} small versions by cp (versions/s)", n / sum(mount_times), n / sum(local_times), "cp into a local directory"))
        first, last = sum(mount_times[:100]), sum(mount_times[-100:])
        rows.append(("rate of the last 100 / the first 100 versions", first / last, None, ""))

        # A dataset and one evaluation, so that v1 has metrics.
        with open(os.path.join(top, "d.jsonl"), "w") as f:
            f.write('{"text": "a", "label": 0}\n')
        run("cp", os.path.join(top, "d.jsonl"), os.path.join(mnt, "datasets", "d.jsonl"))
        fd = os.open(os.path.join(mnt, "jobs", "evaluate"), os.O_RDWR)
        os.write(fd, b"model=m version=v1 dataset=d\n")
        job = os.pread(fd, 4096, 0).decode().strip()
        os.close(fd)
        deadline = time.time() + 60
        while open(os.path.join(mnt, "jobs", job, "status")).read().strip() != "succeeded":
            if time.time() > deadline:
                raise SystemExit(f"evaluation {job} did not succeed: {open(os.path.join(mnt, 'jobs', job, 'log')).read()}")
            time.sleep(0.1)
        v1, lf = os.path.join(d, "v1.safetensors"), os.path.join(local, "v1.safetensors")
        os.setxattr(lf, "user.accuracy", b"0.91")
        assert os.getxattr(v1, "user.modelfs.metric.accuracy") == b"0.91"
        mx = median_ms(lambda: os.getxattr(v1, "user.modelfs.metric.accuracy"), 500)
        lx = median_ms(lambda: os.getxattr(lf, "user.accuracy"), 500)
        rows.append(("getxattr user.modelfs.metric.accuracy (ms, median)", mx, lx, "getxattr of a local file"))
        modes = [0o444, 0o440]
        mc = median_ms(lambda: [os.chmod(os.path.join(d, "v2.safetensors"), m) for m in modes], 100) / 2
        lc = median_ms(lambda: [os.chmod(os.path.join(local, "v2.safetensors"), m) for m in modes], 100) / 2
        rows.append(("chmod of a version (ms, median)", mc, lc, "chmod of a local file"))
        cmp_ms = median_ms(lambda: run(MODELFS, "compare", "m", "v1", "v2", env=env), 5)
        ver_ms = median_ms(lambda: run(MODELFS, "versions", "m", env=env), 5)
        rows.append(("modelfs compare m v1 v2 (ms, median of 5)", cmp_ms, ver_ms, f"modelfs versions m ({n} versions)"))
        lines = len(run(MODELFS, "log", "m", env=env).stdout.splitlines()) - 1
        log_ms = median_ms(lambda: run(MODELFS, "log", "m", env=env), 5)
        rows.append((f"modelfs log m, {lines} lines (ms, median of 5)", log_ms, ver_ms, "modelfs versions m"))
    finally:
        if subprocess.run(["fusermount3", "-u", mnt]).returncode != 0:
            subprocess.run(["fusermount3", "-uz", mnt])
        shutil.rmtree(top, ignore_errors=True)
    print(f"{'scenario':60} {'modelfs':>9} {'baseline':>9} {'ratio':>7}  baseline")
    for label, a, b, what in rows:
        base = f"{b:9.2f}" if b is not None else " " * 9
        ratio = f"{a / b:6.2f}x" if b else " " * 7
        print(f"{label:60} {a:9.2f} {base} {ratio}  {what}")


if __name__ == "__main__":
    sys.exit(main())
