"""Many nodes, one store: three mounts ("nodes", each with its own data dir and cache) of one
bucket of the s3api server and one PostgreSQL catalog (scripts/pg-server)."""
import errno
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from urllib.parse import urlencode

import pytest

from conftest import S3_ENDPOINT, Store, new_bucket, s3_client
from helpers import disk_cache_file, make_file, sh, sha256_file, wait_for

PG_URL = os.environ.get("MODELFS_TEST_PG_URL")
PG_SERVER = os.environ.get("MODELFS_TEST_PG_SERVER")
PG_STATE = os.environ.get("MODELFS_TEST_PG_STATE")

if not PG_URL or not S3_ENDPOINT:
    if os.environ.get("MODELFS_REQUIRE_PG") == "1":
        raise RuntimeError("MODELFS_REQUIRE_PG=1 but no MODELFS_TEST_PG_URL / S3 endpoint: scripts/test starts both. "
                           + os.environ.get("MODELFS_PG_START_ERROR", ""))
    pytest.skip("no PostgreSQL or S3 test server (scripts/test starts them)", allow_module_level=True)

LEASE = 3  # seconds: short, so that a killed node's uploads are swept within the test


def new_database():
    name = "c_" + uuid.uuid4().hex[:16]
    sh("psql", PG_URL, "-qc", f"CREATE DATABASE {name}")
    base = PG_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def mount_nodes(mounts, tmp_path, count, lease=LEASE):
    """`count` mounts of one new bucket and one new PostgreSQL database (unmounted by `mounts`)."""
    url = new_database()
    bucket = new_bucket(s3_client(S3_ENDPOINT))
    nodes = []
    for i in range(count):
        store = Store("s3", str(tmp_path / f"node{i + 1}"), S3_ENDPOINT, bucket=bucket)
        store.env_extra = {"MODELFS_CATALOG": url, "MODELFS_NODE_LEASE": str(lease)}
        nodes.append(mounts(store, path=tmp_path / f"mnt{i + 1}", env=store.env(**store.env_extra)))
    return nodes


@pytest.fixture
def cluster(tmp_path, mounts):
    return mount_nodes(mounts, tmp_path, 3)


def cli(node, *args, check=True):
    return node.store.run(*args, env=node.store.env(**node.store.env_extra), check=check)


