#!/usr/bin/env python3
"""Deploying a version as a service (issue 23) against starting the same server by hand, in one
run. The mount runs the example server (`--serve-command "python3 scripts/serve_example.py"`) on
two versions of the example trainer's weights (`train_example.py --init`, seeds 1 and 2); the
baseline is that same command started by hand on a local copy of the same file, timed from the
spawn to its `/health` answering 200. Round by round, interleaved (hand, mount, mount, hand, …):

  submit → ready      open services/submit, write `model=tiny version=v1 name=…`, read the name back,
                      then poll `status` until its first line is `ready`
  alias switch        a service following @production: from `ln -sfn vN.safetensors @production`
                      until `endpoint` names another address and its /health answers 200 (and it
                      then classifies as vN does: checked, not timed)
  stop                `stop` written to `control` until `status` says `stopped` and the server's port
                      is closed, against SIGTERM to the hand-started server until its port is closed
  serve start --wait  the CLI (`modelfs serve start --model tiny --version v1 --wait`) until it returns:
                      the mount finds the catalog's new row at its next look

Medians of --runs rounds; ratio = modelfs / by hand (> 1: modelfs takes longer). The mount's CPU
seconds over each modelfs figure (/proc/PID/stat, 10 ms ticks) show what its polling costs. Every
poll here is every --step seconds (default 10 ms), so the figures include the mount's own polls
(health, alias moves) and not ours. On the embedded local store, and with --stores local,s3 on the
S3 server of AWS_ENDPOINT_URL too (a bucket made for the run).
  bench/run serve [--server rgw|s3api] [--runs N] [--quick]"""
import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
from common import (free_port, bench_setup, ModelfsMount, attempt, cleanup, cpu_seconds, empty_bucket, fmt, loadavg, log, med,  # noqa: E402
                    modelfs_env, report, run, s3_client, wait_until)

EXAMPLE = os.path.join(ROOT, "scripts", "serve_example.py")
TRAINER = os.path.join(ROOT, "scripts", "train_example.py")
PROBE = {"input": ["great fun", "awful and boring"]}


# ------------------------------------------------------------------------------------- HTTP --

def http(url, body=None, timeout=5):
    """(status, parsed JSON or None) of one GET (POST with body); status None when nothing answers."""
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
    except (OSError, ValueError):
        return None, None


def healthy(base):
    return http(base + "/health", timeout=2)[0] == 200


def probabilities(base):
    status, answer = http(base + "/v1/classify", PROBE)
    if status != 200:
        raise RuntimeError(f"POST {base}/v1/classify answered {status}")
    return [d["probabilities"] for d in answer["data"]]


# ---------------------------------------------------------------------------- by hand --

class HandServer:
    """The example server started by hand on one file: `started` is the seconds from the spawn to
    /health answering 200."""

    def __init__(self, path, logfile, timeout, step):
        self.base = f"http://127.0.0.1:{free_port()}"
        env = dict(os.environ, MODELFS_MODEL_PATH=path, MODELFS_PORT=self.base.rsplit(":", 1)[1],
                   MODELFS_HOST="127.0.0.1", MODELFS_MODEL="tiny")
        with open(logfile, "ab") as out:
            start = time.perf_counter()
            self.proc = subprocess.Popen(["python3", EXAMPLE], env=env, stdout=out, stderr=out)
        try:
            if not wait_until(lambda: self.proc.poll() is not None or healthy(self.base), timeout, step) \
                    or self.proc.poll() is not None:
                raise RuntimeError(f"the example server by hand on {path} was not ready within {timeout} s "
                                   f"(exit {self.proc.poll()}; see {logfile})")
            self.started = time.perf_counter() - start
        except BaseException:
            self.stop()
            raise

    def stop(self):
        """Seconds from SIGTERM until its port is closed (as the services' stop is measured); then
        waits for its exit."""
        start = time.perf_counter()
        took = 0.0
        if self.proc.poll() is None:
            self.proc.terminate()
            wait_until(lambda: http(self.base + "/health", timeout=1)[0] is None, 10, 0.01)
            took = time.perf_counter() - start
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return took


# ------------------------------------------------------------------------- the services --

