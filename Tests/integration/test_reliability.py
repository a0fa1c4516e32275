"""Crashes, operator tools, bad input and secrets, on both stores."""
import errno
import json
import os
import sqlite3
import subprocess
import time

import pytest

from helpers import errno_of, make_file, sha256_file, sh, wait_for_parts, xattr

MiB = 1 << 20


def test_mount_killed_during_copy_in_loses_nothing(store, name, tmp_path, mounts):
    model = name()
    ready_src = make_file(tmp_path / "ready.pt", 3 * MiB + 1, seed=1)
    big = make_file(tmp_path / "big.pt", 300 * MiB, seed=2)
    m = mounts(store, path=tmp_path / "m")
    path = m.path
    sh("mkdir", os.path.join(path, "models", model))
    sh("cp", str(ready_src), os.path.join(path, "models", model, "v1.pt"))
    cp = subprocess.Popen(["cp", str(big), os.path.join(path, "models", model, "v2.pt")], stderr=subprocess.PIPE)
    # Kill the mount once some parts of v2 are stored.
    wait_for_parts(store, 2, cp)
    m.kill()
    cp.wait(timeout=60)
    assert cp.returncode != 0
    with sqlite3.connect(store.db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT status FROM versions WHERE name = 'v2'").fetchone()[0] == "uploading"
    # A new mount fails the interrupted version and aborts its multipart upload; v1 is intact.
    m.start()
    d = os.path.join(path, "models", model)
    assert xattr(os.path.join(d, "v2.pt"), "status") == "failed"
    assert sha256_file(os.path.join(d, "v1.pt")) == sha256_file(ready_src)
    assert store.multipart_uploads(model + "/") == []
    assert f"{model}/v2.pt" not in store.keys(model + "/")


@pytest.mark.every_s3
def test_verify_finds_a_corrupted_object(store, name, tmp_path):
    model = name()
    src = make_file(tmp_path / "a.zip", 2 * MiB)
    store.run("import", str(src), "--model", model, "--quiet")
    store.run("import", str(src), "--model", model, "--quiet")
    out = store.run("verify", model).stdout
    assert "2 verified, 0 bad" in out
    # Corrupt v1's bytes behind modelfs's back.
    if store.kind == "local":
        with open(os.path.join(store.data_dir, "blobs", "objects", model, "v1.zip"), "r+b") as f:
            f.write(b"XXXX")
    else:
        store.client().put_object(Bucket=store.bucket, Key=f"{model}/v1.zip", Body=b"not the weights")
    bad = store.run("verify", model, check=False)
    assert bad.returncode != 0
    assert "BAD  " + model + "/v1.zip" in bad.stdout and "ok   " + model + "/v2.zip" in bad.stdout


@pytest.mark.every_s3
def test_recover_rebuilds_the_catalog_from_manifests(s3store, name, tmp_path):
    model = name()
    src = make_file(tmp_path / "a.safetensors", 6 * MiB)
    s3store.run("import", str(src), "--model", model, "--type", "image", "--note", "n1", "--quiet")
    s3store.run("import", str(src), "--model", model, "--version", "v1.5", "--quiet")
    fresh = dict(s3store.env(), MODELFS_DATA_DIR=str(tmp_path / "fresh"))
    out = s3store.run("recover", env=fresh).stdout
    assert "recovered" in out
    versions = {v["name"]: v for v in json.loads(s3store.run("versions", model, "--json", env=fresh).stdout)}
    assert set(versions) == {"v1", "v1.5"}
    assert versions["v1"]["sha256"] == sha256_file(src) and versions["v1"]["status"] == "ready"
    assert versions["v1"]["note"] == "n1"
    assert [m for m in json.loads(s3store.run("models", "--json", env=fresh).stdout) if m["name"] == model][0]["type"] == "image"
    back = tmp_path / "back"
    s3store.run("download", model, "v1.5", "-o", str(back), "--quiet", env=fresh)
    assert sha256_file(back) == sha256_file(src)
    # Recovering into a catalog that has models is refused.
    again = s3store.run("recover", env=fresh, check=False)
    assert again.returncode != 0 and "empty catalog" in again.stderr


BAD_NAMES = ["", ".", "..", ".hidden", "x" * 201, "tab\there", "nl\nx", "del\x7f"]


def test_bad_input_is_refused_and_changes_nothing(store, name, tmp_path, mounts):
    path = mounts(store, path=tmp_path / "m").path
    model = name()
    d = os.path.join(path, "models", model)
    os.mkdir(d)
    src = make_file(tmp_path / "a.zip", 1000)
    sh("cp", str(src), os.path.join(d, "v1.zip"))
    other = name("other")
    os.mkdir(os.path.join(path, "models", other))

    cases = []
    for bad in BAD_NAMES:
        if bad in ("", ".", ".."):
            continue  # the kernel answers these itself
        expected = errno.ENAMETOOLONG if len(bad.encode()) > 200 else errno.EINVAL
        cases.append((f"mkdir {bad!r}", errno_of(os.mkdir, os.path.join(path, "models", bad)), expected))
        if not bad.startswith("."):  # in a model directory, a writer's temporary file (test_writers.py)
            cases.append((f"create {bad!r}.zip", errno_of(os.open, os.path.join(d, bad + ".zip"), os.O_WRONLY | os.O_CREAT), expected))
    cases += [
        ("invalid UTF-8", errno_of(os.mkdir, os.path.join(path, "models", "\udcff-x").encode("utf-8", "surrogateescape")), errno.EINVAL),
        ("unsupported extension", errno_of(os.open, os.path.join(d, "v2.exe"), os.O_WRONLY | os.O_CREAT), errno.EINVAL),
        ("clash under another extension", errno_of(os.open, os.path.join(d, "v1.pth"), os.O_WRONLY | os.O_CREAT), errno.EEXIST),
        ("overwrite a ready version", errno_of(os.open, os.path.join(d, "v1.zip"), os.O_WRONLY | os.O_TRUNC), errno.EEXIST),
        ("O_APPEND to a ready version", errno_of(os.open, os.path.join(d, "v1.zip"), os.O_WRONLY | os.O_APPEND), errno.EPERM),
        ("truncate a ready version", errno_of(os.truncate, os.path.join(d, "v1.zip"), 10), errno.EPERM),
        ("hard link", errno_of(os.link, os.path.join(d, "v1.zip"), os.path.join(d, "v9.zip")), errno.EPERM),
        ("symlink not named @something", errno_of(os.symlink, "v1.zip", os.path.join(d, "v8.zip")), errno.EINVAL),
        ("chmod", errno_of(os.chmod, os.path.join(d, "v1.zip"), 0o777), errno.EPERM),
        ("setuid bit", errno_of(os.chmod, os.path.join(d, "v1.zip"), 0o4444), errno.EPERM),
        ("unknown type", errno_of(os.setxattr, d, "user.modelfs.type", b"audio"), errno.EINVAL),
        ("model path inside datasets/", errno_of(os.mkdir, os.path.join(path, "datasets", "m")), errno.EPERM),
        ("version file in datasets/", errno_of(os.open, os.path.join(path, "datasets", "v1.safetensors"), os.O_WRONLY | os.O_CREAT), errno.EINVAL),
        ("rmdir models", errno_of(os.rmdir, os.path.join(path, "models")), errno.EPERM),
        ("rename across models", errno_of(os.rename, os.path.join(d, "v1.zip"), os.path.join(path, "models", other, "v1.zip")), errno.EXDEV),
        ("file in models/", errno_of(os.open, os.path.join(path, "models", "x.zip"), os.O_WRONLY | os.O_CREAT), errno.EPERM),
    ]
    wrong = [(what, got, want) for what, got, want in cases if got != want]
    assert not wrong, wrong
    # Nothing changed.
    assert sorted(os.listdir(os.path.join(path, "models"))) == sorted([model, other])
    assert sorted(os.listdir(d)) == ["v1", "v1.zip"] and sha256_file(os.path.join(d, "v1.zip")) == sha256_file(src)
    assert os.listdir(os.path.join(path, "datasets")) == []


def test_secrets_never_leak(s3store, name, tmp_path, mounts):
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    path = str(tmp_path / "m")
    env = s3store.env(MODELFS_S3_TIMEOUT="3")
    with mounts(s3store, "--verbose", path=path, env=env) as m:
        model = name()
        os.mkdir(os.path.join(path, "models", model))
        sh("cp", str(make_file(tmp_path / "a.zip", 6 * MiB)), os.path.join(path, "models", model, "v1.zip"))
        cmdline = open(f"/proc/{m.pid}/cmdline", "rb").read().decode(errors="replace")
        assert secret not in cmdline
        attrs = sh("getfattr", "-d", "-m", "-", os.path.join(path, "models", model, "v1.zip")).stdout
        assert secret not in attrs
        manifest = s3store.client().get_object(Bucket=s3store.bucket, Key=f".catalog/{model}.json")["Body"].read().decode()
        assert secret not in manifest and "AWS" not in manifest
    log = open(os.path.join(s3store.data_dir, "mount.log")).read()
    assert "PUT" in log or "GET" in log or "mounted" in log  # the verbose log did say things
    assert secret not in log
    # A wrong secret's error names neither secret.
    bad = s3store.run("models", "--json", env=s3store.env(AWS_SECRET_ACCESS_KEY="wrong-secret-zz9"), check=False)
    assert "wrong-secret-zz9" not in bad.stdout + bad.stderr


@pytest.mark.every_s3
def test_gc_lists_and_removes_orphans(store, name, tmp_path):
    model = name()
    store.run("import", str(make_file(tmp_path / "a.zip", 100)), "--model", model, "--quiet")
    # An object nothing owns, as a crash between an object's write and its row would leave.
    store.put_object(f"{model}/stray.zip", b"x")
    listed = store.run("gc", "--older-than", "0").stdout
    assert f"orphan {model}/stray.zip" in listed
    assert f"{model}/stray.zip" in store.keys(model + "/")
    if store.kind == "local":
        store.run("gc", "--older-than", "0", "--delete-orphans")
        assert store.keys(model + "/") == [f"{model}/v1.zip"]


@pytest.mark.every_s3
def test_gc_removes_the_object_of_a_failed_version(store, name, tmp_path):
    """A completion whose answer was lost, counted failed while its object landed: the failed
    version vouches for no bytes, so gc lists the object and --delete-orphans removes it."""
    import sqlite3
    model = name()
    src = make_file(tmp_path / "a.zip", 100)
    store.run("import", str(src), "--model", model, "--quiet")
    store.run("import", str(src), "--model", model, "--quiet")
    with sqlite3.connect(store.db) as c:
        c.execute("UPDATE versions SET status = 'failed', error = 'lost answer' WHERE name = 'v2'")
    assert f"orphan {model}/v2.zip" in store.run("gc", "--older-than", "0").stdout
    store.run("gc", "--older-than", "0", "--delete-orphans")
    assert store.keys(model + "/") == [f"{model}/v1.zip"]
    assert store.versions(model)["v2"]["status"] == "failed"


def test_mount_killed_during_reads_and_during_a_job(store, name, tmp_path, mounts):
    """kill -9 of the mount while a version is read and a job runs: the next mount serves the
    same bytes, the catalog is sound, and the job is reconciled (it finishes, its checkpoint lands)."""
    import sys
    trainer = os.path.join(os.path.dirname(__file__), "../../scripts/train_example.py")
    command = f"{sys.executable} {os.path.abspath(trainer)}"
    path = str(tmp_path / "m")
    model, dataset = name("tiny"), name("qa")
    big = make_file(tmp_path / "w.pt", 64 * MiB, seed=5)
    base, data = tmp_path / "base.safetensors", tmp_path / "qa.jsonl"
    sh(sys.executable, trainer, "--init", str(base))
    sh(sys.executable, trainer, "--make-dataset", str(data), "--records", "60")
    m = mounts(store, "--train-command", command, path=path)
    d = os.path.join(path, "models", model)
    os.mkdir(d)
    sh("cp", str(big), os.path.join(d, "w.pt"))
    sh("cp", str(base), os.path.join(d, "v1.safetensors"))
    sh("cp", str(data), os.path.join(path, "datasets", dataset + ".jsonl"))
    fd = os.open(os.path.join(path, "jobs", "submit"), os.O_RDWR)
    os.write(fd, f"model={model} version=v1 dataset={dataset} epochs=4 sleep=1\n".encode())
    job = os.pread(fd, 4096, 0).decode().strip()
    os.close(fd)
    log = os.path.join(store.data_dir, "jobs", job, "log")
    deadline = time.time() + 60
    while time.time() < deadline and "epoch 1/" not in (open(log).read() if os.path.exists(log) else ""):
        time.sleep(0.1)
    reader = subprocess.Popen(["dd", f"if={os.path.join(d, 'w.pt')}", "of=/dev/null", "bs=64k"], stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    m.kill()
    reader.wait(timeout=60)
    with sqlite3.connect(store.db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    m.start()
    d = os.path.join(path, "models", model)
    assert sha256_file(os.path.join(d, "w.pt")) == sha256_file(big)
    deadline = time.time() + 120
    status = ""
    while time.time() < deadline:
        status = open(os.path.join(path, "jobs", job, "status")).read().strip()
        if status not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert status == "succeeded", open(os.path.join(path, "jobs", job, "log")).read()
    assert "v2.safetensors" in os.listdir(d)
