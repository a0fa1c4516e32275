#!/usr/bin/env python3
"""What bench/scenarios.py drives besides modelfs (whose mount is in common.py): s3fs and rclone
mounts, an nginx front for the S3 server, and the small read programs each scenario runs in a
child process (so a hung mount can only time out one measurement, never the suite).

Every mount and server started here is registered with common.py's, and `cleanup()` (called from
a `finally` and on SIGTERM/SIGINT by the suite) unmounts and stops whatever is still there:
`fusermount3 -u`, then `fusermount3 -uz` / `umount -l`, then SIGTERM/SIGKILL of the process we
started (by pid).

Child programs (timing inside the child, interpreter start excluded), each prints one JSON line:
  peers.py pread PATH SIZE COUNT SEED      COUNT preads of 64 KiB at seeded random offsets
  peers.py zip PATH MEMBER                 read one member of a zip with zipfile
  peers.py tensor PATH NAME                load one tensor with safetensors (numpy)
  peers.py ranged URL SIZE COUNT SEED      the same preads as ranged GETs on one keep-alive connection
  peers.py stat DIR COUNT                  COUNT os.stat calls over the files of DIR, round robin
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port, log_tail, Managed, peak_rss_mib, unmount, wait_mounted, wait_until  # noqa: E402

READ = 64 << 10


class S3fsMount(Managed):
    """s3fs in the foreground (-f) as our child. The access key test:tester holds a ':', so the
    password file uses the BUCKET:ACCESS:SECRET form, which s3fs splits at the first and last ':'."""
    label = "s3fs"

    def __init__(self, bucket, endpoint, path, work):
        self.bucket, self.endpoint, self.path, self.work = bucket, endpoint, path, work
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        os.makedirs(self.path, exist_ok=True)
        pw = os.path.join(self.work, "s3fs.passwd")
        with open(os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(f"{self.bucket}:{os.environ['AWS_ACCESS_KEY_ID']}:{os.environ['AWS_SECRET_ACCESS_KEY']}\n")
        self.logfile = os.path.join(self.work, "s3fs.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS")}
        with open(self.logfile, "ab") as lf:
            self.proc = subprocess.Popen(
                ["s3fs", self.bucket, self.path, "-f", "-o", f"url={self.endpoint}", "-o", "use_path_request_style",
                 "-o", f"endpoint={os.environ.get('AWS_REGION', 'us-east-1')}", "-o", f"passwd_file={pw}"],
                stdin=subprocess.DEVNULL, stdout=lf, stderr=lf, env=env, start_new_session=True)
        wait_mounted(self.path, self.proc, "s3fs", self.logfile)

    def _stop(self):
        if self.proc is not None:
            unmount(self.path, proc=self.proc)

    def object(self, key):
        return os.path.join(self.path, key)

    def peak_rss_mib(self):
        return peak_rss_mib(self.proc.pid)


class RcloneMount(Managed):
    """`rclone mount s3:BUCKET DIR --vfs-cache-mode MODE` as our child, with a fresh cache dir.
    AWS_CA_BUNDLE is dropped from its environment (it breaks rclone on this machine)."""

    def __init__(self, bucket, endpoint, path, work, mode, extra=()):
        self.bucket, self.endpoint, self.path, self.work, self.mode = bucket, endpoint, path, work, mode
        self.extra = list(extra)
        self.label = f"rclone ({mode})"
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        os.makedirs(self.path, exist_ok=True)
        conf = os.path.join(self.work, "rclone.conf")
        with open(os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write("[s3]\ntype = s3\nprovider = Other\n"
                    f"endpoint = {self.endpoint}\nforce_path_style = true\n"
                    f"access_key_id = {os.environ['AWS_ACCESS_KEY_ID']}\n"
                    f"secret_access_key = {os.environ['AWS_SECRET_ACCESS_KEY']}\n"
                    f"region = {os.environ.get('AWS_REGION', 'us-east-1')}\n")
        self.cache = tempfile.mkdtemp(prefix="rclone-cache-", dir=self.work)
        self.logfile = os.path.join(self.work, "rclone.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS")}
        with open(self.logfile, "ab") as lf:
            self.proc = subprocess.Popen(
                ["rclone", "--config", conf, "mount", f"s3:{self.bucket}", self.path,
                 "--vfs-cache-mode", self.mode, "--cache-dir", self.cache, *self.extra],
                stdin=subprocess.DEVNULL, stdout=lf, stderr=lf, env=env, start_new_session=True)
        wait_mounted(self.path, self.proc, "rclone", self.logfile)

    def _stop(self):
        if self.proc is not None:
            unmount(self.path, proc=self.proc)
        shutil.rmtree(getattr(self, "cache", ""), ignore_errors=True)

    def object(self, key):
        return os.path.join(self.path, key)

    def peak_rss_mib(self):
        return peak_rss_mib(self.proc.pid)


class Nginx(Managed):
    """nginx on 127.0.0.1 in front of the S3 server: GET/HEAD of a key that exists under
    ROOT/<bucket>/<key> are served from that plain file (sendfile, page cache; the SigV4
    Authorization header is ignored), everything else (listings, HEAD of missing keys, writes) is
    proxied to the S3 server unchanged, Host included, so signatures still verify. A 416 is
    answered with S3's InvalidRange XML: rclone asks for bytes=SIZE-(SIZE-1) at the end of a file
    and fails on nginx's HTML error page (Swift ignores that invalid range and answers 200).
    tcp_nopush stays off: with it, ranged answers on a keep-alive connection wait ~40 ms each
    (a corked last segment). bytes_served() sums the bodies of object GETs answered 200/206 (the
    access log has one line per request, written when the request ends: count after the client
    closed its connections, i.e. after unmounting), so a measurement can count what any client
    fetched."""

    def __init__(self, root, upstream, work):
        self.root, self.upstream, self.work = root, upstream, work
        self.proc = None

    def start(self):
        d = self.dir = tempfile.mkdtemp(prefix="nginx-", dir=self.work)
        os.makedirs(os.path.join(d, "err"))
        os.makedirs(os.path.join(d, "tmp"))
        with open(os.path.join(d, "err", "416.xml"), "w") as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidRange</Code>'
                    '<Message>The requested range is not satisfiable</Message></Error>\n')
        self.port = free_port()
        up = self.upstream.split("://", 1)[1].rstrip("/")
        user = "user root root;" if os.geteuid() == 0 else ""
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""daemon off;
master_process on;
worker_processes 2;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format bytes '$request_method $status $body_bytes_sent $uri';
  access_log {d}/access.log bytes;
  sendfile on;
  tcp_nopush off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  upstream s3 {{ server {up}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{self.port};
    root {self.root};
    client_max_body_size 0;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_request_buffering off;
    proxy_buffering off;
    location / {{
      try_files $uri @s3;
      error_page 416 /__s3err/416.xml;
    }}
    location /__s3err/ {{
      internal;
      alias {d}/err/;
      default_type application/xml;
    }}
    location @s3 {{
      proxy_pass http://s3;
    }}
  }}
}}
""")
        self.logfile = os.path.join(d, "nginx.out")
        with open(self.logfile, "ab") as lf:
            self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", d], stdin=subprocess.DEVNULL, stdout=lf,
                                         stderr=lf, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited {self.proc.returncode}: {log_tail(self.logfile)} {log_tail(d + '/error.log')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False
        if not wait_until(up, 10):
            raise RuntimeError("nginx did not start listening")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def bytes_served(self):
        total = 0
        try:
            with open(os.path.join(self.dir, "access.log")) as f:
                for line in f:
                    method, status, n, uri = line.rstrip("\n").split(" ", 3)
                    if method == "GET" and status in ("200", "206") and uri.strip("/").count("/") >= 1:
                        total += int(n)
        except OSError:
            pass
        return total

    def _stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # fast shutdown of master and workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "dir", None):
            shutil.rmtree(self.dir, ignore_errors=True)


def offsets(size, count, seed):
    rnd = random.Random(seed)
    return [rnd.randrange(0, max(1, size - READ)) for _ in range(count)]


# ----------------------------------------------------------------------------- child programs --

def _child(argv):
    op = argv[0]
    if op == "pread":
        path, size, count, seed = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
        offs = offsets(size, count, seed)
        start = time.perf_counter()
        fd = os.open(path, os.O_RDONLY)
        n = 0
        try:
            for off in offs:
                n += len(os.pread(fd, READ, off))
        finally:
            os.close(fd)
        print(json.dumps({"seconds": time.perf_counter() - start, "bytes": n}))
    elif op == "ranged":
        import http.client
        import urllib.parse
        url, size, count, seed = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
        u = urllib.parse.urlsplit(url)
        target = u.path + ("?" + u.query if u.query else "")
        offs = offsets(size, count, seed)
        start = time.perf_counter()
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        n = 0
        for off in offs:
            conn.request("GET", target, headers={"Range": f"bytes={off}-{off + READ - 1}"})
            r = conn.getresponse()
            body = r.read()
            if r.status != 206:
                raise SystemExit(f"ranged GET: HTTP {r.status}")
            n += len(body)
        conn.close()
        print(json.dumps({"seconds": time.perf_counter() - start, "bytes": n}))
    elif op == "zip":
        import hashlib
        import zipfile
        path, member = argv[1], argv[2]
        start = time.perf_counter()
        with zipfile.ZipFile(path) as z:
            data = z.read(member)
        elapsed = time.perf_counter() - start
        print(json.dumps({"seconds": elapsed, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
    elif op == "tensor":
        import hashlib
        from safetensors import safe_open
        path, name = argv[1], argv[2]
        start = time.perf_counter()
        with safe_open(path, framework="np") as f:
            t = f.get_tensor(name)
        elapsed = time.perf_counter() - start
        print(json.dumps({"seconds": elapsed, "bytes": int(t.nbytes), "sha256": hashlib.sha256(t.tobytes()).hexdigest()}))
    elif op == "stat":
        d, count = argv[1], int(argv[2])
        names = [os.path.join(d, n) for n in sorted(os.listdir(d))]
        start = time.perf_counter()
        for i in range(count):
            os.stat(names[i % len(names)])
        print(json.dumps({"seconds": time.perf_counter() - start, "files": len(names)}))
    else:
        raise SystemExit(f"unknown child op {op}")


if __name__ == "__main__":
    _child(sys.argv[1:])
