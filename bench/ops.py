#!/usr/bin/env python3
"""The mount's everyday operations before and after a change, in one run (issue 22's "Done means":
no operation slower by more than the noise). Builds a baseline revision (release, in a temporary
git worktree, cached by commit under .build/bench-baselines/) and measures it against the working
tree's binary (MODELFS_BIN), interleaved round by round (A B, B A, A B, … so that drift on a
shared machine falls on both alike), on the embedded local store and on the S3 server of
AWS_ENDPOINT_URL (each revision with a catalog and a bucket of its own, made for the run):

  mount               `modelfs mount` until the mount is up (a catalog with the run's models)
  cp 1,000 small      one `cp` of 1,000 4 KiB files into a new model: 1,000 versions
  ls -l warm          `ls -l` of that model, listed once already
  ls -l remount       the same, first thing after a remount (3 remounts a round)
  rm 100              one `rm` of 100 of those versions (the rest stay, as the store grows alike
                      on both sides: removing them all would double the time of a round)
  import              `modelfs import` of a --size-mib file (in the page cache) as a new version
  cp large            `cp` of the same file into the mount as a new version
  cold read           dd of the imported version: page cache dropped, fresh mount, no disk cache

Each row: the median seconds of each revision with its spread (min-max over the rounds), the
ratio head/baseline (> 1: head is slower), and the CPU seconds the operation cost the mount
(/proc/PID/stat; for import, the import process's own), a steadier figure than time here.
Needs root (drop_caches), MODELFS_BIN, and for S3 AWS_ENDPOINT_URL with credentials.
  bench/run ops [--baseline REF] [--server s3api|rgw] [--quick] [--rounds N] [--stores local,s3]"""
import argparse
import datetime
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
from common import (MiB, ModelfsMount, cleanup, cpu_seconds, drop_caches, empty_bucket, fmt, loadavg, log,  # noqa: E402
                    med, modelfs_env, report, run, s3_client, timed_child)


# ------------------------------------------------------------------------------ the binaries --

def git(*args, cwd=ROOT):
    return run(["git", "-C", cwd, *args]).stdout.strip()


def baseline_binary(ref, cache_root):
    """The release modelfs of ref: built once per commit in a temporary worktree (the caller's
    tree is never touched) with the caller's libfuse, and kept under cache_root/<commit>/."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    binary = os.path.join(cache_root, commit, "modelfs")
    if os.access(binary, os.X_OK):
        return commit, binary
    src = tempfile.mkdtemp(prefix=f"modelfs-baseline-{commit[:8]}-")
    log(f"ops: building {ref} ({commit[:10]}) in {src}, release (once: then cached in {binary})")
    git("worktree", "add", "--detach", src, commit)
    try:
        # The caller's scripts/lib.sh: its libfuse (.deps/) serves the worktree's build as well.
        script = 'source "$1/scripts/lib.sh"; require_libfuse; cd "$2" && swift build -c release >&2'
        p = subprocess.run(["bash", "-c", script, "build", ROOT, src], stdout=sys.stderr, stderr=sys.stderr)
        if p.returncode != 0:
            raise SystemExit(f"ops: the release build of {ref} ({commit[:10]}) failed")
        os.makedirs(os.path.dirname(binary), exist_ok=True)
        shutil.copy2(os.path.join(src, ".build", "release", "modelfs"), binary + ".part")
        os.replace(binary + ".part", binary)
    finally:
        run(["git", "-C", ROOT, "worktree", "remove", "--force", src], check=False)
        shutil.rmtree(src, ignore_errors=True)
        run(["git", "-C", ROOT, "worktree", "prune"], check=False)
        # SwiftPM's lock files for that scratch path, left in the temporary directory.
        for f in glob.glob(os.path.join(tempfile.gettempdir(), src.replace("/", "_") + "*")):
            os.unlink(f)
    return commit, binary


def head_label():
    """The working tree's commit, marked + when it has changes not committed."""
    dirty = run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], check=False).stdout.strip()
    return git("rev-parse", "--short", "HEAD") + ("+" if dirty else "")


# ------------------------------------------------------------------------- one revision, one store --

OPS = [  # (key, row label): the table's order
    ("mount", "mount (modelfs mount until up)"),
    ("cp_small", "cp of {versions:,} files of 4 KiB: {versions:,} versions"),
    ("ls_warm", "ls -l of {versions:,} versions, warm"),
    ("ls_remount", "ls -l of {versions:,} versions, after a remount"),
    ("rm", "rm of {removed:,} of the {versions:,} versions"),
    ("import", "modelfs import, {size} MiB"),
    ("cp_large", "cp of a {size} MiB file into the mount"),
    ("cold_read", "cold read of a {size} MiB version (dd)"),
]


