"""Training jobs through the mount's control file, with the example trainer, on the local
executor and on a real one-node Slurm cluster."""
import errno
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import MODELFS, is_mounted, sh

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
TRAINER = os.path.join(ROOT, "scripts", "train_example.py")
TRAIN_COMMAND = f"{sys.executable} {TRAINER}"


def xattrs(path):
    out = sh("getfattr", "-d", "-e", "text", "--absolute-names", path).stdout
    return {k: v.strip('"') for k, v in (l.split("=", 1) for l in out.splitlines() if "=" in l)}


def wait_status(mnt, job, wanted, timeout=120):
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        with open(os.path.join(mnt, "jobs", job, "status")) as f:
            status = f.read().strip()
        if status in wanted:
            return status
        time.sleep(0.2)
    log = open(os.path.join(mnt, "jobs", job, "log")).read()
    raise AssertionError(f"job {job} is {status}, not {wanted}; log:\n{log}")


class JobMount:
    def __init__(self, store, tmp_path, executor="local", env=None):
        self.store, self.path, self.executor = store, str(tmp_path / "mnt"), executor
        self.env = store.env(**(env or {}))
        self.inputs = tmp_path

    def mount(self):
        self.store.run("mount", self.path, "--train-command", TRAIN_COMMAND, "--executor", self.executor, env=self.env)
        assert is_mounted(self.path)

    def unmount(self):
        if subprocess.run(["fusermount3", "-u", self.path]).returncode != 0:
            subprocess.run(["fusermount3", "-uz", self.path])
        deadline = time.time() + 10
        while is_mounted(self.path) and time.time() < deadline:
            time.sleep(0.05)

    def p(self, *parts):
        return os.path.join(self.path, *parts)

    def seed(self, model, dataset):
        """A model with base weights v1 and a dataset, both made by the example trainer."""
        base, data = self.inputs / "base.safetensors", self.inputs / "qa.jsonl"
        sh(sys.executable, TRAINER, "--init", str(base))
        sh(sys.executable, TRAINER, "--make-dataset", str(data), "--records", "120")
        sh("mkdir", self.p("models", model))
        sh("cp", str(base), self.p("models", model, "v1.safetensors"))
        sh("cp", str(data), self.p("datasets", dataset + ".jsonl"))

    def submit(self, request):
        """Python write-then-read on one open file: the write succeeds or fails, the read says why."""
        fd = os.open(self.p("jobs", "submit"), os.O_RDWR)
        try:
            try:
                os.write(fd, request.encode())
                err = 0
            except OSError as e:
                err = e.errno
            answer = os.pread(fd, 4096, 0).decode()
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
        return err, answer.strip()


@pytest.fixture
def jobs(store, tmp_path):
    m = JobMount(store, tmp_path)
    m.mount()
    try:
        yield m
    finally:
        m.unmount()


def test_a_local_job_makes_a_new_version_with_lineage(jobs, name):
    model, dataset = name("tiny"), name("qa")
    jobs.seed(model, dataset)
    # The shell way.
    sh("bash", "-c", f'echo "model={model} version=v1 dataset={dataset} epochs=4" > "{jobs.p("jobs", "submit")}"')
    job = f"{model}-v1-ft-1"
    assert job in os.listdir(jobs.p("jobs"))
    assert sorted(os.listdir(jobs.p("jobs", job))) == ["control", "log", "spec.json", "status"]
    spec = json.load(open(jobs.p("jobs", job, "spec.json")))
    assert spec["model"] == model and spec["params"] == {"epochs": "4"}
    assert wait_status(jobs.p(), job, {"succeeded", "failed"}) == "succeeded"
    log = open(jobs.p("jobs", job, "log")).read()
    assert "epoch 4/4" in log and "job succeeded" in log
    a = xattrs(jobs.p("models", model, "v2.safetensors"))
    assert a["user.modelfs.status"] == "ready"
    assert a["user.modelfs.parent_version"] == "v1" and a["user.modelfs.dataset"] == dataset and a["user.modelfs.job"] == job
    from safetensors.numpy import load_file
    base, tuned = load_file(jobs.p("models", model, "v1.safetensors")), load_file(jobs.p("models", model, "v2.safetensors"))
    assert base.keys() == tuned.keys() and any((base[k] != tuned[k]).any() for k in base)
    out = json.loads(jobs.store.run("jobs", job, "--json", env=jobs.env).stdout)
    assert out["status"] == "succeeded" and out["outputs"] == ["v2.safetensors"]


