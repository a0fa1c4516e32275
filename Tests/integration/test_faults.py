"""The mount on S3 under injected faults: a fault proxy (faultproxy.py) sits between modelfs and the
S3 test server and fails a fraction of the requests (500 InternalError, 503 SlowDown, resets,
stalls, truncated bodies, lost answers), or plays the server being down. Copies in either succeed
with the right bytes or fail cleanly; reads return the right bytes or EIO, never wrong bytes; what
SQLite knows stays available while S3 is down.

Figures (requests seen, faults by kind, bytes verified) are printed as `FAULT FIGURES {...}` lines
even without `-s`, and appended as JSON lines to $MODELFS_FAULT_FIGURES when it is set."""
import errno
import json
import os
import subprocess
import sys
import time

import pytest

from helpers import Mount, bucket_state, make_file, mount_log, sh, sha256_file, wait_for_parts, xattr
from faultproxy import DEFAULT_KINDS, FaultProxy

MiB = 1 << 20
BIG = 300 * MiB
HANG_GUARD = 120  # seconds: a guard against hangs, never a performance threshold


# ------------------------------------------------------------------------------------ helpers --

@pytest.fixture
def proxy(s3store):
    p = FaultProxy(s3store.endpoint, seed=20240601).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def figures(capsys, request):
    """Collects a test's figures and prints them (past pytest's capture) when it ends."""
    data = {}
    yield data
    data = {"test": request.node.name, **data}
    line = "FAULT FIGURES " + json.dumps(data, sort_keys=True)
    with capsys.disabled():
        print("\n" + line, flush=True)
    out = os.environ.get("MODELFS_FAULT_FIGURES")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(data, sort_keys=True) + "\n")


def proxy_env(store, proxy, timeout=None):
    extra = {"MODELFS_BUCKET": store.bucket, "MODELFS_ENDPOINT": proxy.endpoint}
    if timeout is not None:
        extra["MODELFS_S3_TIMEOUT"] = str(timeout)
    return store.env(**extra)


def mounted(store, path, env):
    """`with mounted(store, path, env) as mnt`: a fresh mount (so an empty block cache and no kernel
    pages) at `path`; no disk cache either, so every read goes to object storage, where the faults are."""
    return Mount(store, path, ["--cache-dir", "none"], env=env, timeout=HANG_GUARD).start()


def timed(cmd, timeout=HANG_GUARD, **kwargs):
    """Runs a command; (CompletedProcess, seconds)."""
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    return p, round(time.monotonic() - start, 2)


# A read in a child process, so a hang is caught by the guard; prints the errno (0 on success),
# the sha256 of what was read and how many bytes that was.
READER = r"""
import hashlib, sys
h, n, err = hashlib.sha256(), 0, 0
try:
    with open(sys.argv[1], "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            n += len(block)
except OSError as e:
    err = e.errno
print(err, h.hexdigest(), n)
"""


def read_in_child(path, with_count=False):
    p, seconds = timed([sys.executable, "-c", READER, path])
    assert p.returncode == 0, p.stderr
    err, digest, count = p.stdout.split()
    if with_count:
        return int(err), digest if int(err) == 0 else "", seconds, int(count)
    return int(err), digest if int(err) == 0 else "", seconds


def proxy_figures(proxy):
    c = proxy.counters()
    return {k: c[k] for k in ("requests", "requests_by_method", "faults", "faults_total", "fault_details",
                              "connections", "upstream_reconnects")}


# -------------------------------------------------------------------------------------- tests --

