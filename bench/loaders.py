#!/usr/bin/env python3
"""Model loaders through the mount against downloading (issue 21's "Done means"), each a ratio
against its baseline measured in the same run, on one S3 server (bench/run runs it once per server).
Medians of --runs; every modelfs figure "cold" is a fresh mount with an empty disk cache directory
after `sync; echo 3 > /proc/sys/vm/drop_caches`, and every baseline that downloads starts from
dropped caches too. Each measurement runs in a child process with a timeout; every mount is
unmounted in a finally.

  1 safetensors.numpy.load_file of a SIZE, 64-tensor file, cold, vs one curl GET to /dev/null and
    vs curl to a local file then load_file of it
  2 the same after a remount (disk cache warm) vs load_file of a local copy in the page cache
  3 from_pretrained-style load of a SIZE model of 4 shards (+ model.safetensors.index.json; tensors
    read with safe_open/get_tensor in the model's order: layer by layer, q k gate down, which is not
    the files' lexicographic order) from a stored zip view, a deflated zip view (zip -r) and a
    .tar.gz view, vs download + unpack + the same load from the local directory; and bytes fetched
    for one sequential read of a .tar.gz member vs the compressed bytes that hold it
  4 Run:ai Model Streamer's engine reading the version's path in the mount vs reading s3://bucket/key
  5 dd and load_file through s3fs and rclone mounts of the same bucket (modelfs's from 1 and 6)
  6 cold sequential dd bs=4M vs curl; CPU seconds of the mount per GiB read vs curl's
  7 local store: cold dd vs dd of the blob file; warm re-read vs a local file in the page cache
  8 one tensor via safe_open: bytes fetched / its size; 8 readers of one file: fetched / file size
  9 peak RSS (VmHWM) of the mount during load_file of a --big-mib file vs the 256 MiB target
 10 cold dd with runs of 32 MiB per GET (the default) vs one GET per 8 MiB segment, interleaved:
    the time and the S3 server's CPU per GiB

The Run:ai streamer's Python package imports torch (too heavy here) for its tensor wrappers; its
engine (libstreamer: C++ threads reading ranges in chunks, RUNAI_STREAMER_CONCURRENCY, the S3
plugin) is loaded without it and handed the file's tensor ranges in one request, as its
SafetensorsStreamer does.
Needs AWS_ENDPOINT_URL and credentials, MODELFS_BIN, root (drop_caches). bench/run sets them:
  bench/run loaders [--server rgw|s3api|both] [--quick] [--runs N] [--size-mib M] [--scenarios 1,3]
  bench/run loaders --server rgw --runs 1           the issue's 1 GiB sizes, one run (~12 min on RGW)
  bench/run loaders --server rgw --rss-gib 4        only 9: peak RSS of the mount loading 4 GiB"""
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
import tarfile
import time
import zlib

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
import common  # noqa: E402
from common import (GiB, MiB, ModelfsMount, cleanup, cpu_seconds, drop_caches, machine_cpu, fmt, maxo, med,  # noqa: E402
                    modelfs_env, run, server_cpu)
ROLES = ["self_attn.q_proj", "self_attn.k_proj", "mlp.gate_proj", "mlp.down_proj"]  # the model's order


# ----------------------------------------------------------------------------- the files --

def block_bytes(seed):
    """4 MiB of float16 weights, normal: they deflate to ~92% as real fp16 weights do, so zip -r and
    tar czf really deflate them (random bytes would be stored), at ~24 MB/s (bf16-like data deflates
    to ~79% but at ~11 MB/s here, too slow to make 1 GiB archives in every run)."""
    import numpy as np
    return np.random.default_rng(seed).standard_normal(2 * MiB, dtype=np.float32).astype(np.float16).tobytes()