def test_bad_requests_fail_the_write_with_a_reason(jobs, name):
    model, dataset = name("tiny"), name("qa")
    jobs.seed(model, dataset)
    cases = [
        ("garbage\n", errno.EINVAL, "not key=value"),
        (f"model={model} version=v1\n", errno.EINVAL, "dataset"),
        (f"model=nope version=v1 dataset={dataset}\n", errno.ENOENT, "no model"),
        (f"model={model} version=v7 dataset={dataset}\n", errno.ENOENT, "no version"),
        (f"model={model} version=v1 dataset=nope\n", errno.ENOENT, "no dataset"),
        ('{"model": "%s", "version": "v1"' % model + "\n", errno.EINVAL, ""),
        ("x" * (65 << 10), errno.EINVAL, "bytes"),
    ]
    for request, code, reason in cases:
        err, answer = jobs.submit(request)
        assert err == code, (request[:60], err, answer)
        assert answer.startswith("error:") and reason in answer, answer
    # A version still uploading is busy.
    fd = os.open(jobs.p("models", model, "v3.safetensors"), os.O_WRONLY | os.O_CREAT)
    os.write(fd, b"x" * 1024)
    err, answer = jobs.submit(f"model={model} version=v3 dataset={dataset}\n")
    assert err == errno.EBUSY and "uploading" in answer
    os.close(fd)
    assert [j for j in os.listdir(jobs.p("jobs")) if j != "submit"] == []


def test_json_request_and_a_name_with_shell_metacharacters(jobs, name, tmp_path):
    model, dataset = name("tiny"), name("qa")
    jobs.seed(model, dataset)
    job = "x; touch PWNED $(touch PWNED2)"
    err, answer = jobs.submit(json.dumps({"model": model, "version": "v1", "dataset": dataset, "name": job, "epochs": 1}))
    assert err == 0 and answer == job
    assert wait_status(jobs.p(), job, {"succeeded", "failed"}) == "succeeded"
    for d in (os.getcwd(), ROOT, str(tmp_path), os.path.join(jobs.store.data_dir, "jobs", job)):
        assert not os.path.exists(os.path.join(d, "PWNED")) and not os.path.exists(os.path.join(d, "PWNED2"))


def test_cancel_and_busy_while_running(jobs, name):
    model, dataset = name("tiny"), name("qa")
    jobs.seed(model, dataset)
    err, job = jobs.submit(f"model={model} version=v1 dataset={dataset} epochs=50 sleep=1\n")
    assert err == 0
    wait_status(jobs.p(), job, {"running"})
    # The version and the model a running job uses cannot go.
    assert subprocess.run(["rm", jobs.p("models", model, "v1.safetensors")]).returncode != 0
    try:
        os.unlink(jobs.p("models", model, "v1.safetensors"))
    except OSError as e:
        assert e.errno == errno.EBUSY
    try:
        os.rmdir(jobs.p("models", model))
        raise AssertionError("rmdir of a model in use succeeded")
    except OSError as e:
        assert e.errno == errno.EBUSY
    with open(jobs.p("jobs", job, "control"), "w") as f:
        f.write("cancel\n")
    assert wait_status(jobs.p(), job, {"cancelled", "failed", "succeeded"}) == "cancelled"
    assert os.listdir(jobs.p("models", model)) == ["v1.safetensors"]
    try:
        with open(jobs.p("jobs", job, "control"), "w") as f:
            f.write("explode\n")
        raise AssertionError("control accepted a bad word")
    except OSError as e:
        assert e.errno == errno.EINVAL


def test_a_failing_job_creates_nothing(jobs, name):
    model, dataset = name("tiny"), name("qa")
    jobs.seed(model, dataset)
    err, job = jobs.submit(f"model={model} version=v1 dataset={dataset} fail=1\n")
    assert err == 0
    assert wait_status(jobs.p(), job, {"succeeded", "failed"}) == "failed"
    assert os.listdir(jobs.p("models", model)) == ["v1.safetensors"]
    assert "exited with 2" in open(jobs.p("jobs", job, "log")).read()


def test_jobs_are_reconciled_after_a_remount(jobs, name):
    model, dataset = name("tiny"), name("qa")
    jobs.seed(model, dataset)
    err, job = jobs.submit(f"model={model} version=v1 dataset={dataset} epochs=3 sleep=1\n")
    assert err == 0
    wait_status(jobs.p(), job, {"running"})
    # The trainer reads its inputs through the mount: unmount once it has them.
    deadline = time.time() + 60
    while "epoch 1/" not in open(jobs.p("jobs", job, "log")).read() and time.time() < deadline:
        time.sleep(0.1)
    jobs.unmount()
    jobs.mount()
    assert wait_status(jobs.p(), job, {"succeeded", "failed", "cancelled"}) == "succeeded"
    assert "v2.safetensors" in os.listdir(jobs.p("models", model))