@pytest.mark.parametrize("seed", [1, 2])
def test_cp_in_with_10pct_faults_succeeds_or_fails_cleanly(s3store, proxy, name, tmp_path, figures, seed):
    """10% of all requests (PUT parts, POST create/complete, GET, HEAD, DELETE) fail with mixed
    kinds: `cp` either succeeds and the bytes read back (through a fresh mount, faults still on)
    are the source's, or fails with the version `failed` and no multipart upload left."""
    model = name("faults-cp")
    src = make_file(tmp_path / "w.safetensors", BIG, seed=seed)
    want = sha256_file(src)
    env = proxy_env(s3store, proxy)  # the default operation timeout (30 s)
    target_rel = ("models", model, "v1.safetensors")
    with mounted(s3store, tmp_path / "mnt", env) as mnt:
        proxy.configure(rate=0.10, kinds=DEFAULT_KINDS, methods="all", seed=seed, stall_seconds=12)
        sh("mkdir", os.path.join(mnt, "models", model))
        target = os.path.join(mnt, *target_rel)
        cp, cp_seconds = timed(["cp", str(src), target], timeout=900)
        status = xattr(target, "status")
        error = xattr(target, "error") if status == "failed" else ""
        upload_counters = proxy.counters()
    figures.update(seed=seed, cp_exit=cp.returncode, cp_seconds=cp_seconds, status=status, error=error,
                   upload=proxy_figures(proxy))
    keys, uploads = bucket_state(s3store, model)
    assert uploads == [], f"multipart uploads left behind: {uploads}\n{mount_log(s3store.data_dir)}"
    if cp.returncode == 0:
        assert status == "ready", mount_log(s3store.data_dir)
        assert keys == [f"{model}/v1.safetensors"]
        proxy.reset_counters()
        with mounted(s3store, tmp_path / "mnt2", env) as mnt:
            err, got, seconds = read_in_child(os.path.join(mnt, *target_rel))
            assert (err, got) == (0, want), mount_log(s3store.data_dir)
            assert xattr(os.path.join(mnt, *target_rel), "sha256") == want
        figures.update(read_back_seconds=seconds, bytes_verified=BIG, read_back=proxy_figures(proxy))
    else:
        assert status == "failed" and error, f"cp failed ({cp.stderr.strip()}) but the version is {status!r}"
        assert keys == []
        figures.update(cp_stderr=cp.stderr.strip(), bytes_verified=0)
    assert upload_counters["faults_total"] > 0


def test_read_with_10pct_get_faults_returns_the_right_bytes(s3store, proxy, name, tmp_path, figures):
    """A 300 MiB version uploaded without faults, read through fresh mounts (empty cache) while
    10% of GETs fail (500, 503, reset, stall, truncated body): the bytes are always right. Rounds
    go on until every configured kind was injected at least once (at most 4)."""
    model = name("faults-read")
    src = make_file(tmp_path / "w.pt", BIG, seed=11)
    want = sha256_file(src)
    s3store.run("import", str(src), "--model", model, "--version", "v1", "--quiet", env=proxy_env(s3store, proxy))
    assert proxy.counters()["faults_total"] == 0
    env = proxy_env(s3store, proxy)
    kinds = DEFAULT_KINDS
    proxy.reset_counters()
    proxy.configure(rate=0.10, kinds=kinds, methods=("GET",), schedule="spread", seed=5, stall_seconds=12)
    rounds = []
    for i in range(4):
        with mounted(s3store, tmp_path / f"mnt{i}", env) as mnt:
            before = proxy.counters()["requests_by_method"].get("GET", 0)
            err, got, seconds = read_in_child(os.path.join(mnt, "models", model, "v1.pt"))
            stats = {k: v for k, v in (line.split(": ") for line in open(os.path.join(mnt, ".stats")).read().splitlines())}
        assert (err, got) == (0, want), f"round {i}: errno {err}\n{mount_log(s3store.data_dir)}"
        rounds.append({"seconds": seconds, "gets": proxy.counters()["requests_by_method"]["GET"] - before,
                       "s3.get_requests": int(stats["s3.get_requests"]), "s3.bytes_fetched": int(stats["s3.bytes_fetched"])})
        if all(proxy.counters()["faults"].get(k, 0) > 0 for k in kinds):
            break
    c = proxy.counters()
    figures.update(rounds=rounds, bytes_verified=BIG * len(rounds), proxy=proxy_figures(proxy))
    assert all(c["faults"].get(k, 0) > 0 for k in kinds), c["faults"]
    assert c["fault_details"].get("truncate:body", 0) > 0  # a short body really was sent