class Side:
    """One revision on one store: its binary, a catalog (data dir) and, on S3, a bucket of its own
    (a bucket belongs to one catalog); samples[op] = [(seconds, cpu seconds)]."""

    def __init__(self, name, binary, work, store, endpoint, bucket):
        self.name, self.binary = name, binary
        data = os.path.join(work, f"{store}-{name}")
        self.env = modelfs_env(data, bucket, endpoint) if store == "s3" else modelfs_env(data)
        self.mnt = os.path.join(work, f"mnt-{store}-{name}")
        self.samples = {op: [] for op, _ in OPS}

    def mount(self):
        return ModelfsMount(self.binary, self.env, self.mnt)

    def path(self, *parts):
        return os.path.join(self.mnt, "models", *parts)


def on_mount(m, fn, n=1):
    """(seconds, the mount's CPU seconds) of fn(), each divided by n (fn repeats the operation n times)."""
    cpu = cpu_seconds(m.pid)
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) / n, (cpu_seconds(m.pid) - cpu) / n


def warm(path):
    """Puts path in the page cache: a copy's source is read from memory by both revisions."""
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)


def one_round(side, r, a, big, smalls):
    """Every operation once (ls -l warm: a few times) on a fresh model of side's store."""
    s, timeout = side.samples, a.timeout
    small, large = f"s{r}", f"big{r}"
    names = sorted(os.listdir(smalls))
    warm(big)
    s["import"].append(timed_child([side.binary, "import", big, "--model", large, "--version", "i", "--quiet"],
                                   side.env))
    drop_caches()
    with side.mount() as m:
        s["cold_read"].append(on_mount(m, lambda: run(["dd", f"if={side.path(large, 'i.pt')}", "of=/dev/null", "bs=1M"],
                                                        timeout=timeout)))
        os.mkdir(side.path(small))
        s["cp_small"].append(on_mount(m, lambda: run(["cp", *[os.path.join(smalls, n) for n in names], side.path(small)],
                                                       timeout=timeout)))
        ls = ["ls", "-l", side.path(small)]
        listed = run(ls).stdout.count("\n") - 1  # "total" first
        if listed != len(names):
            raise RuntimeError(f"ls -l listed {listed} versions of {len(names)}")

        def ls_n():
            for _ in range(a.ls_repeat):
                run(ls)
        s["ls_warm"] += [on_mount(m, ls_n, a.ls_repeat) for _ in range(3)]
        warm(big)
        s["cp_large"].append(on_mount(m, lambda: run(["cp", big, side.path(large, "c.pt")], timeout=timeout)))
    for _ in range(3):
        remount = side.mount()
        start = time.perf_counter()
        with remount as m:
            s["mount"].append((time.perf_counter() - start, cpu_seconds(m.pid)))
            s["ls_remount"].append(on_mount(m, lambda: run(ls)))
    with side.mount() as m:
        gone = names[:a.rm_versions]
        s["rm"].append(on_mount(m, lambda: run(["rm", *[side.path(small, n) for n in gone]], timeout=timeout)))
        left = len(os.listdir(side.path(small)))
        if left != len(names) - len(gone):
            raise RuntimeError(f"after rm: {left} versions left, expected {len(names) - len(gone)}")
        os.rmdir(side.path(large))  # not measured: keeps the store's bytes from growing round by round


# --------------------------------------------------------------------------------- the table --

def spread(xs):
    return f"{fmt(med(xs))} ({fmt(min(xs))}–{fmt(max(xs))})" if xs else "n/a"


def ratio(head, base):
    h, b = med(head), med(base)
    return f"{h / b:.2f}x" if h is not None and b else "n/a"


