"""What every benchmark under bench/ shares, so that they all measure the same way: starting and
stopping mounts (modelfs here; s3fs, rclone and nginx in peers.py, all registered so `cleanup()`
stops what is left), the environment of a modelfs command on a store, the S3 client, dropping the
page cache, the mount's CPU seconds and peak RSS from /proc, bytes fetched from the mount's .stats,
and the table of figures against their baselines (medians, ratios, peak RSS)."""
import os
import socket
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

MiB = 1 << 20
GiB = 1 << 30

_live = []  # mounts and servers not yet stopped, newest last


def free_port():
    """A port of 127.0.0.1 free now (a server started next binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, env=None, check=True, timeout=900, capture=True):
    p = subprocess.run(list(map(str, cmd)), env=env, capture_output=capture, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {p.returncode}: {(p.stderr or '').strip()[-2000:]}")
    return p


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def wait_until(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def pid_alive(pid):
    """True while pid runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def peak_rss_mib(pid):
    """VmHWM of a process, MiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def unmount(path, pid=None, proc=None, timeout=20):
    """Unmount path and make sure the process serving it ends. Never raises."""
    try:
        if mounted(path):
            run(["fusermount3", "-u", path], check=False, timeout=timeout)
            if not wait_until(lambda: not mounted(path), timeout):
                log(f"bench: {path} still mounted after fusermount3 -u; lazy unmount")
                run(["fusermount3", "-uz", path], check=False, timeout=timeout)
                if mounted(path):
                    run(["umount", "-l", path], check=False, timeout=timeout)
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        elif pid is not None and not wait_until(lambda: not pid_alive(pid), timeout):
            log(f"bench: pid {pid} outlived its mount; SIGTERM")
            os.kill(pid, signal.SIGTERM)
            if not wait_until(lambda: not pid_alive(pid), 5):
                os.kill(pid, signal.SIGKILL)
    except Exception as e:  # cleanup must go on
        log(f"bench: unmounting {path}: {e}")


def cleanup():
    while _live:
        try:
            _live.pop().stop()
        except Exception as e:
            log(f"bench: cleanup: {e}")


class Managed:
    """A mount or server started in a `with`, and stopped by its end or by cleanup()."""

    def __enter__(self):
        _live.append(self)
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self in _live:
            _live.remove(self)
        self._stop()


def wait_mounted(path, proc, what, logfile, timeout=30):
    def up():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode} before mounting: {log_tail(logfile)}")
        return mounted(path)
    if not wait_until(up, timeout):
        raise RuntimeError(f"{what} did not mount {path} within {timeout} s: {log_tail(logfile)}")


def log_tail(path, n=1500):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


class ModelfsMount(Managed):
    """`modelfs mount DIR` (background); .pid is the mount process (from its 'pid N' line)."""
    label = "modelfs"

    def __init__(self, modelfs, env, path, args=()):
        self.modelfs, self.env, self.path, self.args = modelfs, env, path, list(args)
        self.pid = None

    def start(self):
        os.makedirs(self.path, exist_ok=True)
        # MODELFS_BENCH_MOUNT_ARGS: extra `modelfs mount` flags, to compare settings.
        extra = shlex.split(os.environ.get("MODELFS_BENCH_MOUNT_ARGS", ""))
        # No disk cache unless a scenario asks for one: the peers are measured without theirs.
        cache = [] if any(a.startswith("--cache-dir") for a in self.args + extra) else ["--cache-dir", "none"]
        out = run([self.modelfs, "mount", self.path, *self.args, *cache, *extra], env=self.env, timeout=60).stdout
        self.pid = int(out.split("(pid ")[1].split(",")[0])

    def _stop(self):
        unmount(self.path, pid=self.pid)

    def version(self, model, file):
        return os.path.join(self.path, "models", model, file)

    def stats(self):
        return stats(self.path)

    def peak_rss_mib(self):
        return peak_rss_mib(self.pid)


# ----------------------------------------------------------------------------- the machine --

def drop_caches():
    """Empties the page cache (root): every cold figure starts from here."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def machine_cpu():
    """CPU seconds the whole machine has spent busy (every core, user + system + irq), from
    /proc/stat: the server, the client, the mount and the kernel's copies alike."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def server_cpu():
    """CPU seconds spent so far by the S3 server that scripts/rgw-server or scripts/s3-server
    started (their recorded pids, threads included), or None when neither names its state dir:
    what is left of the machine's CPU is the client's (the mount or curl, the reader, the kernel)."""
    state = os.environ.get("MODELFS_RGW_STATE_DIR") or os.environ.get("MODELFS_S3_STATE_DIR")
    if not state or not os.path.exists(os.path.join(state, "run", "pids")):
        return None
    total = 0.0
    with open(os.path.join(state, "run", "pids")) as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1 and fields[1].isdigit() and pid_alive(int(fields[1])):
                total += cpu_seconds(int(fields[1]))
    return total


def stats(mnt):
    """The mount's counters from its .stats file, {name: int}."""
    with open(os.path.join(mnt, ".stats")) as f:
        return {k.strip(): int(v) for k, v in (line.split(":", 1) for line in f if ":" in line)
                if v.strip().lstrip("-").isdigit()}