@pytest.mark.every_s3
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_s3_down_reads_fail_with_eio_metadata_still_served_and_recovery(s3store, proxy, name, tmp_path, figures, mode):
    """S3 is down (connections refused, or accepted and never answered) with a 5 s operation
    timeout: a read of a version not in the cache fails with EIO in bounded time; ls, stat,
    getfattr and .stats still answer from SQLite; a cp in fails and leaves the version failed;
    once S3 is back, the same read gives the right bytes and gc leaves no multipart upload."""
    model = name("faults-down")
    src = make_file(tmp_path / "v1.zip", 24 * MiB + 5, seed=3)
    want = sha256_file(src)
    s3store.run("import", str(src), "--model", model, "--version", "v1", "--quiet")
    env = proxy_env(s3store, proxy, timeout=5)
    new = make_file(tmp_path / "v2.zip", 40 * MiB, seed=4)
    fig = {"mode": mode, "s3_timeout": 5}
    with mounted(s3store, tmp_path / "mnt", env) as mnt:
        d = os.path.join(mnt, "models", model)
        v1 = os.path.join(d, "v1.zip")
        proxy.down(mode)

        err, _, fig["read_seconds"] = read_in_child(v1)
        assert err == errno.EIO, f"read while down gave errno {err}\n{mount_log(s3store.data_dir)}"
        cat, fig["cat_seconds"] = timed(["sh", "-c", 'cat "$1" >/dev/null', "sh", v1])
        assert cat.returncode != 0 and "Input/output error" in cat.stderr, cat.stderr

        for label, cmd in {"ls": ["ls", "-l", d], "stat": ["stat", v1],
                           "getfattr": ["getfattr", "-d", "--absolute-names", v1],
                           "stats": ["cat", os.path.join(mnt, ".stats")]}.items():
            p, fig[f"{label}_seconds"] = timed(cmd)
            assert p.returncode == 0, f"{label} while down: {p.stderr}"
            if label == "ls":
                assert f" {24 * MiB + 5} " in p.stdout and "v1.zip" in p.stdout
            if label == "getfattr":
                assert f'user.modelfs.sha256="{want}"' in p.stdout and 'user.modelfs.status="ready"' in p.stdout
            if label == "stats":
                assert "versions.ready: 1" in p.stdout

        cp, fig["cp_seconds"] = timed(["cp", str(new), os.path.join(d, "v2.zip")])
        assert cp.returncode != 0, "cp into the mount succeeded while S3 was down"
        fig["cp_stderr"] = cp.stderr.strip()
        assert xattr(os.path.join(d, "v2.zip"), "status") == "failed"
        fig["v2_error"] = xattr(os.path.join(d, "v2.zip"), "error")

        proxy.up()
        err, got, fig["read_after_recovery_seconds"] = read_in_child(v1)
        assert (err, got) == (0, want), f"errno {err} after recovery\n{mount_log(s3store.data_dir)}"
    gc = s3store.run("gc", env=env, timeout=HANG_GUARD)
    fig["gc_stdout"] = gc.stdout.strip()
    keys, uploads = bucket_state(s3store, model)
    assert uploads == []
    assert keys == [f"{model}/v1.zip"]
    fig.update(bytes_verified=24 * MiB + 5, proxy=proxy_figures(proxy))
    figures.update(fig)


@pytest.mark.every_s3
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_s3_down_mid_copy_fails_cleanly_and_gc_aborts_the_upload(s3store, proxy, name, tmp_path, figures, mode):
    """S3 goes down while `cp` streams a version in: cp fails, the version is failed, and after
    recovery `modelfs gc` aborts the multipart upload that could not be aborted meanwhile."""
    model = name("faults-midcp")
    src = make_file(tmp_path / "big.pth", BIG, seed=9)
    env = proxy_env(s3store, proxy, timeout=5)
    fig = {"mode": mode, "s3_timeout": 5}
    with mounted(s3store, tmp_path / "mnt", env) as mnt:
        sh("mkdir", os.path.join(mnt, "models", model))
        target = os.path.join(mnt, "models", model, "v1.pth")
        start = time.monotonic()
        cp = subprocess.Popen(["cp", str(src), target], stderr=subprocess.PIPE, text=True)
        try:
            wait_for_parts(s3store, 1, cp, HANG_GUARD)
            proxy.down(mode)
            down_at = time.monotonic()
            _, err = cp.communicate(timeout=HANG_GUARD)
        finally:
            if cp.poll() is None:
                cp.kill()
        fig.update(cp_exit=cp.returncode, cp_stderr=err.strip(), cp_seconds_after_outage=round(time.monotonic() - down_at, 2),
                   cp_seconds=round(time.monotonic() - start, 2))
        assert cp.returncode != 0
        assert xattr(target, "status") == "failed"
        fig["error"] = xattr(target, "error")
        proxy.up()
    fig["uploads_before_gc"] = len(s3store.multipart_uploads(model + "/"))
    gc = s3store.run("gc", env=env, timeout=HANG_GUARD)
    fig["gc_stdout"] = gc.stdout.strip()
    keys, uploads = bucket_state(s3store, model)
    assert uploads == [], gc.stdout
    assert keys == []
    fig["proxy"] = proxy_figures(proxy)
    figures.update(fig)


