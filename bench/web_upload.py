#!/usr/bin/env python3
"""Uploading a version over HTTP (issue 24) against `modelfs import` of the same file, in one run.
A file of --size-mib random bytes (default 1024) goes in as a new version of one model, round by
round, interleaved (import, PUT, PUT, import, …):

  modelfs import     `modelfs import FILE --model M --version vN --quiet`, until it exits
  PUT …/content      Python's http.client streaming the file in 1 MiB pieces to `modelfs web`
                     (`PUT /api/v1/models/M/versions/vN.pt/content`, Content-Length, a bearer
                     token) until the 201 with the ready version

Both end `ready` with the same sha256 (checked). Medians of --runs rounds; ratio = PUT / import
(> 1: the API takes longer). CPU s: the import's own CPU seconds, and the web server's over the
PUT (/proc/PID/stat), beside the client's (Python reading the file and writing the socket); the
web server's peak RSS (VmHWM) shows the body is streamed, not held. On the
embedded local store and, with --server rgw|s3api (bench/run starts it), on that S3 server too (a
bucket made for the run).
  bench/run web-upload [--server rgw|s3api] [--runs N] [--quick] [--size-mib N]"""
import argparse
import datetime
import hashlib
import http.client
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
from common import (free_port, bench_setup, attempt, cleanup, cpu_seconds, empty_bucket, fmt, loadavg, log, med, modelfs_env,  # noqa: E402
                    peak_rss_mib, report, run, s3_client, timed_child, wait_until)

MiB = 1 << 20
TOKEN = "bench-" + uuid.uuid4().hex


class Store:
    """One store (local or S3) with `modelfs web` on it, and the figures of its rounds."""

    def __init__(self, kind, a, work, endpoint, bucket):
        self.kind, self.a = kind, a
        self.dir = os.path.join(work, kind)
        os.makedirs(self.dir)
        self.env = modelfs_env(os.path.join(self.dir, "data"), bucket, endpoint) if kind == "s3" else modelfs_env(os.path.join(self.dir, "data"))
        self.modelfs = os.environ["MODELFS_BIN"]
        self.imports, self.puts, self.import_cpu, self.web_cpu, self.client_cpu = [], [], [], [], []
        self.failures = []
        self.web = None
        self.web_rss = None

    def attempt(self, what, fn):
        return attempt(f"{self.kind}: {what}", fn, self.failures)

    def start_web(self):
        tokens = os.path.join(self.dir, "tokens")
        with open(tokens, "w") as f:
            f.write(f"{TOKEN} {os.getuid()}\n")
        os.chmod(tokens, 0o600)
        self.port = free_port()
        self.web_log = open(os.path.join(self.dir, "web.log"), "w")
        self.web = subprocess.Popen([self.modelfs, "web", "--listen", f"127.0.0.1:{self.port}", "--tokens", tokens],
                                    env=self.env, stdout=self.web_log, stderr=subprocess.STDOUT)

        def up():
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health")
                return c.getresponse().status == 200
            except OSError:
                return False
        if not wait_until(up, 60):
            raise RuntimeError("modelfs web did not answer /health")

    def stop_web(self):
        if self.web and self.web.poll() is None:
            self.web.terminate()
            self.web.wait(timeout=30)
        if self.web:
            self.web_log.close()

    def call(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")

    def put(self, path, model, version):
        """Seconds of one streamed PUT, the web server's CPU seconds over it, the client's; the row."""
        size = os.path.getsize(path)
        web_before, client_before = cpu_seconds(self.web.pid), resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1800)
        c.putrequest("PUT", f"/api/v1/models/{model}/versions/{version}.pt/content")
        c.putheader("Authorization", f"Bearer {TOKEN}")
        c.putheader("Content-Length", str(size))
        c.endheaders()
        with open(path, "rb") as f:
            while piece := f.read(MiB):
                c.send(piece)
        r = c.getresponse()
        answer = json.loads(r.read())
        secs = time.perf_counter() - start
        client_after = resource.getrusage(resource.RUSAGE_SELF)
        if r.status != 201:
            raise RuntimeError(f"PUT answered {r.status}: {answer}")
        client = (client_after.ru_utime + client_after.ru_stime) - (client_before.ru_utime + client_before.ru_stime)
        return secs, cpu_seconds(self.web.pid) - web_before, client, answer

    def versions(self, model):
        out = run([self.modelfs, "versions", model, "--json"], env=self.env).stdout
        return {v["name"]: v for v in json.loads(out)}

    def remove(self, model, version):
        run([self.modelfs, "version", "rm", model, version], env=self.env)

    def run(self, path, sha):
        self.start_web()
        model = "bench-up-" + uuid.uuid4().hex[:6]
        status, answer = self.call("POST", "/api/v1/models", {"name": model})
        if status != 201:
            raise RuntimeError(f"POST /models answered {status}: {answer}")
        # An anchor version: the rounds' versions are deleted after each, never the last one.
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("PUT", f"/api/v1/models/{model}/versions/v0.pt/content", body=b"anchor", headers={"Authorization": f"Bearer {TOKEN}"})
        assert c.getresponse().status == 201
        order = ["import", "put", "put", "import"]
        for i in range(self.a.runs):
            for j, how in enumerate(order[:2] if i % 2 == 0 else order[2:]):
                version = f"v{i + 1}{'ab'[j]}"
                if how == "import":
                    secs, cpu = timed_child([self.modelfs, "import", path, "--model", model, "--version", version, "--quiet"],
                                            env=self.env, what="modelfs import")
                    self.imports.append(secs)
                    self.import_cpu.append(cpu)
                else:
                    secs, web, client, row = self.put(path, model, version)
                    self.puts.append(secs)
                    self.web_cpu.append(web)
                    self.client_cpu.append(client)
                    if row["sha256"] != sha:
                        raise RuntimeError(f"the PUT's version has sha256 {row['sha256']}, not {sha}")
                got = self.versions(model)[version]
                if (got["status"], got["sha256"]) != ("ready", sha):
                    raise RuntimeError(f"{how}: {model}/{version} is {got['status']} with sha256 {got['sha256']}")
                log(f"web-upload: {self.kind} round {i + 1} {how}: {secs:.2f} s")
                self.remove(model, version)
        self.web_rss = peak_rss_mib(self.web.pid)