def write_safetensors(path, tensors, block):
    """tensors: [(name, nbytes)]; written in the format's own order (sorted names) like save_file,
    each tensor's first 8 bytes of every MiB stamped so no two MiB are equal."""
    tensors = sorted(tensors)
    header, off = {}, 0
    for name, n in tensors:
        header[name] = {"dtype": "F16", "shape": [n // 2], "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    stamp = int.from_bytes(hashlib.sha256(path.encode()).digest()[:4], "little")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        i = 0
        for _, n in tensors:
            left = n
            while left:
                k = min(left, len(block))
                f.write((stamp + i).to_bytes(8, "little") + block[8:k])
                left -= k
                i += 1
    return off


def single_file(path, size, block, count=64):
    per = max(4096, size // count // 4 * 4)
    write_safetensors(path, [(f"layer.{i:03d}.weight", per) for i in range(count)], block)
    return f"layer.{count // 2:03d}.weight", per


def sharded_model(d, size, block, layers=16, shards=4):
    """16 layers x 4 tensors in 4 shards of 4 layers, an index, a config.json: HF's layout."""
    os.makedirs(d, exist_ok=True)
    per = max(4096, size // (layers * len(ROLES)) // 4 * 4)
    weight_map = {}
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        names = [f"model.layers.{i}.{r}.weight" for i in range(s * layers // shards, (s + 1) * layers // shards)
                 for r in ROLES]
        write_safetensors(os.path.join(d, fname), [(n, per) for n in names], block)
        weight_map.update({n: fname for n in names})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": per * len(weight_map)}, "weight_map": dict(sorted(weight_map.items()))}, f,
                  indent=2)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architectures": ["BenchForCausalLM"], "num_hidden_layers": layers}, f)


def model_order(names):
    """Layer by layer (numerically: layers.10 after layers.9), roles in the forward pass's order."""
    def key(n):
        parts = n.split(".")
        role = ".".join(parts[3:-1])
        return int(parts[2]), ROLES.index(role) if role in ROLES else len(ROLES), n
    return sorted(names, key=key)


def gz_span(tgz, member):
    """Compressed bytes of tgz that hold member's data: from the gzip position where its first
    byte comes out to where its last does (64 KiB granularity)."""
    with tarfile.open(tgz, "r:gz") as t:
        m = t.getmember(member)
        start, end = m.offset_data, m.offset_data + m.size
    d = zlib.decompressobj(wbits=31)
    out = pos = 0
    first = last = None
    with open(tgz, "rb") as f:
        while True:
            chunk = f.read(64 << 10)
            if not chunk:
                break
            pos += len(chunk)
            out += len(d.decompress(chunk))
            while d.unconsumed_tail:
                out += len(d.decompress(d.unconsumed_tail))
            if first is None and out > start:
                first = pos - len(chunk)
            if out >= end:
                last = pos
                break
    return last - first


# ----------------------------------------------------------------------------- child programs --

def child_main(argv):
    """One measurement; prints {"seconds", "bytes"} as JSON (interpreter start not timed)."""
    op = argv[0]
    if op == "load":
        from safetensors.numpy import load_file
        start = time.perf_counter()
        t = load_file(argv[1])
        secs = time.perf_counter() - start
        out = {"seconds": secs, "bytes": sum(v.nbytes for v in t.values())}
    elif op == "pretrained":
        from safetensors import safe_open
        d = argv[1]
        start = time.perf_counter()
        with open(os.path.join(d, "model.safetensors.index.json")) as f:
            weight_map = json.load(f)["weight_map"]
        with open(os.path.join(d, "config.json")) as f:
            json.load(f)
        handles, state, n = {}, {}, 0
        try:
            for name in model_order(weight_map):
                shard = weight_map[name]
                if shard not in handles:
                    handles[shard] = safe_open(os.path.join(d, shard), framework="np").__enter__()
                state[name] = handles[shard].get_tensor(name)
                n += state[name].nbytes
        finally:
            for h in handles.values():
                h.__exit__(None, None, None)
        out = {"seconds": time.perf_counter() - start, "bytes": n}
    elif op == "tensor":
        from safetensors import safe_open
        start = time.perf_counter()
        with safe_open(argv[1], framework="np") as f:
            t = f.get_tensor(argv[2])
        out = {"seconds": time.perf_counter() - start, "bytes": int(t.nbytes)}
    elif op == "runai":
        out = runai_read(argv[1])
    else:
        raise SystemExit(f"unknown child op {op}")
    print(json.dumps(out), flush=True)


def runai_read(path):
    """Every tensor of a safetensors file (a path or s3://bucket/key) through the Run:ai Model
    Streamer's engine: the header in two small requests, then all tensors in one request of ranges
    into one buffer, as SafetensorsStreamer asks for a file."""
    import importlib.util
    import types
    import numpy as np
    spec = importlib.util.find_spec("runai_model_streamer")
    if spec is None:
        raise SystemExit("runai-model-streamer is not installed")
    pkg = types.ModuleType("runai_model_streamer")  # its __init__ imports torch; the engine needs none
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["runai_model_streamer"] = pkg
    from runai_model_streamer.libstreamer.libstreamer import (runai_end, runai_request, runai_response,
                                                              runai_set_credentials, runai_start)
    from runai_model_streamer.s3_utils.s3_utils import S3Credentials

    streamer = runai_start()
    keep = []

    def read(ranges):
        """ranges: [(offset, numpy buffer)]; waits for all."""
        keep.extend(b for _, b in ranges)
        sid = runai_request(streamer, [path], [len(ranges)], [o for o, _ in ranges], [b.nbytes for _, b in ranges],
                            [b.ctypes.data for _, b in ranges])
        while True:
            r = runai_response(streamer, timeout_ms=600_000)
            if r is None:
                raise RuntimeError("streamer finished early")
            code, got, _, _, done = r
            if code != 0:
                raise RuntimeError(f"streamer response {code}")
            if got == sid and done:
                return
    try:
        if path.startswith("s3://"):
            runai_set_credentials(streamer, S3Credentials(
                access_key_id=os.environ["AWS_ACCESS_KEY_ID"], secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                region_name=os.environ.get("AWS_REGION", "us-east-1"), endpoint=os.environ["AWS_ENDPOINT_URL"]))
        start = time.perf_counter()
        n8 = np.empty(8, np.uint8)
        read([(0, n8)])
        n = struct.unpack("<Q", n8.tobytes())[0]
        hb = np.empty(n, np.uint8)
        read([(8, hb)])
        header = json.loads(hb.tobytes())
        header.pop("__metadata__", None)
        spans = sorted(tuple(v["data_offsets"]) for v in header.values())
        buf = np.empty(spans[-1][1], np.uint8)
        read([(8 + n + a, buf[a:b]) for a, b in spans if b > a])
        secs = time.perf_counter() - start
    finally:
        runai_end(streamer)
    return {"seconds": secs, "bytes": int(buf.nbytes)}


# ----------------------------------------------------------------------------------- the bench --

class Bench(common.Bench):
    def __init__(self, a):
        super().__init__(a, "loaders", "lb", import_timeout=3600)
        self.a = a
        self.env = modelfs_env(os.path.join(self.work, "data"), self.bucket, self.endpoint)
        self.caches = 0
        self.fetched = {}  # bytes fetched per (what): for the notes

    # --- mounts and children
    def cold_mount(self, env=None, cache=None):
        """A fresh mount after drop_caches, with an empty disk cache dir (or `cache`, kept)."""
        if cache is None:
            self.caches += 1
            cache = os.path.join(self.work, f"cache-{self.caches}")
            shutil.rmtree(cache, ignore_errors=True)
        os.makedirs(cache, exist_ok=True)
        drop_caches()
        return ModelfsMount(self.modelfs, env or self.env, self.mnt, ["--cache-dir", cache])

    def child(self, *argv, timeout=None, env=None):
        p = run([sys.executable, os.path.abspath(__file__), "--child", *argv], env=env,
                timeout=timeout or self.a.timeout)
        return json.loads(p.stdout.strip().splitlines()[-1])

    def url(self, key):
        return self.s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=6 * 3600)

    def curl(self, key, out="/dev/null"):
        """Seconds and CPU seconds (user+sys) of one curl GET."""
        return common.timed_child(["curl", "-sf", "-o", out, self.url(key)], what=f"curl of {key}")

    def dd(self, path, expect):
        return common.dd(path, expect, "4M", self.a.timeout)


def say(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------------- scenarios --

def sc_load(b, st):
    """1, 2 (and 6's dd, and the CPU figures): the single file, cold and after a remount."""
    a, model, key, size = b.a, st["model"], st["key"], st["size"]
    r = {k: [] for k in ("load", "curl", "curl_load", "warm", "local_warm", "dd", "dd_curl", "cpu", "curl_cpu", "rss",
                         "fetched", "curl_machine", "dd_machine", "curl_server", "dd_server")}
    local = os.path.join(b.work, "download.safetensors")
    say(f"[1, 2, 6] load_file and dd of {size // MiB} MiB, 64 tensors: cold mounts vs curl")
    for i in range(a.runs):
        def curl_only():
            drop_caches()
            m0, s0 = machine_cpu(), server_cpu()
            t, c = b.curl(key)
            r["curl_machine"].append((machine_cpu() - m0) / (size / GiB))
            if s0 is not None:
                r["curl_server"].append((server_cpu() - s0) / (size / GiB))
            r["curl"].append(t)
            r["dd_curl"].append(t)
            r["curl_cpu"].append(c / (size / GiB))
        b.attempt("curl GET", curl_only)

        def curl_then_load():
            drop_caches()
            t, _ = b.curl(key, local)
            r["curl_load"].append(t + b.child("load", local)["seconds"])
        b.attempt("curl to a file, then load_file", curl_then_load)

        def warm_local():
            b.child("load", local)
            r["local_warm"].append(b.child("load", local)["seconds"])
        b.attempt("load_file of a local copy, page cache", warm_local)
        if os.path.exists(local):
            os.unlink(local)

        cache = os.path.join(b.work, f"cache-warm-{i}")

        def ours():
            with b.cold_mount(cache=cache) as m:
                f = m.version(model, "v1.safetensors")
                r["load"].append(b.child("load", f)["seconds"])
                r["fetched"].append(m.stats().get("s3.bytes_fetched", 0) / size)
                r["rss"].append(m.peak_rss_mib())
            with ModelfsMount(b.modelfs, b.env, b.mnt, ["--cache-dir", cache]) as m:  # remount: disk cache warm
                r["warm"].append(b.child("load", m.version(model, "v1.safetensors"))["seconds"])
                r["rss"].append(m.peak_rss_mib())
        b.attempt("modelfs load_file, cold then remounted", ours)
        shutil.rmtree(cache, ignore_errors=True)

        def dd_ours():
            with b.cold_mount() as m:
                f = m.version(model, "v1.safetensors")
                c0, m0, s0 = cpu_seconds(m.pid), machine_cpu(), server_cpu()
                r["dd"].append(b.dd(f, size))
                r["cpu"].append((cpu_seconds(m.pid) - c0) / (size / GiB))
                r["dd_machine"].append((machine_cpu() - m0) / (size / GiB))
                if s0 is not None:
                    r["dd_server"].append((server_cpu() - s0) / (size / GiB))
                r["rss"].append(m.peak_rss_mib())
        b.attempt("modelfs dd, cold", dd_ours)
        say(f"  run {i + 1}: load_file cold {fmt(med(r['load'][-1:]))} s (fetched {fmt(med(r['fetched'][-1:]))}x),"
            f" warm {fmt(med(r['warm'][-1:]))} s; curl {fmt(med(r['curl'][-1:]))} s, curl+load"
            f" {fmt(med(r['curl_load'][-1:]))} s, local load {fmt(med(r['local_warm'][-1:]))} s;"
            f" dd {fmt(med(r['dd'][-1:]))} s, mount CPU {fmt(med(r['cpu'][-1:]))} s/GiB")
    rss = maxo(r["rss"])
    n = f"{size // MiB} MiB, 64 tensors"
    b.table.add(f"1. load_file, cold mount, {n}", "s", r["load"], "curl GET to /dev/null", r["curl"], False, rss)
    b.table.add(f"1. load_file, cold mount, {n}", "s", r["load"], "curl to a local file, then load_file", r["curl_load"],
                False, rss)
    b.table.add(f"2. load_file after a remount (disk cache warm), {n}", "s", r["warm"],
                "load_file of a local copy (page cache)", r["local_warm"], False, rss)
    b.table.add(f"6. cold sequential dd bs=4M, {size // MiB} MiB", "s", r["dd"], "curl GET to /dev/null", r["dd_curl"],
                False, rss)
    b.table.add("6. CPU of the mount per GiB read cold (dd)", "CPU s/GiB", r["cpu"], "curl's CPU per GiB", r["curl_cpu"],
                False, rss)
    # Where the wire's ceiling is on a small machine: the S3 server shares its cores, so what the
    # whole machine spends per GiB bounds the time (busy CPU-s / cores) of both reads.
    b.table.add("6. the whole machine's CPU per GiB (server, client, mount, kernel), cold dd", "CPU s/GiB",
                r["dd_machine"], "the same during the curl GET", r["curl_machine"], False, rss)
    # Of which the S3 server's own (its recorded pids): the rest is what reading costs the client.
    if r["dd_server"] and r["curl_server"]:
        b.table.add("6. of which the S3 server's CPU per GiB, cold dd", "CPU s/GiB", r["dd_server"],
                    "the same during the curl GET", r["curl_server"], False, rss)
        client = [m - s for m, s in zip(r["dd_machine"], r["dd_server"])]
        curl_client = [m - s for m, s in zip(r["curl_machine"], r["curl_server"])]
        b.table.add("6. the rest, the client side's CPU per GiB (mount, dd, kernel), cold dd", "CPU s/GiB", client,
                    "the same during the curl GET (curl, kernel)", curl_client, False, rss)
    st["load"], st["dd"], st["rss"] = r["load"], r["dd"], rss
    st["cpu"], st["dd_machine"] = r["cpu"], r["dd_machine"]


def sc_pretrained(b, src_dir):
    """3: the sharded model from three archive views vs download + unpack + load."""
    a = b.a
    kinds = [("stored zip (zip -0)", "zs", "zip", ["zip", "-q", "-0", "-r"]),
             ("deflated zip (zip -r)", "zd", "zip", ["zip", "-q", "-r"]),
             (".tar.gz (tar czf)", "tg", "tar.gz", None)]
    files = sorted(os.listdir(src_dir))
    total = sum(os.path.getsize(os.path.join(src_dir, f)) for f in files)
    for label, short, ext, zipcmd in kinds:
        arc = os.path.join(b.work, f"model-{short}.{ext}")
        start = time.perf_counter()
        if zipcmd:
            subprocess.run([*zipcmd, arc, *files], cwd=src_dir, check=True, timeout=3600)
        else:
            subprocess.run(["tar", "czf", arc, *files], cwd=src_dir, check=True, timeout=3600)
        model = f"{b.tag}-{short}"
        b.imp(arc, model)
        asize = os.path.getsize(arc)
        say(f"[3] from_pretrained-style load of {total // MiB} MiB in 4 shards from a {label} view"
            f" ({asize // MiB} MiB, made in {time.perf_counter() - start:.0f} s)")
        # The first listing of a view reads the archive's index (kept in the catalog after it): not timed.
        with ModelfsMount(b.modelfs, b.env, b.mnt, ["--cache-dir", "none"]) as m:
            listed = sorted(os.listdir(os.path.join(m.path, "models", model, "v1")))
            if listed != files:
                raise RuntimeError(f"the {label} view lists {listed}, expected {files}")
        key = f"{model}/v1.{ext}"
        r = dict(ours=[], base=[], rss=[], amp=[])
        unpacked = os.path.join(b.work, "unpacked")
        dl = os.path.join(b.work, f"download.{ext}")
        member = [f for f in files if f.endswith(".safetensors")][1]  # a shard in the middle
        span = gz_span(arc, member) if ext == "tar.gz" else None
        for i in range(a.runs):
            def baseline():
                shutil.rmtree(unpacked, ignore_errors=True)
                os.makedirs(unpacked)
                drop_caches()
                t, _ = b.curl(key, dl)
                start = time.perf_counter()
                if ext == "zip":
                    run(["unzip", "-q", dl, "-d", unpacked], timeout=a.timeout)
                else:
                    run(["tar", "xzf", dl, "-C", unpacked], timeout=a.timeout)
                t += time.perf_counter() - start
                r["base"].append(t + b.child("pretrained", unpacked)["seconds"])
            b.attempt(f"download + unpack + load ({label})", baseline)
            shutil.rmtree(unpacked, ignore_errors=True)
            if os.path.exists(dl):
                os.unlink(dl)

            def ours():
                with b.cold_mount() as m:
                    r["ours"].append(b.child("pretrained", os.path.join(m.path, "models", model, "v1"))["seconds"])
                    r["rss"].append(m.peak_rss_mib())
            b.attempt(f"modelfs from the {label} view", ours)
            if ext == "tar.gz":
                def member_read():
                    with b.cold_mount() as m:
                        p = os.path.join(m.path, "models", model, "v1", member)
                        b.dd(p, os.path.getsize(os.path.join(src_dir, member)))
                        r["amp"].append(m.stats()["s3.bytes_fetched"] / span)
                b.attempt("one sequential read of a .tar.gz member", member_read)
            say(f"  run {i + 1}: modelfs {fmt(med(r['ours'][-1:]))} s, download + unpack + load {fmt(med(r['base'][-1:]))} s"
                + (f"; one member: fetched {fmt(med(r['amp'][-1:]))}x its compressed bytes" if r["amp"] else ""))
        rss = maxo(r["rss"])
        b.table.add(f"3. from_pretrained-style, {total // MiB} MiB in 4 shards, {label} view", "s", r["ours"],
                    "download + unpack + load from the local dir", r["base"], False, rss)
        if ext == "tar.gz":
            b.table.add(f"3. one sequential read of a .tar.gz member ({member})", "fetched / compressed bytes", r["amp"],
                        "its compressed bytes (ideal; target <= 1.1)", [1.0], False, rss)


def sc_runai(b, st):
    """4: the streamer's engine on the mount's path vs on s3://bucket/key."""
    a, model, key, size = b.a, st["model"], st["key"], st["size"]
    if b.a.server == "s3api":
        reason = "skipped on s3api: the streamer's AWS CRT client sends absolute-URI requests, which s3api answers 500"
        say(f"[4] Run:ai Model Streamer: {reason}")
        b.table.add("4. Run:ai Model Streamer, path in a cold mount", "s", None, reason, None, False)
        return
    say(f"[4] Run:ai Model Streamer engine, {size // MiB} MiB, 64 tensors: mount path vs s3://")
    env = dict(os.environ, RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING="0", AWS_EC2_METADATA_DISABLED="true")
    r = dict(ours=[], s3=[], rss=[])
    for i in range(a.runs):
        def direct():
            drop_caches()
            r["s3"].append(b.child("runai", f"s3://{b.bucket}/{key}", env=env)["seconds"])
        b.attempt("streamer from s3://", direct)

        def ours():
            with b.cold_mount() as m:
                r["ours"].append(b.child("runai", m.version(model, "v1.safetensors"), env=env)["seconds"])
                r["rss"].append(m.peak_rss_mib())
        b.attempt("streamer from the mount", ours)
        say(f"  run {i + 1}: mount {fmt(med(r['ours'][-1:]))} s, s3:// {fmt(med(r['s3'][-1:]))} s")
    b.table.add(f"4. Run:ai Model Streamer, {size // MiB} MiB, path in a cold mount", "s", r["ours"],
                "the streamer reading s3://bucket/key", r["s3"], False, maxo(r["rss"]))


def sc_peers(b, st):
    """5: dd and load_file through s3fs and rclone (fresh mount, caches dropped) vs modelfs's cold."""
    a, key, size = b.a, st["key"], st["size"]
    for p in [p for p in a.peers.split(",") if p]:
        say(f"[5] {b.peer_label(p)}: dd and load_file of {size // MiB} MiB, cold")
        r = dict(dd=[], load=[], rss=[], cpu=[], machine=[])
        for i in range(a.runs):
            def dd():
                drop_caches()
                with b.peer(p) as m:
                    c0, m0 = cpu_seconds(m.pid), machine_cpu()
                    r["dd"].append(b.dd(m.object(key), size))
                    r["cpu"].append((cpu_seconds(m.pid) - c0) / (size / GiB))
                    r["machine"].append((machine_cpu() - m0) / (size / GiB))
                    r["rss"].append(m.peak_rss_mib())
            b.attempt(f"{p} dd", dd)

            def load():
                drop_caches()
                with b.peer(p) as m:
                    r["load"].append(b.child("load", m.object(key))["seconds"])
                    r["rss"].append(m.peak_rss_mib())
            b.attempt(f"{p} load_file", load)
            say(f"  run {i + 1}: dd {fmt(med(r['dd'][-1:]))} s ({fmt(med(r['cpu'][-1:]))} CPU-s/GiB of {p},"
                f" {fmt(med(r['machine'][-1:]))} of the machine), load_file {fmt(med(r['load'][-1:]))} s")
        b.table.add(f"5. cold dd bs=4M, {size // MiB} MiB (modelfs: 6)", "s", st.get("dd"), b.peer_label(p), r["dd"],
                    False, st.get("rss"), maxo(r["rss"]))
        b.table.add(f"5. cold load_file, {size // MiB} MiB (modelfs: 1)", "s", st.get("load"), b.peer_label(p), r["load"],
                    False, st.get("rss"), maxo(r["rss"]))
        # Per byte, on a server that shares the client's cores, the cheaper daemon is the faster one.
        b.table.add("5. CPU of the FUSE daemon per GiB, cold dd (modelfs: 6)", "CPU s/GiB", st.get("cpu"),
                    b.peer_label(p), r["cpu"], False, st.get("rss"), maxo(r["rss"]))
        b.table.add("5. the whole machine's CPU per GiB, cold dd (modelfs: 6)", "CPU s/GiB", st.get("dd_machine"),
                    b.peer_label(p), r["machine"], False, st.get("rss"), maxo(r["rss"]))


def sc_local(b, path, size):
    """7: the embedded local store vs its own blob file."""
    a = b.a
    env = dict(os.environ, MODELFS_DATA_DIR=os.path.join(b.work, "local"))
    for k in ("MODELFS_BUCKET", "MODELFS_ENDPOINT", "AWS_ENDPOINT_URL"):
        env.pop(k, None)
    model = f"{b.tag}-local"
    b.imp(path, model, env)
    blob = os.path.join(b.work, "local", "blobs", "objects", model, "v1.safetensors")
    if not os.path.exists(blob):
        raise RuntimeError(f"no blob at {blob}")
    say(f"[7] local store, {size // MiB} MiB: cold dd vs the blob file, warm re-read vs a local file")
    r = dict(cold=[], warm=[], bcold=[], bwarm=[], rss=[])
    for i in range(a.runs):
        def blob_reads():
            drop_caches()
            r["bcold"].append(b.dd(blob, size))
            r["bwarm"] += [b.dd(blob, size) for _ in range(2)]
        b.attempt("blob file reads", blob_reads)

        def ours():
            with b.cold_mount(env=env) as m:
                f = m.version(model, "v1.safetensors")
                r["cold"].append(b.dd(f, size))
                r["warm"] += [b.dd(f, size) for _ in range(2)]
                r["rss"].append(m.peak_rss_mib())
        b.attempt("modelfs local store reads", ours)
        say(f"  run {i + 1}: modelfs cold {fmt(med(r['cold'][-1:]))} s, warm {fmt(med(r['warm'][-2:]))} s;"
            f" blob cold {fmt(med(r['bcold'][-1:]))} s, warm {fmt(med(r['bwarm'][-2:]))} s")
    rss = maxo(r["rss"])
    b.table.add(f"7. local store, cold dd, {size // MiB} MiB", "s", r["cold"], "dd of the blob file, cold", r["bcold"], False, rss)
    b.table.add(f"7. local store, warm re-read, {size // MiB} MiB", "s", r["warm"], "a local file in the page cache",
                r["bwarm"], False, rss)


def sc_fetched(b, st):
    """8: bytes fetched for one tensor, and for 8 readers of one file at once."""
    a, model, size = b.a, st["model"], st["size"]
    say(f"[8] one {st['per'] // MiB} MiB tensor via safe_open; {a.readers} readers of one file")
    r = dict(one=[], many=[], rss=[])
    for i in range(a.runs):
        def one():
            with b.cold_mount() as m:
                out = b.child("tensor", m.version(model, "v1.safetensors"), st["tensor"])
                r["one"].append(m.stats()["s3.bytes_fetched"] / out["bytes"])
                r["rss"].append(m.peak_rss_mib())
        b.attempt("one tensor", one)

        def many():
            with b.cold_mount() as m:
                f = m.version(model, "v1.safetensors")
                procs = [subprocess.Popen(["dd", f"if={f}", "of=/dev/null", "bs=4M"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL) for _ in range(a.readers)]
                try:
                    codes = [p.wait(timeout=a.timeout) for p in procs]
                finally:
                    for p in procs:
                        if p.poll() is None:
                            p.kill()
                            p.wait()
                if any(codes):
                    raise RuntimeError(f"a reader failed: {codes}")
                r["many"].append(m.stats()["s3.bytes_fetched"] / size)
                r["rss"].append(m.peak_rss_mib())
        b.attempt(f"{a.readers} readers", many)
        say(f"  run {i + 1}: one tensor fetched {fmt(med(r['one'][-1:]))}x its size;"
            f" {a.readers} readers fetched {fmt(med(r['many'][-1:]))}x the file")
    rss = maxo(r["rss"])
    b.table.add(f"8. one {st['per'] // MiB} MiB tensor via safe_open, cold", "fetched / tensor size", r["one"],
                "its size (ideal; target <= 1.2)", [1.0], False, rss)
    b.table.add(f"8. {a.readers} readers of one {size // MiB} MiB file at once, cold", "fetched / file size", r["many"],
                "the file once (ideal)", [1.0], False, rss)


def sc_big(b, block):
    """9: peak RSS of the mount during load_file of a --big-mib file."""
    a = b.a
    big = a.big_mib * MiB
    path = os.path.join(b.work, "big.safetensors")
    single_file(path, big, block)
    model = f"{b.tag}-big"
    b.imp(path, model)
    os.unlink(path)
    say(f"[9] load_file of {a.big_mib} MiB through a cold mount: peak RSS of the mount")
    r = dict(rss=[], t=[])
    for i in range(a.big_runs):
        def ours():
            with b.cold_mount() as m:
                r["t"].append(b.child("load", m.version(model, "v1.safetensors"), timeout=4 * a.timeout)["seconds"])
                r["rss"].append(m.peak_rss_mib())
        b.attempt("big load", ours)
        say(f"  run {i + 1}: {fmt(med(r['t'][-1:]))} s, peak RSS {fmt(med(r['rss'][-1:]), 0)} MiB")
    b.table.add(f"9. peak RSS of the mount, load_file of {a.big_mib} MiB", "MiB", [maxo(r["rss"])] if r["rss"] else None,
                "the target, 256 MiB", [256], False, maxo(r["rss"]))


def sc_runs(b, st):
    """10: how much one GET asks for. Cold dd of the single file with runs of 32 MiB per GET (the
    default) and with one GET per 8 MiB segment (MODELFS_WHOLE_RUN_MIB=8), interleaved, at least
    3 rounds: the time, and the S3 server's CPU per GiB (on a machine whose cores it shares, the
    reader's time)."""
    a, model, size = b.a, st["model"], st["size"]
    say(f"[10] cold dd of {size // MiB} MiB: runs of 32 MiB per GET vs one GET per 8 MiB segment, interleaved")
    r = {k: [] for k in ("dd", "dd8", "server", "server8")}
    for i in range(max(a.runs, 3)):
        for run_mib, suffix in ((32, ""), (8, "8")):
            def one():
                with b.cold_mount(env=dict(b.env, MODELFS_WHOLE_RUN_MIB=str(run_mib))) as m:
                    s0 = server_cpu()
                    r["dd" + suffix].append(b.dd(m.version(model, "v1.safetensors"), size))
                    if s0 is not None:
                        r["server" + suffix].append((server_cpu() - s0) / (size / GiB))
            b.attempt(f"dd with runs of {run_mib} MiB", one)
        say(f"  round {i + 1}: runs of 32 MiB {fmt(med(r['dd'][-1:]))} s, 8 MiB GETs {fmt(med(r['dd8'][-1:]))} s")
    b.table.add(f"10. cold dd bs=4M, {size // MiB} MiB, runs of 32 MiB per GET", "s", r["dd"],
                "one GET per 8 MiB segment", r["dd8"], False)
    if r["server"] and r["server8"]:
        b.table.add("10. the S3 server's CPU per GiB, runs of 32 MiB per GET", "CPU s/GiB", r["server"],
                    "one GET per 8 MiB segment", r["server8"], False)


# -------------------------------------------------------------------------------------- main --

def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, help="the single file and the sharded model (default 1024)")
    ap.add_argument("--big-mib", type=int, help="scenario 9's file (default 4096; objects live in RGW's RAM)")
    ap.add_argument("--runs", type=int, help="runs per measurement, medians reported (default 3)")
    ap.add_argument("--big-runs", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="--size-mib 256 --runs 1 --big-mib 1024, unless given")
    ap.add_argument("--rss-gib", type=int, metavar="G",
                    help="only 9, with a G GiB file: --scenarios 9 --big-mib G*1024 (the issue's goal: G=4)")
    ap.add_argument("--scenarios", default="1,2,3,4,5,6,7,8,9,10")
    ap.add_argument("--peers", default="s3fs,rclone-off", help="for 5: s3fs, rclone-off, rclone-full ('' for none)")
    ap.add_argument("--readers", type=int, default=8)
    ap.add_argument("--server", default=os.environ.get("MODELFS_BENCH_SERVER", "s3"),
                    help="the server's name, for the table (rgw, s3api); on s3api the Run:ai row is skipped")
    ap.add_argument("--bucket", default="bench-loaders")
    ap.add_argument("--timeout", type=int, default=900, help="seconds for one measurement")
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--markdown", help="also write the markdown table to this file")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    if a.rss_gib:
        a.scenarios, a.big_mib = "9", a.rss_gib * 1024
    a.size_mib = a.size_mib or (256 if a.quick else 1024)
    a.runs = a.runs or (1 if a.quick else 3)
    a.big_mib = a.big_mib or (1024 if a.quick else 4096)
    a.scenarios = {s.strip() for s in a.scenarios.split(",") if s.strip()}
    if os.geteuid() != 0:
        sys.exit("loaders.py drops the page cache (echo 3 > /proc/sys/vm/drop_caches): run it as root")

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    b = Bench(a)
    started = time.time()
    try:
        block = block_bytes(21)
        size = a.size_mib * MiB
        st = {}
        if a.scenarios & {"1", "2", "4", "5", "6", "7", "8", "10"}:
            path = os.path.join(b.work, "weights.safetensors")
            tensor, per = single_file(path, size, block)
            size = os.path.getsize(path)
            model = f"{b.tag}-st"
            b.imp(path, model)
            st = dict(model=model, key=f"{model}/v1.safetensors", path=path, size=size, tensor=tensor, per=per)
        if a.scenarios & {"1", "2", "5", "6"}:
            b.attempt("scenarios 1, 2, 6", lambda: sc_load(b, st))
        if "4" in a.scenarios:
            b.attempt("scenario 4", lambda: sc_runai(b, st))
        if "5" in a.scenarios:
            b.attempt("scenario 5", lambda: sc_peers(b, st))
        if "8" in a.scenarios:
            b.attempt("scenario 8", lambda: sc_fetched(b, st))
        if "10" in a.scenarios:
            b.attempt("scenario 10", lambda: sc_runs(b, st))
        if "7" in a.scenarios:
            b.attempt("scenario 7", lambda: sc_local(b, st["path"], st["size"]))
        if st:
            os.unlink(st["path"])
        if "3" in a.scenarios:
            src = os.path.join(b.work, "model")
            sharded_model(src, a.size_mib * MiB, block)
            b.attempt("scenario 3", lambda: sc_pretrained(b, src))
            shutil.rmtree(src, ignore_errors=True)
        if "9" in a.scenarios:
            b.attempt("scenario 9", lambda: sc_big(b, block))
    finally:
        cleanup()
        b.delete_prefix(b.tag)
        shutil.rmtree(b.work, ignore_errors=True)

    rev = subprocess.run(["git", "-C", BENCH, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    header = (f"### Loaders — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, modelfs {rev},"
              f" server {a.server} at {b.endpoint}; {a.size_mib} MiB ({a.big_mib} MiB in 9), {a.runs} run(s)"
              f" ({a.big_runs} in 9), medians;"
              f" {os.cpu_count()} cores; {time.time() - started:.0f} s\n\n"
              "ratio: > 1 means modelfs is better (faster, fewer bytes, less CPU or memory). Cold: fresh mount, empty"
              " disk cache dir, page cache dropped; baselines that download start from dropped caches too.")
    md = b.table.markdown(header)
    print("\n" + md, flush=True)
    if a.markdown:
        with open(a.markdown, "a") as f:
            f.write(md + "\n\n")


if __name__ == "__main__":
    main()
