"""Neighbours on one data dir or one bucket, as a careless operator makes them: a second mount,
a mount onto a mount, a data dir inside the mountpoint, two catalogs on one bucket, gc in a bucket
that is not its own, an object already where a version would go; and recovery after 16 parallel
copies with datasets."""
import hashlib
import json
import os
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import Store, new_bucket, s3_client
from helpers import is_mounted, make_file, mounts_at, sha256_file, sh, xattr

MiB = 1 << 20


def owner(store):
    return json.loads(store.get_object(".catalog/.owner.json"))


def test_second_mount_is_refused_naming_the_pid_and_the_live_upload_is_unharmed(store, name, tmp_path, mounts):
    first = mounts(store, path=tmp_path / "m1")
    pid = first.pid
    writer = None
    try:
        model = name()
        os.mkdir(first.p("models", model))
        target = first.p("models", model, "v1.pt")
        # A slow writer: dd from a pipe, 10 MiB in (a multipart upload with a part stored), then waiting.
        head, tail = os.urandom(10 * MiB), os.urandom(5 * MiB + 7)
        writer = subprocess.Popen(["dd", f"of={target}", "bs=1M", "iflag=fullblock"], stdin=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        writer.stdin.write(head)
        writer.stdin.flush()
        deadline = time.time() + 60
        while time.time() < deadline and not (os.path.exists(target) and xattr(target, "status") == "uploading"):
            time.sleep(0.05)
        assert xattr(target, "status") == "uploading"

        second = str(tmp_path / "m2")
        again = mounts(store, path=second, check=False).result
        assert again.returncode == 1
        assert f"pid {pid}" in again.stderr and "in use" in again.stderr, again.stderr
        assert not is_mounted(second) and not os.path.exists(second), "refused before anything changed"
        for args in (["recover"], ["gc", "--delete-orphans"], ["gc", "--older-than", "0"]):
            p = store.run(*args, check=False)
            assert p.returncode == 1 and f"pid {pid}" in p.stderr, (args, p.stderr)
        # The CLI beside the mount works through the same catalog.
        small = make_file(tmp_path / "small.zip", 1000, seed=3)
        store.run("import", str(small), "--model", model, "--version", "cli", "--quiet")
        assert store.versions(model)["v1"]["status"] == "uploading"
        assert "orphan" in store.run("gc").stdout  # plain gc (it deletes nothing) still runs

        writer.stdin.write(tail)
        writer.stdin.close()
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
        writer = None
        assert xattr(target, "status") == "ready"
        assert xattr(target, "sha256") == hashlib.sha256(head + tail).hexdigest()
        assert store.versions(model)["cli"]["status"] == "ready"
    finally:
        if writer:
            writer.kill()
        first.unmount()
    # With the mount gone, the lock is free again.
    store.run("gc", "--older-than", "0")


def test_mounting_onto_or_inside_a_live_mount_is_refused(store, tmp_path, mounts):
    m = mounts(store, path=tmp_path / "m")
    other = dict(store.env(), MODELFS_DATA_DIR=str(tmp_path / "other"))
    onto = mounts(store, path=m.path, env=other, check=False).result
    assert onto.returncode == 1 and "already a modelfs mount" in onto.stderr, onto.stderr
    inside = mounts(store, path=m.p("models"), env=other, check=False).result
    assert inside.returncode == 1 and "inside the modelfs mount" in inside.stderr, inside.stderr
    assert mounts_at(m.path) == 1
    assert not os.path.exists(str(tmp_path / "other")), "refused before anything changed"


def test_a_data_dir_inside_the_mountpoint_is_refused(store, tmp_path, mounts):
    path = str(tmp_path / "m")
    env = dict(store.env(), MODELFS_DATA_DIR=os.path.join(path, "data"))
    p = mounts(store, path=path, env=env, check=False).result
    assert p.returncode == 1 and "is inside the mountpoint" in p.stderr, p.stderr
    assert not is_mounted(path) and not os.path.exists(path)


def test_two_catalogs_on_one_bucket_the_second_is_refused_and_deletes_nothing(s3store, name, tmp_path, mounts):
    model = name()
    src = make_file(tmp_path / "a.zip", 3 * MiB, seed=1)
    s3store.run("import", str(src), "--model", model, "--quiet")
    claim = owner(s3store)
    keys = s3store.keys()
    assert f"{model}/v1.zip" in keys

    second = Store("s3", str(tmp_path / "second"), s3store.endpoint, bucket=s3store.bucket)
    for args in (["models"], ["import", str(src), "--model", model, "--quiet"], ["gc", "--delete-orphans", "--older-than", "0"]):
        p = second.run(*args, check=False)
        assert p.returncode == 1, (args, p.stdout)
        assert f"bucket {s3store.bucket} belongs to catalog {claim['catalog']}" in p.stderr, (args, p.stderr)
    refused = mounts(second, path=tmp_path / "m", check=False)
    assert refused.result.returncode == 1 and not is_mounted(refused.path)
    assert f"belongs to catalog {claim['catalog']}" in refused.log()
    assert s3store.keys() == keys, "nothing written, nothing deleted"
    assert owner(s3store) == claim
    assert s3store.versions(model)["v1"]["status"] == "ready"


def test_gc_deletes_nothing_in_a_bucket_it_did_not_own(s3store, tmp_path):
    # A bucket someone else fills, never used by modelfs.
    bucket = new_bucket()
    s3_client().put_object(Bucket=bucket, Key="their/data.bin", Body=b"theirs")
    store = Store("s3", str(tmp_path / "data"), s3store.endpoint, bucket=bucket)
    p = store.run("gc", "--delete-orphans", "--older-than", "0", check=False)
    assert p.returncode == 1 and "belonged to no catalog" in p.stderr, p.stderr
    assert "their/data.bin" in store.keys()


def test_an_object_at_the_natural_key_is_not_overwritten(store, name, tmp_path):
    model = name()
    store.run("model", "create", model)
    store.put_object(f"{model}/v1.zip", b"not modelfs's")
    src = make_file(tmp_path / "v1.zip", 2 * MiB, seed=2)
    store.run("import", str(src), "--model", model, "--version", "v1", "--quiet")
    keys = store.keys(model + "/")
    assert f"{model}/v1.zip" in keys and len(keys) == 2
    other = [k for k in keys if k != f"{model}/v1.zip"][0]
    assert other.startswith(f"{model}/v1~") and other.endswith(".zip")
    out = tmp_path / "back.zip"
    store.run("download", model, "v1", "-o", str(out), "--quiet")
    assert sha256_file(out) == sha256_file(src)
    assert store.get_object(f"{model}/v1.zip") == b"not modelfs's"


def test_sixteen_parallel_copies_and_datasets_then_recover_loses_nothing(s3store, name, tmp_path, mounts):
    """Three models, each with 16 copies through one mount at once (some multipart, some not),
    datasets copied, renamed and deleted; unmount; recover into an empty data dir: every version
    ready with its sha256, the datasets as they were; then gc --delete-orphans deletes nothing."""
    path = str(tmp_path / "m")
    models = [name("par") for _ in range(3)]
    # Two of each 16 are multipart (9 MiB: two 8 MiB parts), the rest one part of 0.5 to 1.5 MiB.
    srcs = {i: make_file(tmp_path / f"s{i}.pt", (9 * MiB if i % 8 == 0 else (i % 3 + 1) * MiB // 2) + i, seed=i) for i in range(16)}
    want = {i: sha256_file(p) for i, p in srcs.items()}
    data = {n: make_file(tmp_path / f"{n}.jsonl", 100_000 + n, seed=100 + n) for n in range(3)}
    with mounts(s3store, path=path):
        for model in models:
            os.mkdir(os.path.join(path, "models", model))
            with ThreadPoolExecutor(16) as pool:
                done = list(pool.map(lambda i: subprocess.run(
                    ["cp", str(srcs[i]), os.path.join(path, "models", model, f"v{i}.pt")], capture_output=True), range(16)))
            assert all(p.returncode == 0 for p in done), [p.stderr for p in done if p.returncode]
        for n, src in data.items():
            sh("cp", str(src), os.path.join(path, "datasets", f"qa{n}.jsonl"))
        os.rename(os.path.join(path, "datasets", "qa1.jsonl"), os.path.join(path, "datasets", "renamed.jsonl"))
        os.remove(os.path.join(path, "datasets", "qa2.jsonl"))
    keys = s3store.keys()
    claim = owner(s3store)

    fresh = Store("s3", str(tmp_path / "fresh"), s3store.endpoint, bucket=s3store.bucket)
    out = fresh.run("recover").stdout
    assert "problem" not in out, out
    for model in models:
        versions = fresh.versions(model)
        assert len(versions) == 16
        wrong = {n: (v["status"], v["sha256"]) for n, v in versions.items() if (v["status"], v["sha256"]) != ("ready", want[int(n[1:])])}
        assert not wrong, wrong
    datasets = {d["name"]: d for d in json.loads(fresh.run("datasets", "--json").stdout)}
    assert set(datasets) == {"qa0", "renamed"}
    assert datasets["qa0"]["status"] == "ready" and datasets["qa0"]["sha256"] == sha256_file(data[0])
    assert datasets["renamed"]["status"] == "ready" and datasets["renamed"]["sha256"] == sha256_file(data[1])
    assert datasets["qa0"]["records"] == sum(1 for _ in open(data[0], "rb"))
    verify = fresh.run("verify").stdout
    assert f"{3 * 16 + 2} verified, 0 bad" in verify, verify
    with sqlite3.connect(fresh.db) as c:
        adopted = c.execute("SELECT value FROM catalog_meta WHERE key = 'catalog_id'").fetchone()[0]
    assert adopted == claim["catalog"], "recovery takes over the id the bucket records"

    gc = fresh.run("gc", "--delete-orphans", "--older-than", "0").stdout
    assert "0 orphan object(s) deleted" in gc, gc
    assert s3store.keys() == keys
    assert owner(s3store) == claim


def test_a_mount_starting_spares_an_upload_whose_writer_still_runs(store, tmp_path, mounts):
    """`modelfs dataset add` reading a pipe beside the store, for what looks like an hour (its row
    made older by hand): a mount starting meanwhile sweeps interrupted uploads, and must leave this
    one alone; the writer then finishes and the dataset is ready with its sha256."""
    fifo = str(tmp_path / "qa.jsonl")
    os.mkfifo(fifo)
    adder = store.popen("dataset", "add", fifo, "--name", "slow")
    path = str(tmp_path / "m")
    try:
        lines = b"".join(b'{"q": %d}\n' % i for i in range(200_000))
        with open(fifo, "wb") as pipe:
            pipe.write(lines[: len(lines) // 2])
            pipe.flush()
            deadline = time.time() + 60
            status = lambda: {d["name"]: d["status"] for d in json.loads(store.run("datasets", "--json").stdout)}.get("slow")
            while time.time() < deadline and status() != "uploading":
                time.sleep(0.05)
            assert status() == "uploading"
            with sqlite3.connect(store.db) as c:
                c.execute("UPDATE datasets SET modified = modified - 3600 WHERE name = 'slow'")
            mounts(store, path=path)
            assert xattr(os.path.join(path, "datasets", "slow.jsonl"), "status") == "uploading"
            pipe.write(lines[len(lines) // 2:])
        out, err = adder.communicate(timeout=120)
        assert adder.returncode == 0, err
        assert xattr(os.path.join(path, "datasets", "slow.jsonl"), "status") == "ready"
        assert xattr(os.path.join(path, "datasets", "slow.jsonl"), "sha256") == hashlib.sha256(lines).hexdigest()
    finally:
        if adder.poll() is None:
            adder.kill()