def table(stores, size):
    rows = ["| store | modelfs import s | PUT …/content s | PUT / import | MB/s import | MB/s PUT | import CPU s | web server CPU s | client CPU s | web server peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for st in stores:
        i, p = med(st.imports), med(st.puts)
        ratio = p / i if i and p else None
        rows.append(f"| {st.kind} | {fmt(i, 2)} | {fmt(p, 2)} | {fmt(ratio, 2)} | {fmt(size / MiB / i if i else None, 0)} | "
                    f"{fmt(size / MiB / p if p else None, 0)} | {fmt(med(st.import_cpu), 2)} | {fmt(med(st.web_cpu), 2)} | {fmt(med(st.client_cpu), 2)} | {fmt(st.web_rss, 0)} |")
    return "\n".join(rows)


def commit():
    return run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=False).stdout.strip() or "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, help="rounds; medians reported (default 3, --quick 1)")
    ap.add_argument("--quick", action="store_true", help="--runs 1 and 256 MiB unless given")
    ap.add_argument("--size-mib", type=int, help="the file's size (default 1024, --quick 256)")
    ap.add_argument("--stores", help="local, s3 or local,s3 (default: local, and s3 too with --server rgw|s3api)")
    ap.add_argument("--server", default="", help="the S3 server's name (bench/run passes it), for the table")
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--markdown", help="also append the markdown table to this file")
    a = ap.parse_args()
    a.runs = a.runs or (1 if a.quick else 3)
    size = (a.size_mib or (256 if a.quick else 1024)) * MiB
    stores, endpoint = bench_setup(a, "web-upload")

    work = tempfile.mkdtemp(prefix="modelfs-web-upload-", dir=a.work_dir)
    s3 = s3_client(endpoint) if "s3" in stores else None
    bucket = f"bench-web-upload-{uuid.uuid4().hex[:6]}" if s3 else None
    started, load_before = time.time(), loadavg()
    done = []
    try:
        path = os.path.join(work, "file.pt")
        h = hashlib.sha256()
        with open(path, "wb") as f:
            for _ in range(size // MiB):
                piece = os.urandom(MiB)
                h.update(piece)
                f.write(piece)
        sha = h.hexdigest()
        if s3:
            s3.create_bucket(Bucket=bucket)
        for kind in stores:
            log(f"web-upload: {kind} store, {a.runs} rounds of {size // MiB} MiB")
            st = Store(kind, a, work, endpoint, bucket)
            done.append(st)
            try:
                st.attempt("rounds", lambda: st.run(path, sha))
            finally:
                st.stop_web()
    finally:
        cleanup()
        if s3:
            empty_bucket(s3, bucket)
        shutil.rmtree(work, ignore_errors=True)

    where = ", ".join(k if k == "local" else f"S3 ({a.server or endpoint})" for k in stores)
    header = (f"### Uploads over HTTP — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; modelfs {commit()};"
              f" stores: {where}; {size // MiB} MiB, {a.runs} round(s) of each, interleaved; {os.cpu_count()} cores,"
              f" load average {load_before} before, {loadavg()} after; {time.time() - started:.0f} s\n\n"
              "PUT / import > 1: the API takes longer. Both end ready with the file's sha256 (checked). CPU s:"
              " the import's own; the web server's over the PUT; the Python client's (reading the file, writing the socket). Peak RSS:"
              " the web server's VmHWM over all its rounds (the body is streamed, never held whole).")
    report(header + "\n\n" + table(done, size), [f for st in done for f in st.failures], a.markdown)


if __name__ == "__main__":
    main()