def _first(match):
    """A proxy predicate true for the first request that `match(method, target)` accepts."""
    state = {"done": False}

    def predicate(method, target, headers):
        if not state["done"] and match(method, target):
            state["done"] = True
            return True
        return False
    return predicate


LOST = {
    "create": lambda m, t: m == "POST" and "?uploads" in t and "uploadId=" not in t,
    "part": lambda m, t: m == "PUT" and "partNumber=2" in t,
    "complete": lambda m, t: m == "POST" and "uploadId=" in t,
}


# Known misbehaviour, found with these tests (xfail strict: the mark goes once it is fixed).
ORPHAN_ON_RETRIED_CREATE = (
    "modelfs bug: when the answer to CreateMultipartUpload is lost, the retry creates a second "
    "upload and the first, unknown to the catalog, stays open in the bucket (until gc --older-than)")
CUT_HEAD_ACCEPTED = (
    "modelfs bug: an answer whose connection ends inside its headers is taken by libcurl (7.88) as "
    "complete (CURLE_OK, status 200, no body); CurlTransport accepts it and S3ObjectStore fails for "
    "good on it (malformed XML / no ETag) instead of retrying")
# Both are fixed; kept for the record of what these tests found.
KNOWN = {}


@pytest.mark.every_s3
@pytest.mark.parametrize("kind,which", [
    pytest.param(k, w, id=f"{k}-{w}", marks=[pytest.mark.xfail(strict=True, reason=KNOWN[k, w])] if (k, w) in KNOWN else [])
    for k in ("lost", "truncate", "truncate_head") for w in sorted(LOST)])
def test_answer_lost_after_the_server_acted(s3store, proxy, name, tmp_path, figures, which, kind):
    """The server does the request but its answer never arrives whole (reset; cut in its body; cut
    in its head, which libcurl reports as a success with the headers it got and an empty body):
    the retry meets a request already done. The copy still succeeds with the right bytes, and
    no multipart upload is left behind (an orphan would be kept, and billed, until gc)."""
    model = name("faults-lost")
    src = make_file(tmp_path / "w.ckpt", 20 * MiB + 7, seed=13)
    env = proxy_env(s3store, proxy)
    with mounted(s3store, tmp_path / "mnt", env) as mnt:
        sh("mkdir", os.path.join(mnt, "models", model))
        proxy.configure(rate=1.0, kinds=(kind,), methods="all", predicate=_first(LOST[which]),
                        truncate_fraction=0.0 if kind == "truncate_head" else None)  # right after the status line
        target = os.path.join(mnt, "models", model, "v1.ckpt")
        cp, seconds = timed(["cp", str(src), target])
        status = xattr(target, "status")
        error = xattr(target, "error") if status == "failed" else ""
        right = cp.returncode == 0 and sha256_file(target) == sha256_file(src)
        log = mount_log(s3store.data_dir, 10)
    c = proxy.counters()
    keys, uploads = bucket_state(s3store, model)
    figures.update(which=which, kind=kind, cp_exit=cp.returncode, status=status, error=error, cp_seconds=seconds,
                   fault_details=c["fault_details"], objects_left=keys, uploads_left=uploads)
    assert c["faults"].get(kind) == 1, "the request was not faulted"
    assert cp.returncode == 0, f"{cp.stderr}\nversion {status}: {error}\nobjects {keys}, uploads {uploads}\n{log}"
    assert status == "ready" and right
    assert keys == [f"{model}/v1.ckpt"]
    assert uploads == [], "an orphaned multipart upload is left behind"
    figures["bytes_verified"] = 20 * MiB + 7