def fetched(mnt, fn):
    """Bytes the mount fetched from S3 while fn() ran."""
    before = stats(mnt)["s3.bytes_fetched"]
    fn()
    return stats(mnt)["s3.bytes_fetched"] - before


def timed_child(cmd, env=None, what=None):
    """Seconds and CPU seconds (user + system, its own) of one command; raises if it fails."""
    start = time.perf_counter()
    p = subprocess.Popen(list(map(str, cmd)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, status, ru = os.wait4(p.pid, 0)
    except BaseException:
        p.kill()
        p.wait()
        raise
    secs = time.perf_counter() - start
    err = p.stderr.read().decode(errors="replace").strip()
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise RuntimeError(f"{what or ' '.join(map(str, cmd))} exited {code}: {err[-500:]}")
    return secs, ru.ru_utime + ru.ru_stime


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def dd(path, expect, bs="1M", timeout=1800):
    """Seconds of one sequential read of path with dd (checked: all `expect` bytes read)."""
    start = time.perf_counter()
    p = run(["dd", f"if={path}", "of=/dev/null", f"bs={bs}"], timeout=timeout)
    t = time.perf_counter() - start
    got = int(p.stderr.strip().splitlines()[-1].split()[0])
    if got != expect:
        raise RuntimeError(f"dd read {got} bytes of {path}, expected {expect}")
    return t


# ------------------------------------------------------------------------------- the store --

def modelfs_env(data_dir, bucket=None, endpoint=None):
    """The environment of a modelfs command: a catalog in data_dir, on S3 (bucket at endpoint) or,
    without an endpoint, on the embedded local store."""
    env = dict(os.environ, MODELFS_DATA_DIR=data_dir)
    if endpoint:
        env.update(MODELFS_BUCKET=bucket, MODELFS_ENDPOINT=endpoint)
    else:
        for k in ("MODELFS_BUCKET", "MODELFS_ENDPOINT", "AWS_ENDPOINT_URL"):
            env.pop(k, None)
    return env


def s3_client(endpoint=None):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint or os.environ["AWS_ENDPOINT_URL"],
                        config=Config(s3={"addressing_style": "path"}))


def empty_bucket(s3, bucket):
    """Deletes a bucket made for one run, objects and unfinished uploads first. Never raises."""
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            # One DELETE per object: s3api wants a Content-MD5 on a multi-object delete, which
            # newer boto3 no longer sends (it sends a CRC instead).
            for o in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=o["Key"])
        for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
        s3.delete_bucket(Bucket=bucket)
    except Exception as e:
        log(f"bench: emptying s3://{bucket}: {e}")


# --------------------------------------------------------------------------------- results --

class Table:
    def __init__(self):
        self.rows = []
        self.failures = []

    def add(self, scenario, unit, ours, other, theirs, higher_better, rss_ours=None, rss_theirs=None):
        """One row; ours/theirs are lists of samples (medians taken here) or None."""
        m, t = med(ours), med(theirs)
        ratio = None
        if m is not None and t is not None and m > 0 and t > 0:
            ratio = m / t if higher_better else t / m
        row = dict(scenario=scenario, unit=unit, ours=m, other=other, theirs=t, ratio=ratio,
                   rss_ours=rss_ours, rss_theirs=rss_theirs)
        self.rows.append(row)
        print("  " + " | ".join(self.cells(row)), flush=True)

    @staticmethod
    def cells(r):
        return [f"{r['scenario']} ({r['unit']})", fmt(r["ours"]), r["other"], fmt(r["theirs"]),
                f"{r['ratio']:.2f}x" if r["ratio"] is not None else "", fmt(r["rss_ours"], 0),
                fmt(r["rss_theirs"], 0)]

    def markdown(self, header):
        cols = ["scenario", "modelfs", "compared with", "its figure", "ratio", "modelfs peak RSS (MiB)",
                "its peak RSS (MiB)"]
        out = [header, "", "| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["---:"] * 1 + ["---"] + ["---:"] * 4) + "|"]
        for r in sorted(self.rows, key=lambda r: int(r["scenario"].split(".")[0])):
            out.append("| " + " | ".join(c if c else "" for c in self.cells(r)) + " |")
        if self.failures:
            out += ["", "Failed measurements:"] + [f"- {f}" for f in self.failures]
        return "\n".join(out)


def med(xs):
    if xs is None:
        return None
    if isinstance(xs, (int, float)):
        return float(xs)
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=None):
    if x is None:
        return "n/a"
    if digits is None:
        digits = 0 if abs(x) >= 1000 else 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
    return f"{x:,.{digits}f}"


