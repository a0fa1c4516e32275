"""Rules under races, with real processes: every rule is checked in the transaction that makes its
change, so two `modelfs` processes cannot both pass one (issue 11, item 6)."""
import errno
import json
import os

from conftest import make_file, sha256_file

MiB = 1 << 20
ROUNDS = 20


def race(store, *commands):
    """Starts every command at once (one process each), then waits for all; returns them finished."""
    procs = [store.popen(*c) for c in commands]
    for p in procs:
        p.out, p.err = p.communicate(timeout=300)
    return procs


def test_two_version_rm_of_the_last_two_ready_versions_leave_one(store, name, tmp_path):
    src = make_file(tmp_path / "w.zip", 4096)
    for round in range(ROUNDS):
        model = name(f"race{round}")
        store.run("import", str(src), "--model", model, "--version", "v1", "--quiet")
        store.run("import", str(src), "--model", model, "--version", "v2", "--quiet")
        a, b = race(store, ("version", "rm", model, "v1"), ("version", "rm", model, "v2"))
        codes = sorted([a.returncode, b.returncode])
        assert codes == [0, 1], f"round {round}: {a.returncode} {a.err!r} / {b.returncode} {b.err!r}"
        loser = a if a.returncode else b
        assert "last ready version" in loser.err, loser.err
        left = store.versions(model)
        assert len(left) == 1 and next(iter(left.values()))["status"] == "ready", left
        (v,) = left.values()
        assert store.keys(model + "/") == [v["key"]], "the version left has its bytes, the deleted one has none"


def test_two_imports_of_one_version_name_make_one(store, name, tmp_path):
    # Two different files of several parts each: the winner's bytes must be the version's.
    files = [make_file(tmp_path / f"f{i}.safetensors", 17 * MiB + i, seed=i) for i in range(2)]
    for round in range(5):
        model = name(f"imp{round}")  # created by whichever import comes first
        procs = race(store, *[("import", str(f), "--model", model, "--version", "v3", "--quiet") for f in files])
        winners = [i for i, p in enumerate(procs) if p.returncode == 0]
        assert len(winners) == 1, [(p.returncode, p.err) for p in procs]
        loser = procs[1 - winners[0]]
        assert loser.returncode == 1 and "already exists" in loser.err, loser.err
        v = store.versions(model)
        assert list(v) == ["v3"] and v["v3"]["status"] == "ready"
        assert v["v3"]["sha256"] == sha256_file(files[winners[0]])
        assert store.multipart_uploads(model + "/") == [], "the loser started no upload"
        assert store.keys(model + "/") == [f"{model}/v3.safetensors"]


def test_imports_without_a_version_name_all_get_one(store, name, tmp_path):
    src = make_file(tmp_path / "w.pt", 1000)
    model = name("next")
    procs = race(store, *[("import", str(src), "--model", model, "--quiet")] * 4)
    assert [p.returncode for p in procs] == [0] * 4, [p.err for p in procs]
    assert sorted(store.versions(model)) == ["v1", "v2", "v3", "v4"]


def test_version_rm_racing_a_job_submit_never_leaves_a_job_without_its_version(store, name, tmp_path):
    model, dataset = name("jobrace"), name("qa")
    src = make_file(tmp_path / "w.safetensors", 4096)
    data = tmp_path / "qa.jsonl"
    data.write_text('{"text": "a", "label": 1}\n')
    store.run("import", str(src), "--model", model, "--version", "v0", "--quiet")
    store.run("dataset", "add", str(data), "--name", dataset)
    queued = 0
    for round in range(ROUNDS):
        version = f"r{round}"
        store.run("import", str(src), "--model", model, "--version", version, "--quiet")
        # --detach: the job is only queued (no mount runs it here), so it keeps its version in use.
        train, rm = race(store, ("train", "--model", model, "--version", version, "--dataset", dataset,
                                 "--train-command", "true", "--detach"),
                         ("version", "rm", model, version))
        exists = version in store.versions(model)
        if train.returncode == 0:
            queued += 1
            assert exists and rm.returncode == 1 and "used by job" in rm.err, (round, rm.err)
        else:
            assert not exists and rm.returncode == 0 and "no version" in train.err, (round, train.err, rm.err)
    jobs = json.loads(store.run("jobs", "--json").stdout)
    assert len(jobs) == queued
    versions = store.versions(model)
    for job in jobs:
        assert job["version"] in versions, f"job {job['id']} names a version that is gone"


def test_rmdir_of_a_model_with_an_upload_in_flight_is_ebusy(mount, name):
    model = name()
    d = mount.p("models", model)
    os.mkdir(d)
    fd = os.open(os.path.join(d, "v1.zip"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, b"x" * 100_000)
        try:
            os.rmdir(d)
            raise AssertionError("rmdir of a model with an upload in flight succeeded")
        except OSError as e:
            assert e.errno == errno.EBUSY
        # The CLI beside the mount is refused the same way.
        p = mount.store.run("model", "rm", model, check=False)
        assert p.returncode == 1 and "still uploading" in p.stderr, p.stderr
        os.write(fd, b"y" * 100)
    finally:
        os.close(fd)
    # The writer was not disturbed: its version is complete.
    v = mount.store.versions(model)["v1"]
    assert v["status"] == "ready" and v["size"] == 100_100
    os.rmdir(d)
    assert mount.store.keys(model + "/") == []


def test_version_rm_while_object_storage_is_down_keeps_the_old_key_reserved(s3store, relay, name, tmp_path):
    """Rows go first, objects after: with the server gone the delete is committed and its object
    waits, and a new version of the same name can never be given the old object's key."""
    model = name()
    src = make_file(tmp_path / "w.pt", 5000)
    s3store.run("import", str(src), "--model", model, "--version", "v1", "--quiet")
    s3store.run("import", str(src), "--model", model, "--version", "v2", "--quiet")
    relay.cut()
    down = s3store.env(MODELFS_ENDPOINT=relay.endpoint, MODELFS_S3_TIMEOUT="3")
    p = s3store.run("version", "rm", model, "v1", env=down, check=False)
    assert p.returncode == 0 and "not deleted yet" in p.stderr, p.stderr
    assert os.environ.get("AWS_SECRET_ACCESS_KEY", "unset") not in p.stderr
    relay.restore()
    assert sorted(s3store.versions(model)) == ["v2"]
    assert f"{model}/v1.pt" in s3store.keys(model + "/"), "the object waits for a later delete"
    s3store.run("import", str(make_file(tmp_path / "new.pt", 777, seed=7)), "--model", model, "--version", "v1", "--quiet")
    again = s3store.versions(model)["v1"]
    assert again["key"] != f"{model}/v1.pt" and again["size"] == 777