class Services:
    """services/ of one mount, read and written as a user would."""

    def __init__(self, mnt, timeout, step):
        self.dir = os.path.join(mnt, "services")
        self.timeout, self.step = timeout, step

    def submit(self, request):
        """The name services/submit gives back for one request (raises with its reason)."""
        fd = os.open(os.path.join(self.dir, "submit"), os.O_RDWR)
        try:
            try:
                os.write(fd, request.encode())
            except OSError as e:
                raise RuntimeError(f"services/submit refused {request.strip()!r}: {e}; "
                                   f"{os.pread(fd, 4096, 0).decode(errors='replace').strip()}")
            return os.pread(fd, 4096, 0).decode().strip()
        finally:
            os.close(fd)

    def read(self, name, file):
        with open(os.path.join(self.dir, name, file)) as f:
            return f.read()

    def status(self, name):
        """(first line, the rest) of status."""
        first, _, rest = self.read(name, "status").partition("\n")
        return first.strip(), rest.strip()

    def endpoint(self, name):
        return self.read(name, "endpoint").strip()

    def control(self, name, word):
        with open(os.path.join(self.dir, name, "control"), "w") as f:
            f.write(word + "\n")

    def stop(self, name, base):
        """`stop` written to control, until status says `stopped` and nothing answers at base (the
        server has exited: `stopped` alone means it was sent SIGTERM)."""
        self.control(name, "stop")
        self.wait(name, "stopped")
        if not wait_until(lambda: http(base + "/health", timeout=1)[0] is None, self.timeout, self.step):
            raise RuntimeError(f"{name} is stopped but {base} still answers after {self.timeout} s")

    def wait(self, name, want):
        """Polls status until its first line is `want`; raises on `failed` (with the reason) or timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            state, why = self.status(name)
            if state == want:
                return
            if state == "failed":
                raise RuntimeError(f"service {name} failed: {why}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"service {name} still {state!r} after {self.timeout} s, not {want!r}: {why}")
            time.sleep(self.step)


def service_processes(tag):
    """Pids of processes whose environment names a service of this run (MODELFS_SERVICE=…tag…)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(b"MODELFS_SERVICE=") and tag.encode() in v for v in env):
            found.append(int(pid))
    return found


# ---------------------------------------------------------------------------------- one store --

ROWS = [  # (key, modelfs, its baseline)
    ("submit_ready", "services/submit → status ready", "hand_local"),
    ("submit_ready_mnt", "services/submit → status ready", "hand_mount"),
    ("switch", "alias move: ln -sfn → new endpoint answering", "hand_local"),
    ("cli_start", "modelfs serve start --wait", "hand_local"),
    ("stop", "control stop → status stopped, the port closed", "hand_stop"),
]
BASELINES = {
    "hand_local": "the example server by hand on a local copy: spawn → /health 200",
    "hand_mount": "the same on the version's file in the mount",
    "hand_stop": "SIGTERM to the server started by hand → its port closed",
}