def test_a_mount_without_a_train_command_refuses_jobs(store, tmp_path, name):
    path = str(tmp_path / "m")
    store.run("mount", path)
    try:
        fd = os.open(os.path.join(path, "jobs", "submit"), os.O_RDWR)
        try:
            os.write(fd, b"model=a version=v1 dataset=b\n")
            raise AssertionError("accepted")
        except OSError as e:
            assert e.errno == errno.EINVAL
            assert "--train-command" in os.pread(fd, 4096, 0).decode()
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
    finally:
        subprocess.run(["fusermount3", "-u", path])


def test_train_from_the_cli_without_a_mount(store, tmp_path, name):
    model, dataset = name("tiny"), name("qa")
    base, data = tmp_path / "base.safetensors", tmp_path / "qa.jsonl"
    sh(sys.executable, TRAINER, "--init", str(base))
    sh(sys.executable, TRAINER, "--make-dataset", str(data), "--records", "50")
    store.run("import", str(base), "--model", model, "--quiet")
    store.run("dataset", "add", str(data), "--name", dataset)
    out = store.run("train", "--model", model, "--version", "v1", "--dataset", dataset, "--train-command", TRAIN_COMMAND, "epochs=2")
    assert "epoch 2/2" in out.stdout and "succeeded: v2.safetensors" in out.stdout
    v2 = store.versions(model)["v2"]
    assert v2["status"] == "ready" and v2["lineage"]["parentVersion"] == "v1"
    assert json.loads(store.run("datasets", "--json").stdout)[0]["records"] == 50


SLURM = os.environ.get("SLURM_CONF")


@pytest.fixture
def slurm_jobs(s3store, tmp_path):
    if not SLURM:
        if os.environ.get("MODELFS_REQUIRE_SLURM") == "1":
            pytest.fail("SLURM_CONF is not set")
        pytest.skip("no Slurm test cluster (run scripts/test)")
    m = JobMount(s3store, tmp_path, executor="slurm")
    m.mount()
    try:
        yield m
    finally:
        m.unmount()


def test_a_slurm_job_makes_a_new_version(slurm_jobs, name):
    model, dataset = name("tiny"), name("qa")
    slurm_jobs.seed(model, dataset)
    err, job = slurm_jobs.submit(f"model={model} version=v1 dataset={dataset} epochs=2\n")
    assert err == 0
    assert wait_status(slurm_jobs.p(), job, {"succeeded", "failed", "cancelled"}) == "succeeded"
    spec = json.load(open(slurm_jobs.p("jobs", job, "spec.json")))
    assert spec["executor"] == "slurm" and spec["executorID"].isdigit()
    a = xattrs(slurm_jobs.p("models", model, "v2.safetensors"))
    assert a["user.modelfs.job"] == job and a["user.modelfs.status"] == "ready"
    assert "epoch 2/2" in open(slurm_jobs.p("jobs", job, "log")).read()


def test_a_slurm_job_is_cancelled_with_scancel(slurm_jobs, name):
    model, dataset = name("tiny"), name("qa")
    slurm_jobs.seed(model, dataset)
    err, job = slurm_jobs.submit(f"model={model} version=v1 dataset={dataset} epochs=100 sleep=1\n")
    assert err == 0
    wait_status(slurm_jobs.p(), job, {"running"})
    deadline = time.time() + 60
    while "epoch 1/" not in open(slurm_jobs.p("jobs", job, "log")).read() and time.time() < deadline:
        time.sleep(0.2)
    eid = json.load(open(slurm_jobs.p("jobs", job, "spec.json")))["executorID"]
    with open(slurm_jobs.p("jobs", job, "control"), "w") as f:
        f.write("cancel")
    assert wait_status(slurm_jobs.p(), job, {"cancelled", "failed", "succeeded"}) == "cancelled"
    # Slurm agrees.
    deadline = time.time() + 60
    state = ""
    while time.time() < deadline:
        state = subprocess.run(["squeue", "-h", "-t", "all", "-j", eid, "-o", "%T"], capture_output=True, text=True).stdout.strip()
        if state.startswith("CANCELLED") or state == "":
            break
        time.sleep(0.5)
    assert state.startswith("CANCELLED") or "CANCELLED" in subprocess.run(
        ["sacct", "-c", "-n", "-P", "-j", eid, "-o", "State"], capture_output=True, text=True).stdout
    assert os.listdir(slurm_jobs.p("models", model)) == ["v1.safetensors"]