def maxo(xs):
    xs = [x for x in xs if x]
    return max(xs) if xs else None


# ---------------------------------------------------------------------------- a benchmark --

def attempt(what, fn, failures, verbose=False):
    """fn() or None; a failure is printed and added to failures, and the suite goes on."""
    try:
        return fn()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        msg = f"{what}: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
        print(f"  FAILED {msg}", flush=True)
        if verbose:
            traceback.print_exc()
        failures.append(msg)
        return None


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def report(md, failures, markdown=None, heading="Failed measurements"):
    """Prints a benchmark's markdown with its failures, and appends it to the file markdown names."""
    if failures:
        md += f"\n\n{heading}:\n" + "\n".join(f"- {f}" for f in failures)
    print("\n" + md, flush=True)
    if markdown:
        with open(markdown, "a") as f:
            f.write(md + "\n\n")


class Bench:
    """One run of a suite of scenarios on one bucket: its S3 client, a work dir, the modelfs
    environment of its catalog, the table it fills; every model and key it makes starts with
    .tag, deleted at the end (delete_prefix)."""

    def __init__(self, args, name, tag, import_timeout=1800):
        self.args = args
        self.table = Table()
        self.size = args.size_mib * MiB
        self.endpoint = os.environ["AWS_ENDPOINT_URL"]
        self.modelfs = os.environ["MODELFS_BIN"]
        self.bucket = args.bucket
        self.s3 = s3_client(self.endpoint)
        self.tag = tag + uuid.uuid4().hex[:6]
        self.work = tempfile.mkdtemp(prefix=f"modelfs-{name}-", dir=args.work_dir)
        self.mnt = os.path.join(self.work, "mnt")
        self.import_timeout = import_timeout

    def attempt(self, what, fn):
        """fn() or None, logging the failure; a failing tool never stops the suite."""
        return attempt(what, fn, self.table.failures, self.args.verbose)

    def imp(self, path, model, env=None):
        run([self.modelfs, "import", path, "--model", model, "--quiet"], env=env or self.env, timeout=self.import_timeout)

    def delete_prefix(self, prefix):
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for o in page.get("Contents", []):
                    self.s3.delete_object(Bucket=self.bucket, Key=o["Key"])
        except Exception as e:
            log(f"cleanup of s3://{self.bucket}/{prefix}: {e}")

    def peer(self, name, endpoint=None, extra=()):
        """An s3fs or rclone mount of the bucket (peers.py), not started yet."""
        from peers import RcloneMount, S3fsMount
        endpoint = endpoint or self.endpoint
        path = os.path.join(self.work, "peer")
        if name == "s3fs":
            return S3fsMount(self.bucket, endpoint, path, self.work)
        if name.startswith("rclone-"):
            return RcloneMount(self.bucket, endpoint, path, self.work, name.split("-", 1)[1], extra)
        raise ValueError(f"unknown peer {name}")

    @staticmethod
    def peer_label(name):
        return "s3fs" if name == "s3fs" else f"rclone (--vfs-cache-mode {name.split('-', 1)[1]})"


def bench_setup(a, command):
    """Checks a run's --stores (default local, and s3 too with --server rgw|s3api) and MODELFS_BIN,
    and makes SIGTERM and SIGHUP end it through its `finally` blocks (servers stopped, buckets
    emptied). Returns the stores and the S3 endpoint (None without one)."""
    stores = [s.strip() for s in (a.stores or ("local,s3" if a.server in ("rgw", "s3api") else "local")).split(",")]
    if set(stores) - {"local", "s3"} or not stores:
        sys.exit("--stores: local, s3 or local,s3")
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if "s3" in stores and not endpoint:
        sys.exit(f"--stores s3 needs AWS_ENDPOINT_URL and credentials (bench/run {command} --server rgw starts a server)")
    if not os.environ.get("MODELFS_BIN"):
        sys.exit("MODELFS_BIN: the release binary (bench/run builds it)")

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    return stores, endpoint