class Store:
    """One store (local, or S3 with a bucket of its own), its mount and its samples: samples[key] =
    [seconds], cpu[key] = [the mount's CPU seconds]."""

    def __init__(self, kind, a, work, tag, endpoint=None, bucket=None):
        self.kind, self.a, self.tag = kind, a, tag
        self.work = os.path.join(work, kind)
        os.makedirs(self.work)
        data = os.path.join(self.work, "data")
        self.env = modelfs_env(data, bucket, endpoint) if kind == "s3" else modelfs_env(data)
        self.mnt = os.path.join(self.work, "mnt")
        self.samples = {k: [] for k in [r[0] for r in ROWS] + list(BASELINES)}
        self.cpu = {k: [] for k in self.samples}
        self.failures = []
        self.serial = 0

    def attempt(self, what, fn):
        return attempt(f"{self.kind}: {what}", fn, self.failures)

    def measure(self, m, key, fn):
        """fn()'s seconds (or the seconds it returns) and the mount's CPU seconds over it, as a sample of key."""
        cpu, start = cpu_seconds(m.pid), time.perf_counter()
        got = fn()
        self.samples[key].append(got if isinstance(got, float) else time.perf_counter() - start)
        self.cpu[key].append(cpu_seconds(m.pid) - cpu)

    def name(self, what):
        self.serial += 1
        return f"bench-{self.tag}-{what}-{self.serial}"

    def run(self, weights):
        a = self.a
        args = ["--serve-command", f"python3 {EXAMPLE}", "--serve-drain", str(a.drain),
                "--serve-timeout", str(int(a.timeout))]
        hand_log = os.path.join(self.work, "hand.log")
        local = os.path.join(self.work, "local")
        os.makedirs(local)
        with ModelfsMount(os.environ["MODELFS_BIN"], self.env, self.mnt, args) as m:
            model = os.path.join(self.mnt, "models", "tiny")
            os.mkdir(model)
            for v, src in weights.items():
                shutil.copyfile(src, os.path.join(model, f"{v}.safetensors"))
                shutil.copyfile(os.path.join(model, f"{v}.safetensors"), os.path.join(local, f"{v}.safetensors"))
            svc = Services(self.mnt, a.timeout, a.step)
            # What each version answers, from the server by hand: the switch is checked against it.
            answers = {}
            for v in weights:
                h = HandServer(os.path.join(local, f"{v}.safetensors"), hand_log, a.timeout, a.step)
                answers[v] = probabilities(h.base)
                h.stop()
            if answers["v1"] == answers["v2"]:
                raise RuntimeError("v1 and v2 answer alike: the switch could not be checked")

            def hand(key, path):
                h = HandServer(path, hand_log, a.timeout, a.step)
                self.samples[key].append(h.started)
                self.samples["hand_stop"].append(h.stop())

            def submit_ready(key):
                name = self.name("v1")
                self.measure(m, key, lambda: (svc.submit(f"model=tiny version=v1 name={name}\n"),
                                              svc.wait(name, "ready")))
                base = svc.endpoint(name)
                if not healthy(base) or probabilities(base) != answers["v1"]:
                    raise RuntimeError(f"{name} is ready but {base} does not serve v1")
                self.measure(m, "stop", lambda: svc.stop(name, base))
                if svc.endpoint(name):
                    raise RuntimeError(f"{name} is stopped but its endpoint still reads {svc.endpoint(name)!r}")

            def cli_start():
                out = []
                self.measure(m, "cli_start", lambda: out.append(run(
                    [os.environ["MODELFS_BIN"], "serve", "start", "--model", "tiny", "--version", "v1",
                     "--name", self.name("cli"), "--wait"], env=self.env, timeout=a.timeout + 30).stdout.strip()))
                name = out[0].splitlines()[0].strip()  # then, with --wait, the endpoint
                state, why = svc.status(name)
                if state != "ready":
                    raise RuntimeError(f"modelfs serve start --wait returned with {name} {state!r}: {why}")
                svc.stop(name, svc.endpoint(name))

            mine = {
                "hand_local": lambda: hand("hand_local", os.path.join(local, "v1.safetensors")),
                "hand_mount": lambda: hand("hand_mount", os.path.join(model, "v1.safetensors")),
                "submit_ready": lambda: submit_ready("submit_ready"),
                "submit_ready_mnt": lambda: submit_ready("submit_ready_mnt"),
                "cli_start": cli_start,
            }
            order = list(mine)
            for r in range(a.runs):
                for key in (order if r % 2 == 0 else order[::-1]):  # drift falls on both sides alike
                    self.attempt(f"round {r + 1}, {key}", mine[key])
                log(f"  {self.kind}: round {r + 1} of {a.runs}")

            self.attempt("alias switches", lambda: self.switches(m, svc, model, answers))
            # A stopped server was sent SIGTERM, and SIGKILL 5 s later if it was still there.
            wait_until(lambda: not service_processes(self.tag), 8, 0.1)
            left = service_processes(self.tag)
            if left:
                self.failures.append(f"{self.kind}: service processes still running 8 s after their stop: {left}")
        left = service_processes(self.tag)
        if left:
            self.failures.append(f"{self.kind}: service processes left after unmount (killed here): {left}")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def switches(self, m, svc, model, answers):
        """A service on @production, the alias moved --runs times between v1 and v2."""
        alias = os.path.join(model, "@production")
        run(["ln", "-sfn", "v1.safetensors", alias])
        name = self.name("production")
        svc.submit(f"model=tiny version=@production name={name}\n")
        svc.wait(name, "ready")
        now = "v1"
        try:
            for r in range(self.a.runs):
                target = "v2" if now == "v1" else "v1"
                before = svc.endpoint(name)

                def switched():
                    base = svc.endpoint(name)
                    if base and base != before and healthy(base):
                        return True
                    state, why = svc.status(name)
                    if state != "ready" or "failed" in why:
                        raise RuntimeError(f"{name} says {state!r} {why!r} while switching to {target}")
                    return False

                def move():
                    run(["ln", "-sfn", f"{target}.safetensors", alias])
                    if not wait_until(switched, self.a.timeout, self.a.step):
                        raise RuntimeError(f"{name} did not switch to {target} within {self.a.timeout} s")
                self.measure(m, "switch", move)
                if probabilities(svc.endpoint(name)) != answers[target]:
                    raise RuntimeError(f"{name} switched, but {svc.endpoint(name)} does not answer as {target}")
                now = target
                # The old instance drains, then stops: the next move starts from one instance.
                time.sleep(self.a.drain + 0.5)
                log(f"  {self.kind}: alias switch {r + 1} of {self.a.runs}")
        finally:
            svc.stop(name, svc.endpoint(name))