def table(stores, a):
    """Markdown rows: per store and operation, seconds and the mount's CPU seconds of each side."""
    cols = ["operation", "store", "baseline s, median (min–max)", "head s, median (min–max)", "time head/base",
            "baseline CPU s", "head CPU s", "CPU head/base"]
    out = ["| " + " | ".join(cols) + " |", "|---|---|" + "---:|" * (len(cols) - 2)]
    words = dict(versions=a.versions, removed=a.rm_versions, size=a.size_mib)
    for store, (base, head) in stores.items():
        for op, label in OPS:
            bt, bc = [x[0] for x in base.samples[op]], [x[1] for x in base.samples[op]]
            ht, hc = [x[0] for x in head.samples[op]], [x[1] for x in head.samples[op]]
            out.append("| " + " | ".join([label.format(**words), store, spread(bt), spread(ht), ratio(ht, bt),
                                          spread(bc), spread(hc), ratio(hc, bc)]) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------------------------- the run --

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="7835446", help="the git ref measured against the working tree (default: 7835446)")
    ap.add_argument("--baseline-bin", help="a baseline binary already built (skips the build; its label: --baseline)")
    ap.add_argument("--cache-dir", default=os.path.join(ROOT, ".build", "bench-baselines"),
                    help="where built baselines are kept, one directory per commit")
    ap.add_argument("--stores", default="local,s3", help="local, s3 or both (s3 needs AWS_ENDPOINT_URL)")
    ap.add_argument("--server", default=os.environ.get("MODELFS_BENCH_SERVER", "s3"), help="the S3 server's name, for the table")
    ap.add_argument("--rounds", type=int, help="rounds per revision, medians reported (default 3, --quick 2)")
    ap.add_argument("--size-mib", type=int, help="the large file of import, cp and the cold read (default 256, --quick 64)")
    ap.add_argument("--versions", type=int, help="small files copied and listed per round (default 1000, --quick 300)")
    ap.add_argument("--rm-versions", type=int, default=100, help="of those, removed per round by one rm")
    ap.add_argument("--ls-repeat", type=int, default=10, help="ls -l per warm sample (its time and CPU divided by it)")
    ap.add_argument("--quick", action="store_true", help="--rounds 2 --versions 300 --size-mib 64 unless given")
    ap.add_argument("--timeout", type=int, default=600, help="seconds for one command")
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--markdown", help="also append the markdown table to this file")
    ap.add_argument("--build-only", action="store_true", help="build (or find cached) the baseline, print its path")
    a = ap.parse_args()
    if a.build_only:
        print(baseline_binary(a.baseline, a.cache_dir)[1])
        return
    a.rounds = a.rounds or (2 if a.quick else 3)
    a.size_mib = a.size_mib or (64 if a.quick else 256)
    a.versions = a.versions or (300 if a.quick else 1000)
    a.rm_versions = min(a.rm_versions, a.versions - 1)
    stores = [s.strip() for s in a.stores.split(",") if s.strip()]
    if set(stores) - {"local", "s3"} or not stores:
        sys.exit("--stores: local, s3 or local,s3")
    if "s3" in stores and not os.environ.get("AWS_ENDPOINT_URL"):
        sys.exit("--stores s3 needs AWS_ENDPOINT_URL and credentials (bench/run ops starts a server)")
    if os.geteuid() != 0:
        sys.exit("ops.py drops the page cache (echo 3 > /proc/sys/vm/drop_caches): run it as root")
    head_bin = os.environ.get("MODELFS_BIN") or sys.exit("MODELFS_BIN: the working tree's release binary (bench/run builds it)")

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    if a.baseline_bin:
        base_commit, base_bin = a.baseline, a.baseline_bin
    else:
        base_commit, base_bin = baseline_binary(a.baseline, a.cache_dir)
    base_name, head_name = f"baseline {base_commit[:7]}", f"head {head_label()}"
    tag = uuid.uuid4().hex[:6]
    work = tempfile.mkdtemp(prefix="modelfs-ops-", dir=a.work_dir)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    s3 = s3_client(endpoint) if "s3" in stores else None
    buckets = []
    started, load_before = time.time(), loadavg()
    sides, failures = {}, []
    try:
        big = os.path.join(work, "weights.pt")
        with open(big, "wb") as f:
            block = os.urandom(MiB)
            for i in range(a.size_mib):
                f.write(i.to_bytes(8, "little") + block[8:])
        smalls = os.path.join(work, "small")
        os.mkdir(smalls)
        for i in range(a.versions):
            with open(os.path.join(smalls, f"v{i:04d}.pt"), "wb") as f:
                f.write(os.urandom(4096))
        for store in stores:
            pair = []
            for name, binary in (("base", base_bin), ("head", head_bin)):
                bucket = None
                if store == "s3":
                    bucket = f"bench-ops-{tag}-{name}"
                    s3.create_bucket(Bucket=bucket)
                    buckets.append(bucket)
                pair.append(Side(name, binary, work, store, endpoint, bucket))
            sides[store] = pair
            log(f"ops: {store} store, {a.rounds} rounds of each revision, interleaved")
            for r in range(a.rounds):
                for side in (pair if r % 2 == 0 else pair[::-1]):  # A B, B A, …: drift falls on both
                    t = time.time()
                    try:
                        one_round(side, r, a, big, smalls)
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except Exception as e:  # a failing revision is a finding: the other goes on
                        failures.append(f"{store}, {side.name}, round {r + 1}: {str(e).strip()[-300:]}")
                        log(f"  FAILED {failures[-1]}")
                    log(f"  round {r + 1} {side.name}: {time.time() - t:.0f} s")
    finally:
        cleanup()
        for bucket in buckets:
            empty_bucket(s3, bucket)
        shutil.rmtree(work, ignore_errors=True)

    header = (f"### Operations before and after — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC;"
              f" {base_name} vs {head_name}; stores: {', '.join(s if s == 'local' else f'S3 ({a.server})' for s in stores)};"
              f" {a.rounds} rounds each, interleaved; {a.versions:,} small versions of 4 KiB, {a.size_mib} MiB large;"
              f" {os.cpu_count()} cores, load average {load_before} before, {loadavg()} after; {time.time() - started:.0f} s\n\n"
              "time head/base > 1: head is slower. CPU: the mount's CPU seconds for the operation (/proc/PID/stat,"
              " 10 ms ticks; for import, the import process's), for mount its CPU until up. ls -l warm: each sample is"
              f" {a.ls_repeat} ls -l in a row, divided by {a.ls_repeat}; 3 samples a round, as for mount and ls -l"
              " after a remount. Baseline and head each have a catalog (and a bucket) of their own.")
    report(header + "\n\n" + table(sides, a), failures, a.markdown, "Failed rounds")


if __name__ == "__main__":
    main()
