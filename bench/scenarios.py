#!/usr/bin/env python3
"""modelfs against the tools a platform team would use instead, on the same bucket of the same S3
server, in one run. Each scenario measures modelfs and its comparators in the same loop (fresh
mounts for every cold measurement), takes the median of --runs, and adds rows to one table:

  scenario | modelfs | compared with | its figure | ratio | modelfs peak RSS | comparator peak RSS

ratio > 1 means modelfs is better (faster, fewer bytes, less memory), < 1 worse. The modelfs peak
RSS is VmHWM of the mount process, maximum over the scenario's fresh mounts.

  1 cold sequential read (dd bs=1M, fresh mount) vs curl (1 stream, 4 ranged), s3fs, rclone
  2 warm re-read vs a local file in the page cache (and the peers' re-read)
  3 embedded local store, cold and warm, vs reading its blob file directly
  4 random 64 KiB reads (Python pread, fio randread): time and read amplification
  5 zipfile: one 1 MiB member of a big zip; safetensors: one tensor; time and bytes fetched
  6 8 concurrent readers of one version: time and bytes fetched
  7 copy-in (cp into the mount) vs aws s3 cp, cp into s3fs and rclone
  8 metadata on the local store: create, ls -l, stat, find vs a local directory tree
  9 4x-size copy-in and read: peak RSS of the mount (and of s3fs, rclone)

Scenarios 1, 4, 5 and 6 also run against nginx serving the objects from plain files (the S3
server taken out of the way; listings and the rest are proxied to it), when nginx is installed
(--backends s3 to skip). Via nginx, the bytes each tool fetched come from nginx's access log, so
read amplification is shown for s3fs and rclone too. Local files are made cold with
POSIX_FADV_DONTNEED on the file (--drop-caches for echo 3 > /proc/sys/vm/drop_caches).
Needs AWS_ENDPOINT_URL and credentials in the environment and MODELFS_BIN (bench/run sets them).
Quick check:  bench/run peers --size-mib 128 --runs 1"""
import argparse
import datetime
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import MiB, ModelfsMount, dd, drop_caches, fmt, maxo, med, modelfs_env, run, timed  # noqa: E402
from peers import Nginx  # noqa: E402

BENCH = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------------- helpers --

class Bench(common.Bench):
    def __init__(self, args):
        super().__init__(args, "peers", "pb")  # every model and key this run creates starts with .tag
        self.env = self.store_env(os.path.join(self.work, "s3data"), self.endpoint)
        self.peers = [p for p in args.peers.split(",") if p]
        self.nginx = None
        self.nginx_root = os.path.join(self.work, "nginx-root")

    def store_env(self, data_dir, endpoint=None):
        return modelfs_env(data_dir, self.bucket, endpoint)

    def mount(self, endpoint=None, env=None, args=()):
        env = dict(env or self.env)
        if endpoint:
            env["MODELFS_ENDPOINT"] = endpoint
        return ModelfsMount(self.modelfs, env, self.mnt, args)

    def serve(self, path, key):
        """Put the bytes of key under the nginx root (a hard link, or a copy across filesystems)."""
        dst = os.path.join(self.nginx_root, self.bucket, key)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            os.link(path, dst)
        except OSError:
            shutil.copyfile(path, dst)

    def presigned(self, key, endpoint=None):
        url = self.s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=6 * 3600)
        if endpoint:
            u, e = urllib.parse.urlsplit(url), urllib.parse.urlsplit(endpoint)
            url = urllib.parse.urlunsplit(u._replace(netloc=e.netloc))
        return url

    def head_size(self, key):
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except Exception:
            return None

    def wait_object(self, key, size, timeout=900):
        if not common.wait_until(lambda: self.head_size(key) == size, timeout, step=0.05):
            raise RuntimeError(f"{key} did not appear with {size} bytes in {timeout} s")

    def evict(self, path):
        """Make a local file cold: drop_caches with --drop-caches, else POSIX_FADV_DONTNEED on the
        file (evicts its clean pages without emptying the whole machine's cache)."""
        if self.args.drop_caches:
            drop_caches()
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    def child(self, *argv, timeout=900):
        p = run([sys.executable, os.path.join(BENCH, "peers.py"), *argv], timeout=timeout)
        return json.loads(p.stdout.strip().splitlines()[-1])


def mbps(size, secs):
    return None if not secs else size / secs / 1e6


def make_file(path, size):
    """size bytes: one random MiB repeated, each copy stamped with its index (no two blocks equal)."""
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(i.to_bytes(8, "little") + block[8:])
        if size % MiB:
            f.write(block[: size % MiB])


