#!/usr/bin/env python3
"""The local store's read path, with FUSE passthrough (--passthrough auto) and without (off), each
against the object's own blob file measured in the same run:
  cold dd     fresh mount, page cache dropped (echo 3 > /proc/sys/vm/drop_caches), dd bs=4M
  warm dd     the same file read again (the blob: from its page cache; the mount: through it)
  load_file   safetensors.numpy.load_file, cold
Prints medians and ranges of --runs runs, and each ratio (blob time / mount time: 1.0 = as fast
as the blob file). Needs root (drop_caches, passthrough). MODELFS_BIN: the binary to measure.

  bench/passthrough.py [--size-mib 512] [--runs 3]"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import drop_caches  # noqa: E402

MODELFS = os.environ.get("MODELFS_BIN") or os.path.join(os.path.dirname(__file__), "../.build/release/modelfs")


def dd(path):
    t = time.perf_counter()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=4M"], check=True, capture_output=True)
    return time.perf_counter() - t


def load(path):
    from safetensors.numpy import load_file
    t = time.perf_counter()
    tensors = load_file(path)
    sum(int(v.nbytes) for v in tensors.values())
    return time.perf_counter() - t


def make_weights(path, size):
    import numpy as np
    from safetensors.numpy import save_file
    per = size // 64 // 4
    rng = np.random.default_rng(0)
    base = rng.standard_normal(per).astype(np.float32)
    save_file({f"layer{i:02d}.weight": base + i for i in range(64)}, path)


class Mount:
    def __init__(self, env, path, mode):
        self.env, self.path, self.mode = env, path, mode

    def __enter__(self):
        subprocess.run([MODELFS, "mount", self.path, "--passthrough", self.mode], env=self.env, check=True, capture_output=True)
        return self

    def __exit__(self, *_):
        subprocess.run(["fusermount3", "-u", self.path])
        for _ in range(200):
            if not any(line.split()[1] == self.path for line in open("/proc/self/mounts")):
                break
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/passthrough.py needs root (drop_caches; passthrough is for root mounts)")
    top = tempfile.mkdtemp(prefix="modelfs-bench-pt-")
    env = dict(os.environ, MODELFS_DATA_DIR=os.path.join(top, "data"))
    env.pop("MODELFS_BUCKET", None)
    try:
        src = os.path.join(top, "w.safetensors")
        make_weights(src, a.size_mib << 20)
        subprocess.run([MODELFS, "import", src, "--model", "bench", "--version", "v1", "--quiet"], env=env, check=True)
        os.unlink(src)
        blob = next(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(top, "data", "blobs")) for f in fs
                    if os.path.getsize(os.path.join(d, f)) > (a.size_mib << 19))
        size = os.path.getsize(blob)
        results = {}  # (what, who) -> [seconds]
        add = lambda k, v: results.setdefault(k, []).append(v)
        for _ in range(a.runs):
            drop_caches()
            add(("cold dd", "blob"), dd(blob))
            add(("warm dd", "blob"), dd(blob))
            drop_caches()
            add(("load_file", "blob"), load(blob))
            for mode in ("auto", "off"):
                mnt = os.path.join(top, f"m-{mode}")
                os.makedirs(mnt, exist_ok=True)
                path = os.path.join(mnt, "models", "bench", "v1.safetensors")
                with Mount(env, mnt, mode):
                    drop_caches()
                    add(("cold dd", mode), dd(path))
                    add(("warm dd", mode), dd(path))
                with Mount(env, mnt, mode):
                    drop_caches()
                    add(("load_file", mode), load(path))
        print(f"local store, {size / 2**20:.0f} MiB safetensors (64 tensors), {a.runs} runs; "
              f"ratio = blob file's median time / this one's (1.0: as fast as the blob file)")
        print(f"{'scenario':<10} {'path':<18} {'median s':>9} {'range s':>15} {'GB/s':>6} {'ratio':>6}")
        for what in ("cold dd", "warm dd", "load_file"):
            base = statistics.median(results[(what, "blob")])
            for who, label in (("blob", "blob file"), ("auto", "passthrough auto"), ("off", "passthrough off")):
                ts = results[(what, who)]
                m = statistics.median(ts)
                print(f"{what:<10} {label:<18} {m:9.3f} {min(ts):7.3f}-{max(ts):<7.3f} {size / m / 1e9:6.2f} {base / m:6.2f}")
    finally:
        for d in os.listdir(top):
            if d.startswith("m-"):
                subprocess.run(["fusermount3", "-uz", os.path.join(top, d)], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