@pytest.mark.parametrize("cut", ["after-status-line", "random", "first-get"])
def test_read_with_answer_heads_cut_never_returns_wrong_bytes(s3store, proxy, name, tmp_path, figures, cut):
    """10% of GET answers end (FIN) inside their head, after the status line: libcurl then reports
    a 206 with no Content-Length and an empty body. A read must give the right bytes or EIO,
    never short or wrong data."""
    model = name("faults-head")
    size = 64 * MiB + 3
    src = make_file(tmp_path / "w.pt", size, seed=17)
    want = sha256_file(src)
    s3store.run("import", str(src), "--model", model, "--version", "v1", "--quiet")
    if cut == "first-get":  # the read at offset 0, which a reader waits for (not a prefetch)
        proxy.configure(rate=1.0, kinds=("truncate_head",), methods=("GET",), predicate=_first(lambda m, t: True),
                        truncate_fraction=0.0)
    else:
        proxy.configure(rate=0.10, kinds=("truncate_head",), methods=("GET",), schedule="spread", seed=3,
                        truncate_fraction=0.0 if cut == "after-status-line" else None)
    with mounted(s3store, tmp_path / "mnt", proxy_env(s3store, proxy)) as mnt:
        err, got, seconds, count = read_in_child(os.path.join(mnt, "models", model, "v1.pt"), with_count=True)
    figures.update(errno=err, read_seconds=seconds, bytes_read=count, size=size, right_bytes=got == want,
                   proxy=proxy_figures(proxy), mount_log=mount_log(s3store.data_dir, 6))
    assert proxy.counters()["faults"].get("truncate_head", 0) > 0
    assert err in (0, errno.EIO)
    if err == 0:
        assert got == want, f"wrong bytes: read {count} of {size} bytes, sha256 {got} != {want}"
        figures["bytes_verified"] = size


STALLED = {
    "create": LOST["create"],
    "part": LOST["part"],
    "complete": LOST["complete"],
    "get": lambda m, t: m == "GET" and "uploadId" not in t and "?" not in t,
}


@pytest.mark.every_s3
@pytest.mark.parametrize("which", sorted(STALLED))
def test_a_stalled_request_is_abandoned_and_retried(s3store, proxy, name, tmp_path, figures, which):
    """One request gets no answer at all (the connection stays open, silent, for 60 s): the client
    gives up on it (curl's low-speed limit, 10 s) and retries within the 30 s operation budget, so
    the copy in, or the read, still succeeds. How long the client held on is a figure."""
    model = name("faults-stall")
    src = make_file(tmp_path / "w.ckpt", 20 * MiB + 7, seed=19)
    want = sha256_file(src)
    env = proxy_env(s3store, proxy)
    if which == "get":
        s3store.run("import", str(src), "--model", model, "--version", "v1", "--quiet")
    with mounted(s3store, tmp_path / "mnt", env) as mnt:
        target = os.path.join(mnt, "models", model, "v1.ckpt")
        proxy.configure(rate=1.0, kinds=("stall",), methods="all", predicate=_first(STALLED[which]), stall_seconds=60)
        if which == "get":
            err, got, seconds = read_in_child(target)
            ok = err == 0 and got == want
        else:
            sh("mkdir", os.path.join(mnt, "models", model))
            cp, seconds = timed(["cp", str(src), target])
            ok = cp.returncode == 0 and xattr(target, "status") == "ready" and sha256_file(target) == want
    c = proxy.counters()
    figures.update(which=which, seconds=seconds, fault_details=c["fault_details"])
    assert c["faults"].get("stall") == 1
    assert ok, mount_log(s3store.data_dir)
    figures["bytes_verified"] = 20 * MiB + 7


@pytest.mark.every_s3
def test_download_survives_one_answer_cut_after_its_status_line(s3store, proxy, name, tmp_path, figures):
    """`modelfs download` (ranged GETs, no kernel in between) when one GET answer ends right after
    its status line: it retries and writes the right file (or at least never a wrong one)."""
    model = name("faults-dl")
    src = make_file(tmp_path / "w.ckpt", 20 * MiB, seed=23)
    s3store.run("import", str(src), "--model", model, "--version", "v1", "--quiet")
    proxy.configure(rate=1.0, kinds=("truncate_head",), methods=("GET",), truncate_fraction=0.0,
                    predicate=_first(lambda m, t: "?" not in t))
    out = tmp_path / "out.ckpt"
    p = s3store.run("download", model, "v1", "-o", str(out), check=False, env=proxy_env(s3store, proxy), timeout=HANG_GUARD)
    figures.update(exit=p.returncode, stderr=p.stderr.strip().splitlines()[-1:], fault_details=proxy.counters()["fault_details"])
    assert proxy.counters()["faults"].get("truncate_head") == 1
    if p.returncode != 0:
        assert not out.exists()  # never a wrong file
    assert p.returncode == 0, p.stderr
    assert sha256_file(out) == sha256_file(src)
    figures["bytes_verified"] = 20 * MiB