def make_zip(path, size):
    """A ZIP_STORED archive of 1 MiB members (random bytes) about size bytes long; returns the
    member in the middle and its sha256."""
    import zipfile
    n = max(3, size // MiB)
    block = os.urandom(MiB)
    mid = n // 2
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for i in range(n):
            data = i.to_bytes(8, "little") + block[8:]
            if i == mid:
                digest = hashlib.sha256(data).hexdigest()
            z.writestr(zipfile.ZipInfo(f"shard-{i:05d}.bin"), data)
    return f"shard-{mid:05d}.bin", digest


def make_safetensors(path, size, count=64):
    """A safetensors file of `count` F32 tensors filling about size bytes, written directly in the
    format (8-byte header length, JSON header, data); returns the middle tensor's name and sha256."""
    per = max(4096, (size // count) // 4 * 4)
    header, off = {}, 0
    for i in range(count):
        header[f"layer.{i:03d}.weight"] = {"dtype": "F32", "shape": [per // 4], "data_offsets": [off, off + per]}
        off += per
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    block = os.urandom(MiB)
    mid = count // 2
    digest = None
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for i in range(count):
            sha = hashlib.sha256()
            left = per
            while left:
                chunk = block[: min(left, MiB)]
                chunk = i.to_bytes(8, "little") + chunk[8:] if left == per else chunk
                f.write(chunk)
                sha.update(chunk)
                left -= len(chunk)
            if i == mid:
                digest = sha.hexdigest()
    return f"layer.{mid:03d}.weight", digest


def fio(path, size, reads, seed, timeout=300):
    p = run(["fio", "--name=randread", f"--filename={path}", "--readonly", "--rw=randread", "--bs=64k",
             f"--size={size}", f"--io_size={reads * 65536}", "--ioengine=psync", "--invalidate=1",
             f"--randseed={seed}", "--runtime=120", "--output-format=json"], timeout=timeout)
    out = p.stdout
    j = json.loads(out[out.index("{"):])
    r = j["jobs"][0]["read"]
    return dict(seconds=r["runtime"] / 1000, bytes=r["io_bytes"], iops=r["iops"])


# --------------------------------------------------------------------------------- scenarios --

def backends(b):
    out = [("S3 server", b.endpoint)] if "s3" in b.args.backends else []
    if b.nginx:
        out.append(("nginx", b.nginx.endpoint))
    return out


def sc_sequential(b, obj):
    """1 and 2: cold sequential read of obj on a fresh mount, then warm re-reads."""
    a, size = b.args, b.size
    model, key, src = obj
    do_warm = "2" in a.scenarios
    local_warm = []
    for bname, ep in backends(b):
        url = b.presigned(key, None if bname == "S3 server" else ep)
        warm_here = do_warm and bname == "S3 server"
        res = {k: [] for k in ("curl1", "curl4", "cold", "warm", "rss")}
        pr = {p: dict(cold=[], warm=[], rss=[]) for p in b.peers}
        print(f"[1{' & 2' if warm_here else ''}] sequential read of {size // MiB} MiB via {bname}", flush=True)
        for r in range(a.runs):
            res["curl1"].append(b.attempt("curl 1 stream", lambda: mbps(size, timed(
                lambda: run(["curl", "-sf", "-o", "/dev/null", url])))))

            def curl4():
                q = size // 4
                procs = [subprocess.Popen(["curl", "-sf", "-o", "/dev/null", "-r",
                                           f"{i * q}-{size - 1 if i == 3 else (i + 1) * q - 1}", url]) for i in range(4)]
                try:
                    if any([p.wait(timeout=1800) for p in procs]):
                        raise RuntimeError("a ranged curl failed")
                finally:
                    for p in procs:
                        if p.poll() is None:
                            p.kill()
                            p.wait()
            res["curl4"].append(b.attempt("curl 4 streams", lambda: mbps(size, timed(curl4))))

            def ours():
                with b.mount(ep) as m:
                    f = m.version(model, "v1.safetensors")
                    res["cold"].append(mbps(size, dd(f, size)))
                    fetched = m.stats().get("s3.bytes_fetched")
                    if warm_here:
                        res["warm"] += [mbps(size, dd(f, size)) for _ in range(3)]
                    res["rss"].append(m.peak_rss_mib())
                    print(f"  run {r + 1}: modelfs cold {res['cold'][-1]:.1f} MB/s, fetched {fetched / MiB:.1f} MiB,"
                          f" peak RSS {res['rss'][-1]:.0f} MiB", flush=True)
            b.attempt(f"modelfs sequential read via {bname}", ours)
            for p in b.peers:
                def theirs():
                    with b.peer(p, ep) as m:
                        f = m.object(key)
                        pr[p]["cold"].append(mbps(size, dd(f, size)))
                        if warm_here:
                            pr[p]["warm"].append(mbps(size, dd(f, size)))
                        pr[p]["rss"].append(m.peak_rss_mib())
                b.attempt(f"{p} sequential read via {bname}", theirs)
            if warm_here and r == 0:
                dd(src, size)
            if warm_here:
                local_warm += [mbps(size, dd(src, size)) for _ in range(3)]
        rss = maxo(res["rss"])
        label = f"1. cold sequential read, {size // MiB} MiB, via {bname}"
        b.table.add(label, "MB/s", res["cold"], "curl GET, 1 stream", res["curl1"], True, rss)
        b.table.add(label, "MB/s", res["cold"], "curl, 4 ranged streams", res["curl4"], True, rss)
        for p in b.peers:
            b.table.add(label, "MB/s", res["cold"], b.peer_label(p), pr[p]["cold"], True, rss, maxo(pr[p]["rss"]))
        if warm_here:
            label = f"2. warm re-read, {size // MiB} MiB"
            b.table.add(label, "MB/s", res["warm"], "local file, page cache", local_warm, True, rss)
            for p in b.peers:
                b.table.add(label, "MB/s", res["warm"], f"{b.peer_label(p)} re-read", pr[p]["warm"], True, rss,
                            maxo(pr[p]["rss"]))


def sc_local_store(b, src):
    """3: the embedded local store, cold (file evicted, fresh mount) and warm, vs its blob file."""
    a, size = b.args, b.size
    env = b.store_env(os.path.join(b.work, "local"))
    model = f"{b.tag}-local"
    b.imp(src, model, env)
    blob = os.path.join(b.work, "local", "blobs", "objects", model, "v1.safetensors")
    if not os.path.exists(blob):
        raise RuntimeError(f"no blob at {blob}")
    how = "drop_caches" if a.drop_caches else "fadvise DONTNEED"
    print(f"[3] local store, {size // MiB} MiB (cold = blob evicted with {how}, fresh mount)", flush=True)
    cold, warm, bcold, bwarm, rss = [], [], [], [], []
    for r in range(a.runs):
        def blob_reads():
            b.evict(blob)
            bcold.append(mbps(size, dd(blob, size)))
            bwarm.extend(mbps(size, dd(blob, size)) for _ in range(3))
        b.attempt("blob file reads", blob_reads)

        def ours():
            b.evict(blob)
            with b.mount(env=env) as m:
                f = m.version(model, "v1.safetensors")
                cold.append(mbps(size, dd(f, size)))
                warm.extend(mbps(size, dd(f, size)) for _ in range(3))
                rss.append(m.peak_rss_mib())
        b.attempt("modelfs local store reads", ours)
        print(f"  run {r + 1}: modelfs cold {fmt(med(cold[-1:]))} warm {fmt(med(warm[-3:]))} MB/s;"
              f" blob cold {fmt(med(bcold[-1:]))} warm {fmt(med(bwarm[-3:]))} MB/s", flush=True)
    b.table.add(f"3. local store, cold read, {size // MiB} MiB", "MB/s", cold, f"blob file, cold ({how})", bcold, True, maxo(rss))
    b.table.add(f"3. local store, warm read, {size // MiB} MiB", "MB/s", warm, "blob file, page cache", bwarm, True, maxo(rss))


class Served:
    """Bytes the nginx front served while the block ran (None against the S3 server itself).
    Wrap the whole mount: nginx logs a request when it ends, and a reader may leave a long ranged
    GET open until it unmounts."""

    def __init__(self, b, bname):
        self.nginx = b.nginx if bname == "nginx" else None
        self.bytes = None

    def __enter__(self):
        self.start = self.nginx.bytes_served() if self.nginx else None
        return self

    def __exit__(self, *exc):
        if self.nginx:
            self.bytes = self.nginx.bytes_served() - self.start


def sc_random(b, obj):
    """4: COUNT preads of 64 KiB at seeded random offsets, and fio randread of as many blocks."""
    a, size = b.args, b.size
    model, key, _ = obj
    n, seed = a.random_reads, 1234
    for bname, ep in backends(b):
        print(f"[4] {n} random 64 KiB reads of {size // MiB} MiB via {bname}", flush=True)
        url = b.presigned(key, None if bname == "S3 server" else ep)
        res = {t: dict(pread=[], pamp=[], fio=[], famp=[], rss=[]) for t in ["modelfs"] + b.peers}
        ranged = []
        for r in range(a.runs):
            ranged.append(b.attempt("ranged GETs", lambda: b.child("ranged", url, size, n, seed)["seconds"]))
            for tool in ["modelfs"] + b.peers:
                d = res[tool]

                def one(kind):
                    with Served(b, bname) as sv:
                        with (b.mount(ep) if tool == "modelfs" else b.peer(tool, ep)) as m:
                            path = m.version(model, "v1.safetensors") if tool == "modelfs" else m.object(key)
                            if kind == "pread":
                                out = b.child("pread", path, size, n, seed)
                                d["pread"].append(out["seconds"])
                            else:
                                out = fio(path, size, n, seed)
                                d["fio"].append(out["iops"])
                            stats = m.stats()["s3.bytes_fetched"] if tool == "modelfs" else None
                            d["rss"].append(m.peak_rss_mib())
                    fetched = sv.bytes if sv.bytes is not None else stats
                    if fetched is not None:
                        d["pamp" if kind == "pread" else "famp"].append(fetched / out["bytes"])
                b.attempt(f"{tool} preads via {bname}", lambda: one("pread"))
                b.attempt(f"{tool} fio via {bname}", lambda: one("fio"))
            m_ = res["modelfs"]
            print(f"  run {r + 1}: modelfs pread {fmt(med(m_['pread'][-1:]))} s (amplification {fmt(med(m_['pamp'][-1:]))}),"
                  f" fio {fmt(med(m_['fio'][-1:]))} IOPS (amplification {fmt(med(m_['famp'][-1:]))});"
                  f" ranged GETs {fmt(med(ranged[-1:]))} s", flush=True)
        m_ = res["modelfs"]
        m_rss = maxo(m_["rss"])
        label = f"4. {n} random 64 KiB preads, via {bname}"
        b.table.add(label, "s", m_["pread"], "ranged GETs, 1 keep-alive connection", ranged, False, m_rss)
        for p in b.peers:
            b.table.add(label, "s", m_["pread"], b.peer_label(p), res[p]["pread"], False, m_rss, maxo(res[p]["rss"]))
        b.table.add(label, "bytes fetched / read", m_["pamp"], "ideal", [1.0], False, m_rss)
        if bname == "nginx":
            for p in b.peers:
                b.table.add(label, "bytes fetched / read", m_["pamp"], b.peer_label(p), res[p]["pamp"], False, m_rss,
                            maxo(res[p]["rss"]))
        label = f"4. fio randread bs=64k, {n} reads, via {bname}"
        for p in b.peers:
            b.table.add(label, "IOPS", m_["fio"], b.peer_label(p), res[p]["fio"], True, m_rss, maxo(res[p]["rss"]))
        if not b.peers:
            b.table.add(label, "IOPS", m_["fio"], "-", None, True, m_rss)
        b.table.add(label, "bytes fetched / read", m_["famp"], "ideal", [1.0], False, m_rss)
        if bname == "nginx":
            for p in b.peers:
                b.table.add(label, "bytes fetched / read", m_["famp"], b.peer_label(p), res[p]["famp"], False, m_rss,
                            maxo(res[p]["rss"]))


def sc_formats(b):
    """5: one member of a big ZIP_STORED zip with zipfile; one tensor of a big safetensors file."""
    a, size = b.args, b.size
    zpath = os.path.join(b.work, "shards.zip")
    spath = os.path.join(b.work, "weights-st.safetensors")
    member, zsha = make_zip(zpath, size)
    tensor, tsha = make_safetensors(spath, size)
    cases = [("zip", zpath, member, zsha, f"{b.tag}-zip", "v1.zip", "5. zipfile: read one 1 MiB member"),
             ("tensor", spath, tensor, tsha, f"{b.tag}-st", "v1.safetensors", "5. safetensors: load one tensor")]
    for op, path, name, sha, model, file, label in cases:
        b.imp(path, model)
        key = f"{model}/{file}"
        b.serve(path, key)
        fsize = os.path.getsize(path)

        def check(res):
            if res["sha256"] != sha:
                raise RuntimeError(f"{op} read wrong bytes")
            return res
        for bname, ep in backends(b):
            print(f"[5] {op}: {name} of a {fsize // MiB} MiB file via {bname}", flush=True)
            res = {t: dict(t=[], mib=[], rss=[]) for t in ["modelfs"] + b.peers}
            local, nbytes = [], None
            for r in range(a.runs):
                if bname == "S3 server":
                    def loc():
                        b.evict(path)
                        local.append(check(b.child(op, path, name))["seconds"])
                    b.attempt(f"{op} local file", loc)
                for tool in ["modelfs"] + b.peers:
                    d = res[tool]

                    def one():
                        nonlocal nbytes
                        with Served(b, bname) as sv:
                            with (b.mount(ep) if tool == "modelfs" else b.peer(tool, ep)) as m:
                                f = m.version(model, file) if tool == "modelfs" else m.object(key)
                                out = check(b.child(op, f, name))
                                d["t"].append(out["seconds"])
                                nbytes = out["bytes"]
                                stats = m.stats()["s3.bytes_fetched"] if tool == "modelfs" else None
                                d["rss"].append(m.peak_rss_mib())
                        fetched = sv.bytes if sv.bytes is not None else stats
                        if fetched is not None:
                            d["mib"].append(fetched / MiB)
                    b.attempt(f"{tool} {op} via {bname}", one)
                m_ = res["modelfs"]
                print(f"  run {r + 1}: modelfs {fmt(med(m_['t'][-1:]))} s, fetched {fmt(med(m_['mib'][-1:]))} MiB"
                      + (f"; local cold {fmt(med(local[-1:]))} s" if local else ""), flush=True)
            m_ = res["modelfs"]
            m_rss = maxo(m_["rss"])
            lab = f"{label} of {fsize // MiB} MiB, via {bname}"
            if bname == "S3 server":
                b.table.add(lab, "s", m_["t"], f"local file, cold ({'drop_caches' if a.drop_caches else 'fadvise'})",
                            local, False, m_rss)
            for p in b.peers:
                b.table.add(lab, "s", m_["t"], b.peer_label(p), res[p]["t"], False, m_rss, maxo(res[p]["rss"]))
            b.table.add(lab, "MiB fetched", m_["mib"], "bytes asked for", [nbytes / MiB] if nbytes else None, False, m_rss)
            if bname == "nginx":
                for p in b.peers:
                    b.table.add(lab, "MiB fetched", m_["mib"], b.peer_label(p), res[p]["mib"], False, m_rss,
                                maxo(res[p]["rss"]))
        os.unlink(path)


def sc_concurrent(b, obj):
    """6: READERS processes dd the same version at once, on a fresh mount."""
    a, size = b.args, b.size
    model, key, _ = obj
    k = a.readers

    def readers(path):
        start = time.perf_counter()
        procs = [subprocess.Popen(["dd", f"if={path}", "of=/dev/null", "bs=1M"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(k)]
        try:
            errs = [p.communicate(timeout=3600)[1] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        t = time.perf_counter() - start
        for p, e in zip(procs, errs):
            if p.returncode != 0 or int(e.strip().splitlines()[-1].split()[0]) != size:
                raise RuntimeError(f"a reader failed: {e.strip()[-300:]}")
        return t
    for bname, ep in backends(b):
        print(f"[6] {k} concurrent readers of {size // MiB} MiB via {bname}", flush=True)
        res = {t: dict(t=[], mib=[], rss=[]) for t in ["modelfs"] + b.peers}
        for r in range(a.runs):
            for tool in ["modelfs"] + b.peers:
                d = res[tool]

                def one():
                    with Served(b, bname) as sv:
                        with (b.mount(ep) if tool == "modelfs" else b.peer(tool, ep)) as m:
                            f = m.version(model, "v1.safetensors") if tool == "modelfs" else m.object(key)
                            d["t"].append(readers(f))
                            stats = m.stats()["s3.bytes_fetched"] if tool == "modelfs" else None
                            d["rss"].append(m.peak_rss_mib())
                    fetched = sv.bytes if sv.bytes is not None else stats
                    if fetched is not None:
                        d["mib"].append(fetched / MiB)
                b.attempt(f"{tool} concurrent readers via {bname}", one)
            m_ = res["modelfs"]
            print(f"  run {r + 1}: modelfs {fmt(med(m_['t'][-1:]))} s, fetched {fmt(med(m_['mib'][-1:]))} MiB", flush=True)
        m_ = res["modelfs"]
        m_rss = maxo(m_["rss"])
        label = f"6. {k} concurrent readers of {size // MiB} MiB, via {bname}"
        for p in b.peers:
            b.table.add(label, "s", m_["t"], b.peer_label(p), res[p]["t"], False, m_rss, maxo(res[p]["rss"]))
        b.table.add(label, "MiB fetched", m_["mib"], "one copy", [size / MiB], False, m_rss)
        if bname == "nginx":
            for p in b.peers:
                b.table.add(label, "MiB fetched", m_["mib"], b.peer_label(p), res[p]["mib"], False, m_rss,
                            maxo(res[p]["rss"]))


def copy_in(b, src, size, tool, timeout=3600):
    """One copy-in of src with tool; returns (seconds, peak RSS MiB of the process holding the
    bytes). Time runs until the object is complete in S3 (rclone's cache modes upload after close)."""
    tag = uuid.uuid4().hex[:8]
    if tool == "modelfs":
        model = f"{b.tag}-cp-{tag}"
        with b.mount() as m:
            d = os.path.join(m.path, "models", model)
            os.mkdir(d)
            t = timed(lambda: run(["cp", src, os.path.join(d, "v1.safetensors")], timeout=timeout))
            rss = m.peak_rss_mib()
            b.attempt("rmdir of the copied model", lambda: os.rmdir(d))
        return t, rss
    key = f"{b.tag}-cp-{tag}.safetensors"
    try:
        if tool == "aws":
            start = time.perf_counter()
            p = run(["/usr/bin/time", "-f", "%M", "aws", "s3", "cp", "--only-show-errors", src,
                     f"s3://{b.bucket}/{key}"], timeout=timeout)
            return time.perf_counter() - start, int(p.stderr.strip().splitlines()[-1]) / 1024
        extra = ["--vfs-write-back", "0s"] if tool == "rclone-writes" else []
        with b.peer(tool, extra=extra) as m:
            start = time.perf_counter()
            run(["cp", src, m.object(key)], timeout=timeout)
            b.wait_object(key, size)
            t = time.perf_counter() - start
            return t, m.peak_rss_mib()
    finally:
        b.s3.delete_object(Bucket=b.bucket, Key=key)


def sc_copy_in(b, src):
    """7: cp of a file into the mount vs aws s3 cp and cp into the peers' mounts."""
    a, size = b.args, b.size
    print(f"[7] copy-in of {size // MiB} MiB (source in the page cache)", flush=True)
    tools = ["modelfs", "aws"] + [p for p in b.peers if p != "rclone-full"]
    if any(p.startswith("rclone") for p in b.peers):
        tools.append("rclone-writes")
    res = {t: dict(t=[], rss=[]) for t in tools}
    dd(src, size)
    for r in range(a.runs):
        for tool in tools:
            out = b.attempt(f"{tool} copy-in", lambda: copy_in(b, src, size, tool))
            if out:
                res[tool]["t"].append(mbps(size, out[0]))
                res[tool]["rss"].append(out[1])
        print("  run %d: " % (r + 1) + ", ".join(f"{t} {fmt(med(res[t]['t'][-1:]))} MB/s" for t in tools), flush=True)
    label = f"7. copy-in of {size // MiB} MiB"
    names = {"aws": "aws s3 cp", "rclone-writes": "rclone (--vfs-cache-mode writes, write-back 0s)"}
    m = res["modelfs"]
    for t in tools[1:]:
        other = names[t] if t in names else "cp into " + b.peer_label(t)
        b.table.add(label, "MB/s", m["t"], other, res[t]["t"], True, maxo(m["rss"]), maxo(res[t]["rss"]))


def sc_metadata(b):
    """8: the local store: 1,000 versions of one model, 1,000 models of one version each."""
    a = b.args
    env = b.store_env(os.path.join(b.work, "meta"))
    nv, nm, ns = a.versions, a.models, a.stats
    plain = os.path.join(b.work, "plain")
    print(f"[8] metadata: {nv} versions, {nm} models, {ns} stats (local store)", flush=True)

    def populate(root, many):
        """Creates the tree under root/models; returns seconds for the versions and for the models."""
        models = os.path.join(root, "models")
        os.makedirs(os.path.join(models, many), exist_ok=True)

        def versions():
            for i in range(nv):
                with open(os.path.join(models, many, f"v{i}.pt"), "wb") as f:
                    f.write(b"w" * 100)

        def modelset():
            for i in range(nm):
                os.mkdir(os.path.join(models, f"{b.tag}-m{i}"))
                with open(os.path.join(models, f"{b.tag}-m{i}", "v1.pt"), "wb") as f:
                    f.write(b"w" * 100)
        return timed(versions), timed(modelset)
    many = f"{b.tag}-many"
    with b.mount(env=env) as m:
        c_ours = populate(m.path, many)
    c_local = populate(plain, many)
    res = {k: dict(ours=[], local=[]) for k in ("ls_cold", "ls", "stat", "find")}
    rss = []

    def measure(root, side):
        d = os.path.join(root, "models", many)
        res["ls_cold"][side].append(timed(lambda: run(["ls", "-l", d])) * 1000)
        res["ls"][side] += [timed(lambda: run(["ls", "-l", d])) * 1000 for _ in range(5)]
        res["stat"][side].append(b.child("stat", d, ns)["seconds"] * 1000)
        res["find"][side] += [timed(lambda: run(["find", os.path.join(root, "models")], capture=True)) * 1000
                              for _ in range(3)]
    for r in range(a.runs):
        def mine():
            with b.mount(env=env) as m:
                listed = len(run(["ls", os.path.join(m.path, "models", many)]).stdout.split())
                if listed != nv:
                    raise RuntimeError(f"ls shows {listed} versions, expected {nv}")
                measure(m.path, "ours")
                rss.append(m.peak_rss_mib())
        b.attempt("modelfs metadata", mine)
        b.attempt("local metadata", lambda: measure(plain, "local"))
        print(f"  run {r + 1}: ls -l {fmt(med(res['ls']['ours'][-5:]))} ms vs {fmt(med(res['ls']['local'][-5:]))} ms,"
              f" {ns} stats {fmt(med(res['stat']['ours'][-1:]))} ms vs {fmt(med(res['stat']['local'][-1:]))} ms", flush=True)
    r_ = maxo(rss)
    b.table.add(f"8. create {nv} versions of 100 B", "s", [c_ours[0]], "local directory", [c_local[0]], False, r_)
    b.table.add(f"8. create {nm} models with a version", "s", [c_ours[1]], "local directory", [c_local[1]], False, r_)
    b.table.add(f"8. ls -l of {nv} versions, first after mount", "ms", res["ls_cold"]["ours"], "local directory (warm)",
                res["ls_cold"]["local"], False, r_)
    b.table.add(f"8. ls -l of {nv} versions", "ms", res["ls"]["ours"], "local directory", res["ls"]["local"], False, r_)
    b.table.add(f"8. {ns} stats over {nv} versions", "ms", res["stat"]["ours"], "local directory", res["stat"]["local"], False, r_)
    b.table.add(f"8. find over {nm} + 1 models", "ms", res["find"]["ours"], "local directory", res["find"]["local"], False, r_)
    shutil.rmtree(plain, ignore_errors=True)


def sc_big(b):
    """9: copy-in and read of a BIG file: peak RSS of the mount vs its bound, and of the peers."""
    a = b.args
    big = a.big_mib * MiB
    src = os.path.join(b.work, "big.safetensors")
    make_file(src, big)
    idle = []
    for _ in range(2):
        with b.mount() as m:
            m.stats()
            idle.append(m.peak_rss_mib())
    base = max(idle)
    bound = 256  # the target; the mount's own: idle + cache + GETs (or parts) in flight
    stated = f"target 256 (idle {base:.0f} + {a.cache_memory} cache + GETs or parts in flight)"
    print(f"[9] {a.big_mib} MiB copy-in and read: peak RSS (idle mount {base:.0f} MiB; target 256 MiB: the"
          f" {a.cache_memory} MiB cache, up to 64 MiB of GETs in the air, or 5-7 upload parts of 8 MiB)", flush=True)
    tools = ["modelfs"] + [p for p in b.peers if p != "rclone-full"]
    res = {t: dict(cp=[], cprss=[], rd=[], rdrss=[]) for t in tools}
    for r in range(a.big_runs):
        for tool in tools:
            tag = uuid.uuid4().hex[:8]
            if tool == "modelfs":
                model = f"{b.tag}-big-{tag}"

                def mine():
                    with b.mount() as m:
                        d = os.path.join(m.path, "models", model)
                        os.mkdir(d)
                        res[tool]["cp"].append(mbps(big, timed(lambda: run(["cp", src, os.path.join(d, "v1.safetensors")], timeout=7200))))
                        res[tool]["cprss"].append(m.peak_rss_mib())
                    with b.mount() as m:
                        res[tool]["rd"].append(mbps(big, dd(m.version(model, "v1.safetensors"), big)))
                        res[tool]["rdrss"].append(m.peak_rss_mib())
                        b.attempt("rmdir of the big model", lambda: os.rmdir(os.path.join(m.path, "models", model)))
                b.attempt("modelfs big copy-in and read", mine)
            else:
                key = f"{b.tag}-big-{tag}.safetensors"

                def theirs():
                    try:
                        with b.peer(tool) as m:
                            start = time.perf_counter()
                            run(["cp", src, m.object(key)], timeout=7200)
                            b.wait_object(key, big)
                            res[tool]["cp"].append(mbps(big, time.perf_counter() - start))
                            res[tool]["cprss"].append(m.peak_rss_mib())
                        with b.peer(tool) as m:
                            res[tool]["rd"].append(mbps(big, dd(m.object(key), big)))
                            res[tool]["rdrss"].append(m.peak_rss_mib())
                    finally:
                        b.s3.delete_object(Bucket=b.bucket, Key=key)
                b.attempt(f"{tool} big copy-in and read", theirs)
        print("  run %d: " % (r + 1) + ", ".join(
            f"{t} cp {fmt(med(res[t]['cp'][-1:]))} MB/s RSS {fmt(med(res[t]['cprss'][-1:]), 0)} MiB,"
            f" read {fmt(med(res[t]['rd'][-1:]))} MB/s RSS {fmt(med(res[t]['rdrss'][-1:]), 0)} MiB" for t in tools), flush=True)
    os.unlink(src)
    m = res["modelfs"]
    b.table.add("9. idle mount", "peak RSS MiB", idle, "-", None, False, base)
    for what, k, kr in (("copy-in", "cp", "cprss"), ("read", "rd", "rdrss")):
        label = f"9. {a.big_mib} MiB {what}"
        peak = maxo(m[kr])
        b.table.add(label, "peak RSS MiB", [peak] if peak else None, stated, [bound], False, peak)
        for p in tools[1:]:
            theirs = maxo(res[p][kr])
            b.table.add(label, "peak RSS MiB", [peak] if peak else None, b.peer_label(p), [theirs] if theirs else None,
                        False, peak, theirs)
            b.table.add(label, "MB/s", m[k], b.peer_label(p), res[p][k], True, peak, theirs)


# -------------------------------------------------------------------------------------- main --

def versions_line():
    def first(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except Exception:
            return "n/a"
    root = os.path.dirname(BENCH)
    rev = first(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    return (f"modelfs {rev}; {first(['s3fs', '--version'])}; {first(['rclone', 'version'])};"
            f" {first(['fio', '--version'])}; {first(['nginx', '-v'])}; {first(['curl', '--version'])[:12]};"
            f" {first(['aws', '--version']).split()[0]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024, help="size of the versions read and written (default 1024)")
    ap.add_argument("--big-mib", type=int, help="scenario 9's file (default 4 x --size-mib)")
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement; medians are reported")
    ap.add_argument("--big-runs", type=int, default=1, help="runs of scenario 9 (default 1)")
    ap.add_argument("--scenarios", default="1,2,3,4,5,6,7,8,9")
    ap.add_argument("--peers", default="s3fs,rclone-off,rclone-full",
                    help="comma-separated: s3fs, rclone-off, rclone-full ('' for none)")
    ap.add_argument("--backends", default="s3,nginx",
                    help="where scenarios 1, 4, 5, 6 read from: s3 (the S3 server), nginx (nginx serving the objects"
                         " from plain files, everything else proxied to the S3 server); default both")
    ap.add_argument("--no-nginx", action="store_true", help="same as --backends s3")
    ap.add_argument("--drop-caches", action="store_true",
                    help="make local files cold with echo 3 > /proc/sys/vm/drop_caches instead of fadvise DONTNEED")
    ap.add_argument("--random-reads", type=int, default=1000)
    ap.add_argument("--readers", type=int, default=8)
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--stats", type=int, default=10000)
    ap.add_argument("--cache-memory", type=int, default=128, help="the mount's --cache-memory default, for the bound")
    ap.add_argument("--bucket", default="models")
    ap.add_argument("--work-dir", default=None, help="where the temp files go (default $TMPDIR or /tmp)")
    ap.add_argument("--markdown", help="also write the markdown table to this file")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    a.scenarios = set(s.strip() for s in a.scenarios.split(","))
    a.big_mib = a.big_mib or 4 * a.size_mib
    a.backends = set(x.strip() for x in a.backends.split(",") if x.strip())
    if a.no_nginx:
        a.backends.discard("nginx")

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    b = Bench(a)
    for p in b.peers:
        if not shutil.which(p.split("-")[0]):
            sys.exit(f"{p.split('-')[0]} is not installed (bench/run installs it)")
    started = time.time()
    try:
        src = os.path.join(b.work, "weights.safetensors")
        make_file(src, b.size)
        obj = None
        if "nginx" in a.backends and shutil.which("nginx") and a.scenarios & {"1", "4", "5", "6"}:
            os.makedirs(b.nginx_root)
            b.nginx = Nginx(b.nginx_root, b.endpoint, b.work).__enter__()
        if a.scenarios & {"1", "2", "4", "6"}:
            model = f"{b.tag}-seq"
            b.imp(src, model)
            obj = (model, f"{model}/v1.safetensors", src)
            b.serve(src, obj[1])
        if a.scenarios & {"1", "2"}:
            b.attempt("scenario 1/2", lambda: sc_sequential(b, obj))
        if "3" in a.scenarios:
            b.attempt("scenario 3", lambda: sc_local_store(b, src))
        if "4" in a.scenarios:
            b.attempt("scenario 4", lambda: sc_random(b, obj))
        if "5" in a.scenarios:
            b.attempt("scenario 5", lambda: sc_formats(b))
        if "6" in a.scenarios:
            b.attempt("scenario 6", lambda: sc_concurrent(b, obj))
        if "7" in a.scenarios:
            b.attempt("scenario 7", lambda: sc_copy_in(b, src))
        if "8" in a.scenarios:
            b.attempt("scenario 8", lambda: sc_metadata(b))
        if "9" in a.scenarios:
            b.attempt("scenario 9", lambda: sc_big(b))
    finally:
        common.cleanup()
        b.delete_prefix(b.tag)
        b.delete_prefix(f".catalog/{b.tag}")
        shutil.rmtree(b.work, ignore_errors=True)

    header = (f"### modelfs vs peers — {datetime.date.today()}, {a.size_mib} MiB versions ({a.big_mib} MiB in 9),"
              f" {a.runs} run(s), medians; S3: OpenStack Swift + s3api at {b.endpoint}"
              f"{'; nginx: the object served from a plain file' if b.nginx else ''}; {os.cpu_count()} cores;"
              f" {time.time() - started:.0f} s\n\n{versions_line()}\n\n"
              "ratio: > 1 means modelfs is better (faster, fewer bytes, less memory). Peers with default options;"
              " rclone copy-in with writes mode uses --vfs-write-back 0s and is timed until the object is in S3."
              " Bytes fetched: modelfs's .stats (s3.bytes_fetched) against the S3 server; via nginx, for every tool,"
              " the object bytes nginx sent (its access log, read after unmounting).")
    md = b.table.markdown(header)
    print("\n" + md)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(md + "\n")


if __name__ == "__main__":
    main()