def eventually(predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_a_version_copied_on_one_node_is_on_every_node(cluster, tmp_path):
    n1, n2, n3 = cluster
    src = make_file(tmp_path / "w.bin", 3 << 20, seed=1)
    os.mkdir(n1.p("models", "bert"))
    sh("cp", str(src), n1.p("models", "bert", "v1.pt"))
    for n in (n2, n3):
        assert eventually(lambda: "v1.pt" in os.listdir(n.p("models", "bert")))
        assert sha256_file(n.p("models", "bert", "v1.pt")) == sha256_file(src)
    sh("cp", str(src), n3.p("models", "bert", "v2.pt"))
    # rm on node 2 makes it vanish on 1 and 3, from cached lookups too.
    for n in (n1, n3):
        os.stat(n.p("models", "bert", "v1.pt"))
    sh("rm", n2.p("models", "bert", "v1.pt"))
    for n in (n1, n3):
        assert eventually(lambda: not os.path.exists(n.p("models", "bert", "v1.pt"))), n.path
        assert os.listdir(n.p("models", "bert")) == ["v2.pt"]
    # A rename on node 3 is seen on node 1.
    os.stat(n1.p("models", "bert", "v2.pt"))
    os.rename(n3.p("models", "bert", "v2.pt"), n3.p("models", "bert", "best.pt"))
    assert eventually(lambda: not os.path.exists(n1.p("models", "bert", "v2.pt")))
    assert sha256_file(n1.p("models", "bert", "best.pt")) == sha256_file(src)


def test_two_nodes_creating_one_version_name_exactly_one_wins(cluster, tmp_path):
    n1, n2, _ = cluster
    os.mkdir(n1.p("models", "race"))
    src = make_file(tmp_path / "w.bin", 1 << 20, seed=2)
    for round in range(20):
        name = f"v{round}.pt"
        results = {}

        def copy(node, tag):
            results[tag] = subprocess.run(["cp", str(src), node.p("models", "race", name)], capture_output=True, text=True)

        threads = [threading.Thread(target=copy, args=(n, t)) for n, t in ((n1, "a"), (n2, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.returncode for r in results.values())
        assert codes[0] == 0, results
        # The loser is refused (EEXIST, or the name already a ready version it may not replace).
        assert codes[1] != 0, f"round {round}: both copies succeeded: {results}"
    versions = cli(n1, "versions", "race", "--json").stdout
    import json
    rows = json.loads(versions)
    assert sorted(v["name"] for v in rows) == sorted(f"v{i}" for i in range(20))
    assert all(v["status"] == "ready" for v in rows)
    store = n1.store
    assert store.multipart_uploads() == []
    objects = [k for k in store.keys() if not k.startswith(".catalog/")]
    assert len(objects) == 20, objects


def test_two_nodes_deleting_the_last_two_ready_versions_leave_one(cluster, tmp_path):
    n1, n2, _ = cluster
    src = make_file(tmp_path / "w.bin", 4096, seed=3)
    for round in range(10):
        model = f"last{round}"
        os.mkdir(n1.p("models", model))
        sh("cp", str(src), n1.p("models", model, "v1.pt"))
        sh("cp", str(src), n1.p("models", model, "v2.pt"))
        assert eventually(lambda: sorted(os.listdir(n2.p("models", model))) == ["v1.pt", "v2.pt"])
        results = []
        threads = [threading.Thread(target=lambda n=n, v=v: results.append(
            subprocess.run(["rm", n.p("models", model, v)], capture_output=True, text=True).returncode))
            for n, v in ((n1, "v1.pt"), (n2, "v2.pt"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [0, 1], results
        assert len(os.listdir(n1.p("models", model))) == 1


def test_a_node_killed_mid_copy_never_shows_ready_and_its_upload_is_swept(cluster, tmp_path):
    n1, n2, n3 = cluster
    os.mkdir(n1.p("models", "crash"))
    writer = subprocess.Popen(["dd", "of=" + n1.p("models", "crash", "v1.pt"), "bs=1M"], stdin=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    chunk = os.urandom(1 << 20)
    for _ in range(24):
        writer.stdin.write(chunk)
    writer.stdin.flush()
    assert eventually(lambda: n1.store.multipart_uploads() != [], timeout=20), "the copy is under way"
    os.kill(n1.pid, signal.SIGKILL)
    try:
        writer.kill()
    except OSError:
        pass
    writer.wait()
    n1.unmount()
    rows = {v["name"]: v for v in __import__("json").loads(cli(n2, "versions", "crash", "--json").stdout)}
    assert rows["v1"]["status"] == "uploading"
    # Never ready on the others; failed and aborted once the node's lease ran out.
    assert eventually(lambda: __import__("json").loads(cli(n3, "versions", "crash", "--json").stdout)[0]["status"] == "failed",
                      timeout=LEASE * 6)
    assert eventually(lambda: n2.store.multipart_uploads() == [], timeout=10)
    assert not any(k.startswith("crash/") for k in n2.store.keys())


def test_gc_on_another_node_deletes_nothing_of_a_copy_in_flight(cluster, tmp_path):
    n1, _, _ = cluster
    os.mkdir(n1.p("models", "busy"))
    writer = subprocess.Popen(["dd", "of=" + n1.p("models", "busy", "v1.pt"), "bs=1M"], stdin=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    chunk = os.urandom(1 << 20)
    for _ in range(20):
        writer.stdin.write(chunk)
    writer.stdin.flush()
    assert eventually(lambda: n1.store.multipart_uploads() != [], timeout=20)
    # gc from a fourth node (a data dir with no mount).
    gc_store = Store("s3", str(tmp_path / "node4"), S3_ENDPOINT, bucket=n1.store.bucket)
    gc = gc_store.run("gc", "--delete-orphans", env=gc_store.env(**n1.store.env_extra))
    writer.stdin.write(chunk)
    writer.stdin.close()
    assert writer.wait() == 0
    rows = __import__("json").loads(cli(n1, "versions", "busy", "--json").stdout)
    assert rows[0]["status"] == "ready", (rows, gc.stdout, gc.stderr)
    assert rows[0]["size"] == 21 << 20
    assert n1.store.multipart_uploads() == []


@pytest.mark.skipif(not PG_SERVER or not PG_STATE, reason="needs scripts/pg-server to stop and start PostgreSQL")
def test_postgresql_down_gives_eio_open_files_keep_reading_and_the_mount_recovers(cluster, tmp_path):
    n1, n2, _ = cluster
    src = make_file(tmp_path / "w.bin", 8 << 20, seed=4)
    os.mkdir(n1.p("models", "m"))
    sh("cp", str(src), n1.p("models", "m", "v1.pt"))
    f = open(n2.p("models", "m", "v1.pt"), "rb")
    head = f.read(1 << 20)
    sh(PG_SERVER, "pause", PG_STATE)
    try:
        started = time.time()
        with pytest.raises(OSError) as e:
            os.listdir(n1.p("models"))
        assert e.value.errno == errno.EIO
        assert time.time() - started < 60, "bounded, never a hang"
        with pytest.raises(OSError) as e:
            os.mkdir(n1.p("models", "new"))
        assert e.value.errno == errno.EIO
        rest = f.read()  # the open file reads on from object storage
        assert hashlib_of(head + rest) == sha256_file(src)
    finally:
        sh(PG_SERVER, "resume", PG_STATE)
        f.close()
    # No remount: the next operations work again.
    assert eventually(lambda: _lists(n1.p("models")) == ["m"], timeout=30)
    os.mkdir(n1.p("models", "after"))
    sh("cp", str(src), n1.p("models", "after", "v1.pt"))
    assert eventually(lambda: _lists(n2.p("models", "after")) == ["v1.pt"], timeout=10)


def _lists(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def hashlib_of(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


def test_a_password_in_the_catalog_url_reaches_no_command_line_and_no_log(tmp_path, mounts):
    url = new_database()
    secret = "pw-" + uuid.uuid4().hex[:12]
    with_password = url.replace("://modelfs@", f"://modelfs:{secret}@")
    store = Store("s3", str(tmp_path / "node"), S3_ENDPOINT)
    with mounts(store, "--catalog", with_password) as node:
        with open(f"/proc/{node.pid}/cmdline", "rb") as f:
            cmdline = f.read().decode()
        assert secret not in cmdline and "--catalog" not in cmdline
        os.mkdir(node.p("models", "m"))
        assert os.listdir(node.p("models")) == ["m"]
        ps = sh("ps", "axww", "-o", "args").stdout
        assert secret not in ps
    with open(os.path.join(store.data_dir, "mount.log")) as f:
        log = f.read()
    assert "catalog postgresql://modelfs:***@" in log, log
    assert secret not in log
    # A refusal names the catalog without the password too.
    bad = store.run("models", env=store.env(MODELFS_CATALOG=with_password.rsplit("/", 1)[0] + "/nosuchdb"), check=False)
    assert bad.returncode != 0 and "***" in bad.stderr and secret not in bad.stderr, bad.stderr


def test_a_job_submitted_on_one_node_is_listed_on_another_and_makes_one_version(tmp_path, mounts):
    from test_jobs import JobMount, wait_succeeded
    url = new_database()
    bucket = new_bucket(s3_client(S3_ENDPOINT))
    env = {"MODELFS_CATALOG": url, "MODELFS_NODE_LEASE": str(LEASE)}
    nodes = []
    for i in (1, 2):
        (tmp_path / f"n{i}").mkdir()
        m = JobMount(Store("s3", str(tmp_path / f"n{i}" / "data"), S3_ENDPOINT, bucket=bucket), tmp_path / f"n{i}", env=env)
        nodes.append(mounts.adopt(m).start())
    a, b = nodes
    a.seed("tiny", "qa")
    err, job = a.submit("model=tiny version=v1 dataset=qa epochs=2\n")
    assert err == 0, job
    job = job.split()[0] if job else "tiny-v1-ft-1"
    assert eventually(lambda: "tiny-v1-ft-1" in os.listdir(b.p("jobs")))
    wait_succeeded(b.p(), "tiny-v1-ft-1")
    # Both mounts saw it finish; its checkpoint became exactly one version.
    time.sleep(2 * LEASE / 3 + 1)
    for n in nodes:
        assert sorted(os.listdir(n.p("models", "tiny"))) == ["v1.safetensors", "v2.safetensors"]


def test_recover_rebuilds_a_postgresql_catalog_from_the_bucket(cluster, tmp_path):
    n1, n2, _ = cluster
    src = make_file(tmp_path / "w.bin", 1 << 20, seed=5)
    os.mkdir(n1.p("models", "kept"))
    sh("cp", str(src), n1.p("models", "kept", "v1.pt"))
    sh("cp", str(src), n2.p("models", "kept", "v2.pt"))
    for n in cluster:
        n.unmount()
    fresh = new_database()
    store = Store("s3", str(tmp_path / "recovery"), S3_ENDPOINT, bucket=n1.store.bucket)
    env = store.env(MODELFS_CATALOG=fresh)
    out = store.run("recover", env=env).stdout
    assert "2 versions (2 ready" in out and "postgresql://" in out, out
    import json
    rows = {v["name"]: v for v in json.loads(store.run("versions", "kept", "--json", env=env).stdout)}
    assert sorted(rows) == ["v1", "v2"] and all(r["status"] == "ready" for r in rows.values())
    assert all(r["sha256"] == sha256_file(src) for r in rows.values())


def test_a_model_is_deleted_and_renamed_on_postgresql(cluster, tmp_path):
    """rmdir, mv, `model rm` and `model rename` on a PostgreSQL catalog (each was EIO: a statement
    whose NULL parameter PostgreSQL could not type)."""
    n1, n2, _ = cluster
    src = make_file(tmp_path / "w.bin", 4096, seed=6)
    os.mkdir(n1.p("models", "a"))
    sh("cp", str(src), n1.p("models", "a", "v1.pt"))
    os.rename(n1.p("models", "a"), n1.p("models", "b"))
    assert eventually(lambda: _lists(n2.p("models")) == ["b"])
    assert sha256_file(n2.p("models", "b", "v1.pt")) == sha256_file(src)
    cli(n2, "model", "rename", "b", "c")
    assert eventually(lambda: _lists(n1.p("models")) == ["c"])
    os.mkdir(n2.p("models", "empty"))
    os.rmdir(n2.p("models", "empty"))
    assert eventually(lambda: _lists(n1.p("models")) == ["c"])
    cli(n1, "model", "rm", "c")
    assert eventually(lambda: _lists(n2.p("models")) == [])
    assert not any(k.startswith("a/") for k in n1.store.keys()), "the bytes went with the model"


class _Probe:
    """os.listdir(path) on a thread of its own."""

    def __init__(self, path):
        self.result = None
        self.thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self.thread.start()

    def _run(self, path):
        try:
            self.result = os.listdir(path)
        except OSError as e:
            self.result = e

    def join(self, bound):
        self.thread.join(max(0.0, bound))

    @property
    def answered(self):
        return not self.thread.is_alive()


def _listdir_in_thread(path, bound):
    """os.listdir(path) on a thread: (finished within `bound` seconds, its result or its OSError)."""
    out = {}

    def run():
        try:
            out["result"] = os.listdir(path)
        except OSError as e:
            out["result"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(bound)
    return not t.is_alive(), out.get("result")


@pytest.mark.skipif(not PG_SERVER or not PG_STATE, reason="needs scripts/pg-server to freeze and thaw PostgreSQL")
def test_a_stalled_catalog_gives_eio_in_bounded_time_and_the_mount_recovers(tmp_path, mounts):
    """PostgreSQL stopped by SIGSTOP (a stalled host: the kernel accepts, nothing answers): `ls`
    answers EIO in bounded time instead of hanging, an open file keeps reading, and everything
    works again after SIGCONT without a remount."""
    try:
        n1, n2 = mount_nodes(mounts, tmp_path, 2, lease=30)
        src = make_file(tmp_path / "w.bin", 4 << 20, seed=7)
        os.mkdir(n1.p("models", "m"))
        sh("cp", str(src), n1.p("models", "m", "v1.pt"))
        f = open(n2.p("models", "m", "v1.pt"), "rb")
        head = f.read(1 << 20)
        # Users keep listing while the server stalls: their statements are in flight on pooled
        # connections (libpq's own cancel of such a statement waits for ever on a stalled server).
        stop = threading.Event()

        def busy():
            while not stop.is_set():
                _lists(n1.p("models"))
                os.path.exists(n1.p("models", "m", "v1.pt"))

        users = [threading.Thread(target=busy, daemon=True) for _ in range(12)]
        for t in users:
            t.start()
        time.sleep(2)
        sh(PG_SERVER, "freeze", PG_STATE)
        try:
            # Many users' ls at once: every one answers, with EIO, none left queued behind stuck
            # connections (each waits for the catalog at most its timeout, not after the others).
            probes = [_Probe(n1.p("models")) for _ in range(16)]
            deadline = time.time() + 60
            for p in probes:
                p.join(deadline - time.time())
            assert all(p.answered for p in probes), \
                f"{sum(not p.answered for p in probes)} of 16 ls on a mount whose catalog stalled got no answer in 60 s"
            assert all(isinstance(p.result, OSError) and p.result.errno == errno.EIO for p in probes), [p.result for p in probes]
            # Again (a pool of stuck connections must not make the next caller wait for ever).
            answered, result = _listdir_in_thread(n2.p("models"), 90)
            assert answered and isinstance(result, OSError) and result.errno == errno.EIO, result
            rest = f.read()  # the open file reads on from object storage
            assert hashlib_of(head + rest) == sha256_file(src)
        finally:
            stop.set()
            sh(PG_SERVER, "thaw", PG_STATE)
            f.close()
        assert eventually(lambda: _lists(n1.p("models")) == ["m"], timeout=60)
        for t in users:
            t.join(60)
            assert not t.is_alive(), "a user's ls still hangs after the server answers again"
        os.mkdir(n2.p("models", "after"))
        sh("cp", str(src), n2.p("models", "after", "v1.pt"))
        assert eventually(lambda: _lists(n1.p("models", "after")) == ["v1.pt"], timeout=30)
    finally:
        sh(PG_SERVER, "thaw", PG_STATE)


@pytest.mark.skipif(not PG_SERVER or not PG_STATE, reason="needs scripts/pg-server to stop and start PostgreSQL")
@pytest.mark.parametrize("away,back", [("pause", "resume"), ("freeze", "thaw")])
def test_a_write_across_a_catalog_pause_ends_failed_never_uploading_for_good(tmp_path, mounts, away, back):
    """A copy under way when PostgreSQL goes away for 6 s (refusing, or stalled; shorter than the
    nodes' lease): a failure that could not be recorded then is recorded when the catalog is back,
    on every node, and the name can be written again; a copy that waited the stall out is ready."""
    try:
        n1, n2 = mount_nodes(mounts, tmp_path, 2, lease=30)
        os.mkdir(n1.p("models", "w"))
        writer = subprocess.Popen(["dd", "of=" + n1.p("models", "w", "v1.pt"), "bs=1M"], stdin=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        chunk = os.urandom(1 << 20)
        writer.stdin.write(chunk)
        writer.stdin.flush()
        assert eventually(lambda: "v1.pt" in (_lists(n2.p("models", "w")) or []), timeout=10)
        sh(PG_SERVER, away, PG_STATE)
        try:
            started = time.time()
            try:
                # Enough for the upload's first parts: their records need the catalog.
                for _ in range(40):
                    writer.stdin.write(chunk)
                writer.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            time.sleep(max(0, 6 - (time.time() - started)))
        finally:
            sh(PG_SERVER, back, PG_STATE)
        writer.wait()

        def status(node):
            try:
                rows = json.loads(cli(node, "versions", "w", "--json").stdout)
            except Exception:
                return None
            return rows[0]["status"] if rows else None

        # Never uploading for good: failed (or ready, had the copy got through) on every node.
        assert eventually(lambda: status(n1) in ("failed", "ready") and status(n2) in ("failed", "ready"), timeout=60), \
            (status(n1), status(n2))
        src = make_file(tmp_path / "w.bin", 2 << 20, seed=8)
        if status(n1) == "failed":
            sh("cp", str(src), n2.p("models", "w", "v1.pt"))  # the name is usable again
            assert status(n1) == "ready"
        assert eventually(lambda: n1.store.multipart_uploads() == [], timeout=30)
    finally:
        sh(PG_SERVER, "thaw", PG_STATE)
        sh(PG_SERVER, "resume", PG_STATE)


@pytest.mark.skipif(not PG_SERVER or not PG_STATE, reason="needs scripts/pg-server to stop and start PostgreSQL")
def test_a_job_running_across_an_outage_longer_than_the_lease_is_imported_once(tmp_path, mounts):
    """PostgreSQL away for longer than the nodes' lease while a job runs: the other node may fail
    the job for its node's lease, but the node was only cut off; it takes the job back, and its
    checkpoint becomes exactly one version."""
    from test_jobs import TRAIN_COMMAND, JobMount, wait_status
    url = new_database()
    bucket = new_bucket(s3_client(S3_ENDPOINT))
    env = {"MODELFS_CATALOG": url, "MODELFS_NODE_LEASE": str(LEASE)}
    nodes = []
    try:
        for i in (1, 2):
            (tmp_path / f"n{i}").mkdir()
            # The job lingers after its checkpoint: it ends (exit 0) while PostgreSQL is away.
            m = JobMount(Store("s3", str(tmp_path / f"n{i}" / "data"), S3_ENDPOINT, bucket=bucket), tmp_path / f"n{i}", env=env,
                         train_command=TRAIN_COMMAND + " && sleep 10")
            nodes.append(mounts.adopt(m).start())
        a, b = nodes
        a.seed("tiny", "qa")
        err, answer = a.submit("model=tiny version=v1 dataset=qa epochs=1\n")
        assert err == 0, answer
        job = "tiny-v1-ft-1"
        wait_status(a.p(), job, {"running"}, timeout=60)
        output = os.path.join(a.store.data_dir, "jobs", job, "output")
        assert eventually(lambda: any(f.endswith(".safetensors") for f in os.listdir(output)), timeout=120), "the checkpoint"
        sh(PG_SERVER, "pause", PG_STATE)
        try:
            # Longer than the lease, and long enough for the job to end meanwhile.
            exit_file = os.path.join(a.store.data_dir, "jobs", job, "work", "exit_code")
            deadline = time.time() + 120
            while not os.path.exists(exit_file) and time.time() < deadline:
                time.sleep(0.2)
            assert os.path.exists(exit_file), "the job ended while the catalog was away"
            time.sleep(3 * LEASE)
        finally:
            sh(PG_SERVER, "resume", PG_STATE)
        assert wait_status(b.p(), job, {"succeeded"}, timeout=90) == "succeeded"
        # Exactly one version from the one checkpoint, seen from both nodes, and it stays so.
        time.sleep(3 * LEASE)
        for n in nodes:
            assert sorted(os.listdir(n.p("models", "tiny"))) == ["v1.safetensors", "v2.safetensors"]
    finally:
        sh(PG_SERVER, "resume", PG_STATE)


def test_version_rm_from_the_cli_on_one_node_purges_another_nodes_caches(mounts, tmp_path):
    """The purge a delete records in PostgreSQL reaches a mount on another node: node two cached
    v1, the CLI of node one removes it, node two's disk and memory caches drop it, and a new v1
    of the same size under the reused name reads its own bytes there."""
    n1, n2 = mount_nodes(mounts, tmp_path, 2)
    old = make_file(tmp_path / "old.pt", 3 << 20, seed=1)
    new = make_file(tmp_path / "new.pt", 3 << 20, seed=2)
    cli(n1, "import", str(make_file(tmp_path / "keep.pt", 1000, seed=3)), "--model", "p", "--version", "keep", "--quiet")
    cli(n1, "import", str(old), "--model", "p", "--version", "v1", "--quiet")
    path = n2.p("models", "p", "v1.pt")
    assert eventually(lambda: os.path.exists(path))
    assert sha256_file(path) == sha256_file(old)
    cached = disk_cache_file(n2, sha256_file(old), os.path.getsize(old))
    wait_for(lambda: os.path.exists(cached), 30, "node two's read landing in its disk cache")

    cli(n1, "version", "rm", "p", "v1")
    wait_for(lambda: not os.path.exists(cached), 30, "the deleted version leaving node two's disk cache")
    assert n2.wait_stat("cache.bytes", 0) == 0, "and its memory"
    cli(n1, "import", str(new), "--model", "p", "--version", "v1", "--quiet")
    assert eventually(lambda: os.path.exists(path), 30)
    assert sha256_file(path) == sha256_file(new), "node two reads the new v1, not its cached old one"


def test_browser_sessions_are_shared_on_a_postgresql_catalog_and_end_with_their_token(tmp_path):
    """Two `modelfs web` on nodes of one PostgreSQL catalog (each its own data dir and tokens file):
    a session signed in on one is known to the other, a token removed from one server's file ends
    its sessions there while the other, whose file still has it, goes on, and a sign-out on one
    ends the session on both."""
    from test_web_api import EVE_TOKEN, OWNER_TOKEN, Web, ask, page_of, sign_in
    url = new_database()
    bucket = new_bucket(s3_client(S3_ENDPOINT))
    webs = []
    try:
        for i in (1, 2):
            store = Store("s3", str(tmp_path / f"node{i}"), S3_ENDPOINT, bucket=bucket)
            store.env = lambda store=store, **extra: Store.env(store, MODELFS_CATALOG=url, **extra)
            os.makedirs(tmp_path / f"web{i}")
            webs.append(Web(store, str(tmp_path / f"web{i}")))
        one, two = webs
        owners, eves = sign_in(one, OWNER_TOKEN), sign_in(one, EVE_TOKEN)
        assert "<span>4242</span>" in page_of(two, eves), "the other node knows the session"
        sessions = sh("psql", url, "-tAc", "SELECT count(*) FROM web_sessions").stdout.strip()
        assert sessions == "2", sessions
        # Eve's token leaves the second node's file only.
        with open(two.tokens, "w") as f:
            f.write(f"{OWNER_TOKEN} {os.getuid()}\n")
        assert ">Sign in<" in page_of(two, eves)
        assert "<span>4242</span>" in page_of(one, eves), "the first node's file still has it"
        csrf = re.search(r'<meta name="csrf-token" content="([0-9a-f]{64})">', page_of(two, owners)).group(1)
        r, _ = ask(two, "POST", "/logout", owners, urlencode({"csrf": csrf}), {"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 303
        assert ">Sign in<" in page_of(one, owners), "signed out on one node, gone on the other"
    finally:
        for w in webs:
            w.stop()


def test_a_chmod_on_one_node_takes_access_away_on_another(mounts):
    """Two --allow-other nodes of one catalog: eve reads a version on node B (its attributes now in
    B's kernel, which may keep a ready file's an hour); its owner makes it 0600 on node A; within
    seconds eve is refused on B too (the kernel keeps a name at most a second, and looks it up
    again with fresh attributes), and gets it back when it is 0644 again."""
    import shutil
    from helpers import shared_top
    from test_sharing import EVE, as_user, ensure_users
    if os.geteuid() != 0:
        pytest.skip("needs root: useradd, and mounts others may use")
    ensure_users()
    eve = EVE
    url = new_database()
    bucket = new_bucket(s3_client(S3_ENDPOINT))
    tops, nodes = [], []
    try:
        for i in (1, 2):
            store = Store("s3", "/nonexistent", S3_ENDPOINT, bucket=bucket)
            top, mnt = shared_top(store, f"modelfs-chmod-{i}-")
            tops.append(top)
            store.env_extra = {"MODELFS_CATALOG": url}
            nodes.append(mounts(store, "--allow-other", path=mnt, env=store.env(**store.env_extra)))
        a, b = nodes
        model = f"chmod-{uuid.uuid4().hex[:6]}"
        os.mkdir(a.p("models", model))
        os.chmod(a.p("models", model), 0o755)
        src = os.path.join(tops[0], "w.pt")
        with open(src, "wb") as f:
            f.write(b"weights" * 1000)
        sh("cp", src, a.p("models", model, "v1.pt"))
        os.chmod(a.p("models", model, "v1.pt"), 0o644)
        on_b = b.p("models", model, "v1.pt")
        wait_for(lambda: as_user(eve, "cat", on_b).returncode == 0, 10, "eve reads v1 on node B")
        os.chmod(a.p("models", model, "v1.pt"), 0o600)
        wait_for(lambda: "Permission denied" in as_user(eve, "cat", on_b).stderr, 10, "eve refused on node B")
        os.chmod(a.p("models", model, "v1.pt"), 0o644)
        wait_for(lambda: as_user(eve, "cat", on_b).returncode == 0, 10, "eve reads v1 on node B again")
    finally:
        for n in nodes:
            n.unmount()
        for t in tops:
            shutil.rmtree(t, ignore_errors=True)