# ------------------------------------------------------------------------------------- the table --

def table(stores):
    cols = ["what", "store", "modelfs s, median (min–max)", "by hand s, median (min–max)", "modelfs / by hand",
            "mount CPU s", "by hand: what"]
    out = ["| " + " | ".join(cols) + " |", "|---|---|---:|---:|---:|---:|---|"]
    for st in stores:
        for key, label, base in ROWS:
            ours, theirs = st.samples[key], st.samples[base]
            ratio = f"{med(ours) / med(theirs):.2f}x" if ours and theirs else "n/a"
            out.append("| " + " | ".join([label, st.kind, spread(ours), spread(theirs), ratio,
                                          fmt(med(st.cpu[key])), BASELINES[base]]) + " |")
    return "\n".join(out)


def spread(xs):
    return f"{fmt(med(xs))} ({fmt(min(xs))}–{fmt(max(xs))}), n={len(xs)}" if xs else "n/a"


def commit():
    return run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=False).stdout.strip() or "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, help="rounds (and alias moves); medians reported (default 7, --quick 3)")
    ap.add_argument("--quick", action="store_true", help="--runs 3 unless given")
    ap.add_argument("--stores", help="local, s3 or local,s3 (default: local, and s3 too with --server rgw|s3api)")
    ap.add_argument("--server", default="", help="the S3 server's name (bench/run passes it), for the table")
    ap.add_argument("--drain", type=float, default=3, help="the mount's --serve-drain, seconds (default 3, its own default)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds a service may take to be ready")
    ap.add_argument("--step", type=float, default=0.01, help="seconds between two polls of status, endpoint or /health")
    ap.add_argument("--size-mib", type=int, help="ignored (bench/run passes it to every benchmark)")
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--markdown", help="also append the markdown table to this file")
    a = ap.parse_args()
    a.runs = a.runs or (3 if a.quick else 7)
    stores, endpoint = bench_setup(a, "serve")

    tag = uuid.uuid4().hex[:6]
    work = tempfile.mkdtemp(prefix="modelfs-serve-", dir=a.work_dir)
    s3 = s3_client(endpoint) if "s3" in stores else None
    bucket = f"bench-serve-{tag}" if s3 else None
    started, load_before = time.time(), loadavg()
    done = []
    try:
        weights = {}
        for seed, v in ((1, "v1"), (2, "v2")):
            weights[v] = os.path.join(work, f"{v}.safetensors")
            run(["python3", TRAINER, "--init", weights[v], "--seed", seed])
        if s3:
            s3.create_bucket(Bucket=bucket)
        for kind in stores:
            log(f"serve: {kind} store, {a.runs} rounds")
            st = Store(kind, a, work, tag, endpoint, bucket)
            done.append(st)
            st.attempt("setup", lambda: st.run(weights))
    finally:
        cleanup()
        if s3:
            empty_bucket(s3, bucket)
        shutil.rmtree(work, ignore_errors=True)

    where = ", ".join(k if k == "local" else f"S3 ({a.server or endpoint})" for k in stores)
    header = (f"### Serving — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; modelfs {commit()};"
              f" stores: {where}; {a.runs} rounds, interleaved; polls every {a.step * 1000:g} ms;"
              f" --serve-drain {a.drain:g}; {os.cpu_count()} cores, load average {load_before} before,"
              f" {loadavg()} after; {time.time() - started:.0f} s\n\n"
              "modelfs / by hand > 1: modelfs takes longer. The server is scripts/serve_example.py on the"
              " example trainer's weights (17 KB) either way. mount CPU s: the mount's CPU seconds over the"
              " modelfs figure (10 ms ticks), median.")
    failures = [f for st in done for f in st.failures]
    report(header + "\n\n" + table(done), failures, a.markdown)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
