#!/usr/bin/env python3
"""What the hardening of issue 20 costs and what it bought, this build against an older one
(--against OLD_BIN), with baselines measured in the same run, on the embedded local store (no
S3 server in the way: these are the mount's own costs):
  1. a deflated zip member read whole (cat): CRC-32 checked at its end, against `unzip -p`;
  2. a stored zip member read whole (dd bs=1M), against reading the archive file itself;
  3. the same member read backwards in 4 MiB preads (a loader's order, not the file's): the
     ranges' CRC-32s joined with crc32_combine;
  4. a catalog that stalls (PostgreSQL stopped by SIGSTOP, scripts/pg-server freeze): how long
     `ls` on the mount waits for its answer, and what the answer is; then, after SIGCONT, how long
     until `ls` works again.
Every read goes through a fresh mount; the archive file stays in the page cache for both builds."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mount import Mount, run, timed  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_SERVER = os.path.join(ROOT, "scripts/pg-server")
MiB = 1 << 20


def weights(size):
    """Bytes that deflate the way weights do (a little): random bytes with runs of zeros."""
    block = bytearray(os.urandom(MiB))
    for i in range(0, MiB, 4096):
        block[i:i + 1024] = bytes(1024)
    return bytes(block) * (size // MiB)


def backwards(path, size, chunk=4 * MiB):
    fd = os.open(path, os.O_RDONLY)
    try:
        off = (size - 1) // chunk * chunk
        while off >= 0:
            assert len(os.pread(fd, chunk, off)) == min(chunk, size - off)
            off -= chunk
    finally:
        os.close(fd)


def archive_figures(binary, work, archive, runs, label):
    env = dict(os.environ, MODELFS_DATA_DIR=os.path.join(work, f"data-{label}"))
    for k in ("MODELFS_BUCKET", "MODELFS_ENDPOINT", "AWS_ENDPOINT_URL", "MODELFS_CATALOG"):
        env.pop(k, None)
    run(binary, "import", archive, "--model", "m", "--version", "v1", "--quiet", env=env)
    mnt = os.path.join(work, f"mnt-{label}")
    view = os.path.join(mnt, "models", "m", "v1")
    out = {"deflated": [], "stored": [], "backwards": []}
    for _ in range(runs):
        with Mount(binary, env, mnt):
            out["deflated"].append(timed(lambda: run("sh", "-c", f"cat '{view}/deflated.bin' >/dev/null")))
        with Mount(binary, env, mnt):
            out["stored"].append(timed(lambda: run("dd", f"if={view}/stored.bin", "of=/dev/null", "bs=1M")))
        with Mount(binary, env, mnt):
            size = os.path.getsize(f"{view}/stored.bin")
            out["backwards"].append(timed(lambda: backwards(f"{view}/stored.bin", size)))
    return {k: statistics.median(v) for k, v in out.items()}


def stall_figures(binary, work, pg_url, pg_state, label, limit):
    """Seconds until `ls` answers on a frozen catalog (None: no answer within `limit`), that
    answer, and the seconds after thawing until `ls` lists again."""
    db = "bench_" + uuid.uuid4().hex[:8]
    run("psql", pg_url, "-qc", f"CREATE DATABASE {db}")
    env = dict(os.environ, MODELFS_DATA_DIR=os.path.join(work, f"pg-data-{label}"),
               MODELFS_CATALOG=pg_url.rsplit("/", 1)[0] + "/" + db, MODELFS_CATALOG_TIMEOUT="10")
    for k in ("MODELFS_BUCKET", "MODELFS_ENDPOINT", "AWS_ENDPOINT_URL"):
        env.pop(k, None)
    mnt = os.path.join(work, f"pg-mnt-{label}")
    models = os.path.join(mnt, "models")
    result = {}
    m = Mount(binary, env, mnt)
    m.__enter__()
    try:
        os.mkdir(os.path.join(models, "m"))
        with open(os.path.join(models, "m", "v1.pt"), "wb") as f:
            f.write(b"w" * 4096)
        run(PG_SERVER, "freeze", pg_state)
        try:
            answer = {}

            def ls():
                t = time.perf_counter()
                p = subprocess.run(["ls", models], capture_output=True, text=True)
                answer["seconds"] = time.perf_counter() - t
                answer["said"] = "listed" if p.returncode == 0 else p.stderr.strip().split(": ")[-1]

            t = threading.Thread(target=ls, daemon=True)
            t.start()
            t.join(limit)
            result["stalled"] = answer.get("seconds")
            result["said"] = answer.get("said", f"no answer in {limit:.0f} s")
        finally:
            run(PG_SERVER, "thaw", pg_state)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 120:
            if subprocess.run(["ls", models], capture_output=True, timeout=130).returncode == 0:
                break
            time.sleep(0.1)
        result["recovered"] = time.perf_counter() - t0
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)
        try:
            os.kill(m.pid, 9)
        except ProcessLookupError:
            pass
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--against", help="an older modelfs binary, measured in the same run")
    ap.add_argument("--stall-limit", type=float, default=60.0, help="seconds to wait for ls on a frozen catalog")
    args = ap.parse_args()
    new = os.environ.get("MODELFS_BIN") or os.path.join(ROOT, ".build/release/modelfs")
    builds = [("this build", new)] + ([("older build", args.against)] if args.against else [])

    work = tempfile.mkdtemp(prefix="modelfs-bench-hardening.")
    try:
        archive = os.path.join(work, "model.zip")
        data = weights(args.size_mib * MiB)
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr(zipfile.ZipInfo("deflated.bin"), data[: len(data) // 2], compress_type=zipfile.ZIP_DEFLATED)
            z.writestr(zipfile.ZipInfo("stored.bin"), data, compress_type=zipfile.ZIP_STORED)
        del data
        unzip = statistics.median(timed(lambda: run("sh", "-c", f"unzip -p '{archive}' deflated.bin >/dev/null"))
                                  for _ in range(args.runs))
        plain = statistics.median(timed(lambda: run("dd", f"if={archive}", "of=/dev/null", "bs=1M"))
                                  for _ in range(args.runs))
        figures = {label: archive_figures(b, work, archive, args.runs, f"a{i}") for i, (label, b) in enumerate(builds)}

        state = tempfile.mkdtemp(prefix="modelfs-bench-pg.")
        out = run(PG_SERVER, "start", state).stdout
        pg_url = next(l.split("=", 1)[1] for l in out.split() if l.startswith("MODELFS_TEST_PG_URL="))
        try:
            stalls = {label: stall_figures(b, work, pg_url, state, f"s{i}", args.stall_limit)
                      for i, (label, b) in enumerate(builds)}
        finally:
            run(PG_SERVER, "stop", state, check=False)
            shutil.rmtree(state, ignore_errors=True)

        half, whole = args.size_mib / 2 * MiB / 1e6, args.size_mib * MiB / 1e6
        print(f"\nhardening: {args.size_mib} MiB stored member, {args.size_mib // 2} MiB deflated member, "
              f"local store, {args.runs} runs (medians)")
        print(f"{'scenario':<46}{'build':>13}{'MB/s':>9}{'baseline':>10}{'ratio':>8}  baseline")
        for label, f in figures.items():
            print(f"{'deflated member, cat (CRC-32 at its end)':<46}{label:>13}{half / f['deflated']:>9.1f}"
                  f"{half / unzip:>10.1f}{unzip / f['deflated']:>7.2f}x  unzip -p (checks CRC-32 too)")
            print(f"{'stored member, dd bs=1M':<46}{label:>13}{whole / f['stored']:>9.1f}"
                  f"{whole / plain:>10.1f}{plain / f['stored']:>7.2f}x  dd of the archive file itself")
            print(f"{'stored member, 4 MiB preads backwards':<46}{label:>13}{whole / f['backwards']:>9.1f}"
                  f"{whole / plain:>10.1f}{plain / f['backwards']:>7.2f}x  dd of the archive file itself")
        if len(figures) == 2:
            (_, a), (_, b) = figures.items()
            for k, name in (("deflated", "deflated cat"), ("stored", "stored dd"), ("backwards", "backwards preads")):
                print(f"{'this build / older build, ' + name:<46}{'':>13}{'':>9}{'':>10}{b[k] / a[k]:>7.2f}x")
        print(f"\n{'catalog stalled (SIGSTOP)':<26}{'build':>13}{'ls answered after':>20}  {'answer':<28}{'ls works again after thaw':>26}")
        for label, s in stalls.items():
            waited = f"{s['stalled']:.1f} s" if s["stalled"] is not None else f"> {args.stall_limit:.0f} s"
            print(f"{'':<26}{label:>13}{waited:>20}  {s['said'][:28]:<28}{s['recovered']:>24.1f} s")
    finally:
        subprocess.run(f"awk '$3 ~ /^fuse/ && index($2, \"{work}\") == 1 {{print $2}}' /proc/mounts | "
                       "xargs -r -n1 fusermount3 -uz", shell=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
