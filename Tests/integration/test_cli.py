"""The CLI end to end, on the embedded local store and on a real S3 server that checks SigV4."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import Store
from helpers import MODELFS, free_port, make_file, sha256_file, wait_for, wait_for_parts

# Every CLI test runs on every S3 implementation (s3api, moto, RGW), beside the local store.
pytestmark = pytest.mark.every_s3

MiB = 1 << 20


@pytest.mark.parametrize("size", [0, 1, 5 * MiB, 5 * MiB + 1, 200 * MiB], ids=["0B", "1B", "5MiB", "5MiB+1", "200MiB"])
def test_import_and_download_are_byte_identical(store, name, tmp_path, size):
    model = name()
    src = make_file(tmp_path / "weights.safetensors", size, seed=size)
    out = store.run("import", str(src), "--model", model, "--quiet")
    assert f"{model}/v1.safetensors ready" in out.stdout

    v = store.versions(model)["v1"]
    assert v["status"] == "ready"
    assert v["size"] == size
    assert v["sha256"] == sha256_file(src)

    back = tmp_path / "back.bin"
    store.run("download", model, "v1", "-o", str(back), "--quiet")
    assert sha256_file(back) == sha256_file(src)
    # The bytes are where docs/SEMANTICS.md says, under <model>/<version>.<ext>, and nothing is left half-done.
    assert f"{model}/v1.safetensors" in store.keys(model + "/")
    assert store.multipart_uploads(model + "/") == []


def test_names_with_chinese_spaces_and_url_characters(store, name, tmp_path):
    model = name("千问-7B 测试 +%?#&")
    src = make_file(tmp_path / "m.zip", 6 * MiB + 7)
    store.run("import", str(src), "--model", model, "--version", "v1 +%?#&", "--quiet")
    back = tmp_path / "back.zip"
    store.run("download", model, "v1 +%?#&", "-o", str(back), "--quiet")
    assert sha256_file(back) == sha256_file(src)
    assert f"{model}/v1 +%?#&.zip" in store.keys(model)
    assert model in [m["name"] for m in json.loads(store.run("models", "--json").stdout)]


def test_manifest_in_the_bucket_follows_every_change(store, name, tmp_path):
    model = name()
    src = make_file(tmp_path / "a.pt", 1000)
    store.run("import", str(src), "--model", model, "--type", "text", "--note", "base weights", "--quiet")
    store.run("import", str(src), "--model", model, "--quiet")
    manifest = json.loads(read_object(store, f".catalog/{model}.json"))
    assert manifest["type"] == "text" and manifest["formatVersion"] == 2 and "versions" not in manifest
    entries = version_entries(store, model)
    assert [(e["name"], e["status"], e["note"]) for e in entries] == [("v1", "ready", "base weights"), ("v2", "ready", "")]
    assert entries[0]["sha256"] == sha256_file(src)

    store.run("version", "rm", model, "v1")
    assert [e["name"] for e in version_entries(store, model)] == ["v2"]
    assert store.keys(f".catalog/.versions/{model}/v1.pt.json") == []


def version_entries(store, model):
    """The bucket's entries of the model's versions (one small object each), by name."""
    entries = [json.loads(read_object(store, k)) for k in store.keys(".catalog/.versions/")]
    return sorted((e["version"] for e in entries if e["model"] == model), key=lambda v: v["name"])


def read_object(store, key):
    return store.get_object(key)


def test_duplicate_version_is_refused_under_any_extension(store, name, tmp_path):
    model = name()
    store.run("import", str(make_file(tmp_path / "a.zip", 10)), "--model", model, "--version", "v1", "--quiet")
    p = store.run("import", str(make_file(tmp_path / "b.pth", 20)), "--model", model, "--version", "v1", "--quiet", check=False)
    assert p.returncode != 0
    assert "already exists" in p.stderr
    v = store.versions(model)
    assert list(v) == ["v1"] and v["v1"]["format"] == "zip" and v["v1"]["size"] == 10


def test_unsupported_extension_and_bad_names_are_refused(store, name, tmp_path):
    model = name()
    p = store.run("import", str(make_file(tmp_path / "w.exe", 10)), "--model", model, check=False)
    assert p.returncode != 0 and "unsupported extension" in p.stderr
    for bad in [".hidden", "a/b", "x" * 201, "tab\there"]:
        p = store.run("import", str(make_file(tmp_path / "w.zip", 10)), "--model", bad, check=False)
        assert p.returncode != 0, bad
        assert "name" in p.stderr
    assert json.loads(store.run("models", "--json").stdout) == []


def test_last_ready_version_cannot_be_deleted(store, name, tmp_path):
    model = name()
    src = make_file(tmp_path / "a.zip", 100)
    store.run("import", str(src), "--model", model, "--quiet")
    store.run("import", str(src), "--model", model, "--quiet")
    store.run("version", "rm", model, "v1")
    assert f"{model}/v1.zip" not in store.keys(model + "/")
    p = store.run("version", "rm", model, "v2", check=False)
    assert p.returncode != 0 and "last ready version" in p.stderr
    assert f"{model}/v2.zip" in store.keys(model + "/")
    assert list(store.versions(model)) == ["v2"]
    # The model goes with all its versions.
    store.run("model", "rm", model)
    assert store.keys(model + "/") == [] and store.keys(f".catalog/{model}.json") == []
    assert store.keys(f".catalog/.versions/{model}/") == [], "the versions' entries go with the model"


def test_next_version_and_listing_filters(store, name, tmp_path):
    a, b = name("BERT-Base-Chinese"), name("resnet")
    src = make_file(tmp_path / "a.zip", 10)
    store.run("import", str(src), "--model", a, "--type", "text", "--version", "v1", "--quiet")
    store.run("import", str(src), "--model", a, "--version", "v2.1", "--quiet")
    store.run("model", "create", b, "--type", "image")
    assert store.run("version", "next", a).stdout.strip() == "v3"
    assert store.run("version", "next", b).stdout.strip() == "v1"
    assert [m["name"] for m in json.loads(store.run("models", "--type", "text", "--json").stdout)] == [a]
    assert [m["name"] for m in json.loads(store.run("models", "--search", "bert", "--json").stdout)] == [a]
    stats = json.loads(store.run("stats", "--json").stdout)
    assert stats["models"] == 2 and stats["modelsByType"] == {"text": 1, "image": 1, "general": 0}
    assert stats["versions"] == 2 and stats["bytes"] == 20


def test_killed_import_resumes_from_uploaded_parts(store, name, tmp_path):
    model = name()
    src = make_file(tmp_path / "big.ckpt", 200 * MiB, seed=7)
    proc = store.popen("import", str(src), "--model", model, "--quiet")
    try:
        wait_for_parts(store, 2, proc)
    finally:
        proc.kill()
        proc.wait()

    v = store.versions(model)["v1"]
    assert v["status"] == "uploading"
    assert store.multipart_uploads(model + "/") == [f"{model}/v1.ckpt"]
    assert store.keys(model + "/") == []  # nothing half-visible

    out = store.run("import", str(src), "--model", model, "--resume", "--quiet")
    assert "ready" in out.stdout
    v = store.versions(model)["v1"]
    assert v["status"] == "ready" and v["sha256"] == sha256_file(src)
    back = tmp_path / "back"
    store.run("download", model, "v1", "-o", str(back), "--quiet")
    assert sha256_file(back) == sha256_file(src)
    assert store.multipart_uploads(model + "/") == []


def test_resume_refuses_a_different_file(store, name, tmp_path):
    model = name()
    src = make_file(tmp_path / "big.ckpt", 60 * MiB)
    proc = store.popen("import", str(src), "--model", model, "--quiet")
    try:
        wait_for_parts(store, 1, proc)
    finally:
        proc.kill()
        proc.wait()
    make_file(tmp_path / "big.ckpt", 61 * MiB)
    p = store.run("import", str(src), "--model", model, "--version", "v1", "--resume", check=False)
    assert p.returncode != 0 and "interrupted upload was of" in p.stderr
    assert store.versions(model)["v1"]["status"] == "uploading"


def test_s3_outage_mid_upload_fails_cleanly_and_leaves_no_orphan(s3store, relay, name, tmp_path):
    """The server vanishes half-way: the import fails with a clear error in bounded time, the
    version is failed, and once the server is back no multipart upload is left."""
    model = name()
    src = make_file(tmp_path / "big.pth", 300 * MiB)
    env = s3store.env(MODELFS_ENDPOINT=relay.endpoint, MODELFS_S3_TIMEOUT="5")
    proc = s3store.popen("import", str(src), "--model", model, "--quiet", env=env)
    try:
        wait_for_parts(s3store, 1, proc)
        relay.cut()
        # A hang guard, not a performance threshold: the operation timeout is 5 s.
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "unreachable" in err or "object storage" in err, err
    assert "testing" not in err  # the secret never reaches a message

    relay.restore()
    v = s3store.versions(model)["v1"]
    assert v["status"] == "failed" and v["error"]
    gc = s3store.run("gc", env=env)
    assert "aborted 1 failed upload" in gc.stdout
    assert s3store.multipart_uploads(model + "/") == []
    assert s3store.keys(model + "/") == []


def test_wrong_secret_is_a_clear_error(s3store, name, tmp_path):
    env = s3store.env(AWS_SECRET_ACCESS_KEY="not-the-secret-x9")
    p = s3store.run("import", str(make_file(tmp_path / "a.zip", 10)), "--model", name(), check=False, env=env)
    assert p.returncode != 0
    assert "SignatureDoesNotMatch" in p.stderr or "403" in p.stderr
    assert "not-the-secret-x9" not in p.stderr + p.stdout


def test_notes_print_escaped_in_listings(store, name, tmp_path):
    model = name()
    src = make_file(tmp_path / "a.pt", 100)
    note = "fine\x1b[2J\x1b[31mforged line\nv9.pt  ready"
    store.run("import", str(src), "--model", model, "--note", note, "--quiet")
    store.run("model", "set", model, "--note", note)
    for listing in (store.run("versions", model).stdout, store.run("models", "--search", model).stdout):
        assert "\x1b" not in listing and "forged line\n" not in listing, repr(listing)
        assert "fine\\u{1b}[2J\\u{1b}[31mforged line\\u{a}v9.pt" in listing, repr(listing)
    # JSON keeps the note as it is (escaped the JSON way).
    assert store.versions(model)["v1"]["note"] == note


@pytest.mark.parametrize("option", ["--data-dir", "--cache-dir", "--spool-dir", "--log-file"])
def test_relative_paths_in_mount_options(s3store, name, tmp_path, mounts, option):
    """`modelfs mount M --data-dir d` (one character, relative) crashed with SIGILL in Foundation's
    path arithmetic: every path option is taken from the directory the command runs in."""
    env = s3store.env()
    work = tmp_path / "work"
    work.mkdir()
    args = ["mount", "m"]
    if option == "--data-dir":
        # The store's catalog and state are made afresh in ./d (its own bucket claim).
        fresh = Store("s3", str(work / "d"), s3store.endpoint, impl=s3store.impl)
        env = fresh.env()
        env.pop("MODELFS_DATA_DIR")
        args += ["--data-dir", "d"]
    else:
        args += [option, "x"]
    m = mounts(s3store, path=work / "m", start=False)  # mounted here, from `work`
    mountpoint = m.path
    p = subprocess.run([MODELFS, *args], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    model = name()
    os.mkdir(os.path.join(mountpoint, "models", model))
    src = make_file(tmp_path / "w.pth", 3 * MiB + 1, seed=4)
    subprocess.run(["cp", str(src), os.path.join(mountpoint, "models", model, "v1.pth")], check=True)
    assert sha256_file(os.path.join(mountpoint, "models", model, "v1.pth")) == sha256_file(src)
    m.unmount()
    made = {"--data-dir": "d/mount.log", "--cache-dir": "x/objects", "--spool-dir": "x", "--log-file": "x"}[option]
    assert (work / made).exists(), os.listdir(work)


def test_a_cache_dir_the_mount_cannot_write_is_a_warning_not_a_failure(s3store, name, tmp_path, mounts):
    """A read-only cache dir (a read-only tmpfs: root ignores modes) does not stop the mount: it
    starts, logs one warning naming the dir, and reads from object storage without a disk cache."""
    model = name()
    src = make_file(tmp_path / "w.pth", 5 * MiB, seed=9)
    s3store.run("import", str(src), "--model", model, "--version", "v1", "--quiet")
    cache = tmp_path / "cache"
    cache.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(cache)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {r.stderr}")
    path, log = str(tmp_path / "m"), str(tmp_path / "mount.log")
    try:
        with mounts(s3store, "--cache-dir", str(cache), "--log-file", log, path=path) as m:
            assert sha256_file(m.p("models", model, "v1.pth")) == sha256_file(src)
            stats = m.stats()
            assert stats["disk_cache.bytes"] == 0 and stats["s3.bytes_fetched"] >= 5 * MiB, stats
        warnings = [line for line in open(log) if "no disk cache" in line]
        assert len(warnings) == 1 and str(cache) in warnings[0], open(log).read()
    finally:
        subprocess.run(["umount", str(cache)])


def test_the_hints_scripts_run_prints_name_a_modelfs_that_runs(tmp_path, mounts):
    """scripts/run is the README's first command: every command its hints give runs as printed in
    a fresh shell, where `modelfs` is not on the PATH."""
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    env = dict(os.environ, HOME=str(tmp_path / "home"), MODELFS_BIN=os.path.abspath(MODELFS),
               PATH="/usr/local/bin:/usr/bin:/bin")
    for k in ("MODELFS_DATA_DIR", "MODELFS_BUCKET", "MODELFS_CATALOG", "MODELFS_DB", "XDG_DATA_HOME"):
        env.pop(k, None)
    env["MODELFS_WEB"] = f"127.0.0.1:{free_port()}"
    mountpoint = mounts(None, path=tmp_path / "mnt", start=False).path  # scripts/run mounts it
    p = subprocess.run([os.path.join(root, "scripts", "run"), mountpoint], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    # The mount serves the pages, and made its owner a tokens file no one else reads.
    url, tokens = re.search(r"Pages and the JSON API: (http://\S+) \(.* token in (\S+)\)", p.stdout).groups()
    assert url == f"http://{env['MODELFS_WEB']}/" and os.stat(tokens).st_mode & 0o777 == 0o600, p.stdout
    wait_for(lambda: subprocess.run(["curl", "-sf", "-o", "/dev/null", url]).returncode == 0, 30, "the mount's pages")
    assert "modelfs" in subprocess.run(["curl", "-s", url], capture_output=True, text=True).stdout
    assert open(tokens).read().split()[0] not in p.stdout + p.stderr, "the token is in the file, not on the terminal"
    hints = p.stdout.split("Try it:", 1)[1]
    commands = {c.split()[0] for line in hints.splitlines() if line.startswith("  ") for c in line.split(";") if c.strip()}
    assert {"mkdir", "cp", "cat"} <= commands, hints
    for c in commands:
        assert shutil.which(c, path=env["PATH"]), (c, hints)
    modelfs = [c for c in commands if os.path.basename(c) == "modelfs"]
    assert modelfs and subprocess.run([modelfs[0], "models"], env=env, capture_output=True).returncode == 0, hints
