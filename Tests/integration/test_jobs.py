"""Training jobs through the mount's control file, with the example trainer, on the local
executor and on a real one-node Slurm cluster."""
import errno
import json
import os
import pwd
import subprocess
import sys
import time

import pytest

from helpers import Mount, sh, xattrs

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
TRAINER = os.path.join(ROOT, "scripts", "train_example.py")
TRAIN_COMMAND = f"{sys.executable} {TRAINER}"
EVAL_COMMAND = f"{sys.executable} {os.path.join(ROOT, 'scripts', 'eval_example.py')}"


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


def wait_succeeded(mnt, job, timeout=120):
    """Waits for the job to end; one that failed fails the test with its log, which says why."""
    status = wait_status(mnt, job, {"succeeded", "failed", "cancelled"}, timeout)
    if status != "succeeded":
        log = open(os.path.join(mnt, "jobs", job, "log")).read()
        raise AssertionError(f"job {job} {status}; log:\n{log}")
    return status


class JobMount(Mount):
    """A mount that runs jobs (`--train-command`, `--eval-command`) on one executor; `inputs` is
    where the example trainer's files are made. `with JobMount(…).start() as m` unmounts at the end."""

    def __init__(self, store, tmp_path, executor="local", env=None, train_command=TRAIN_COMMAND, eval_command=None):
        more = ["--eval-command", eval_command] if eval_command else []
        super().__init__(store, tmp_path / "mnt", ["--train-command", train_command, *more, "--executor", executor],
                         env=store.env(**(env or {})))
        self.executor, self.inputs = executor, tmp_path

    def mount(self):
        return self.start()

    def seed(self, model, dataset):
        """A model with base weights v1 and a dataset, both made by the example trainer."""
        base, data = self.inputs / "base.safetensors", self.inputs / "qa.jsonl"
        sh(sys.executable, TRAINER, "--init", str(base))
        sh(sys.executable, TRAINER, "--make-dataset", str(data), "--records", "120")
        sh("mkdir", self.p("models", model))
        sh("cp", str(base), self.p("models", model, "v1.safetensors"))
        sh("cp", str(data), self.p("datasets", dataset + ".jsonl"))

    def submit(self, request, control="submit"):
        """Python write-then-read on one open file: the write succeeds or fails, the read says why."""
        fd = os.open(self.p("jobs", control), os.O_RDWR)
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
    with JobMount(store, tmp_path).start() as m:
        yield m


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
    wait_succeeded(jobs.p(), job)
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
        # A job may not take a control file's name, and values carry no control characters.
        (f"model={model} version=v1 dataset={dataset} name=submit\n", errno.EINVAL, "control file"),
        (f"model={model} version=v1 dataset={dataset} name=control\n", errno.EINVAL, "control file"),
        (f"model={model} version=v1 dataset={dataset} note=a\x00b\n", errno.EINVAL, "control character"),
        (f'model={model} version=v1 dataset={dataset} note="\x1b[2Jgotcha"\n', errno.EINVAL, "control character"),
        (json.dumps({"model": model, "version": "v1", "dataset": dataset, "note": "two\nlines"}), errno.EINVAL, "control character"),
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
    assert [j for j in os.listdir(jobs.p("jobs")) if j not in ("submit", "evaluate")] == []


def test_json_request_and_a_name_with_shell_metacharacters(jobs, name, tmp_path):
    model, dataset = name("tiny"), name("qa")
    jobs.seed(model, dataset)
    job = "x; touch PWNED $(touch PWNED2)"
    err, answer = jobs.submit(json.dumps({"model": model, "version": "v1", "dataset": dataset, "name": job, "epochs": 1}))
    assert err == 0 and answer == job
    wait_succeeded(jobs.p(), job)
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


def one_successful_job(m, name, epochs=1):
    """Seeds a model and a dataset, runs one job to its end; returns the model and the job's id."""
    model, dataset = name("tiny"), name("qa")
    m.seed(model, dataset)
    err, job = m.submit(f"model={model} version=v1 dataset={dataset} epochs={epochs}\n")
    assert err == 0
    wait_succeeded(m.p(), job)
    return model, job


def test_cancel_of_a_finished_job_says_what_became_of_it(jobs, name):
    _, job = one_successful_job(jobs, name)
    try:
        with open(jobs.p("jobs", job, "control"), "w") as f:
            f.write("cancel\n")
        raise AssertionError("cancel of a finished job was accepted")
    except OSError as e:
        assert e.errno == errno.EINVAL, e
    p = jobs.store.run("jobs", job, "--cancel", env=jobs.env, check=False)
    assert p.returncode == 1 and f"job {job} already succeeded" in p.stderr, p.stderr
    assert open(jobs.p("jobs", job, "status")).read().strip() == "succeeded"


# A variable of the mount's own environment that no job may see (not MODELFS_-prefixed, so that
# no allow-listing by prefix could let it through).
CANARY = "ZZ_MOUNT_ONLY_CANARY"
ENV_COMMAND = "python3 -c 'import json, os; print(\"ENV \" + json.dumps(dict(os.environ)))'"


def job_environment(mnt, job):
    """The environment the trainer saw, from the ENV line it printed into its log."""
    log = open(os.path.join(mnt, "jobs", job, "log")).read()
    lines = [l for l in log.splitlines() if l.startswith("ENV ")]
    assert len(lines) == 1, log
    return json.loads(lines[0][4:])


def assert_private_job_files(store, job):
    """The job's log and directory, the data dir and the catalog: private to the mount's user."""
    def mode(path):
        return oct(os.stat(path).st_mode & 0o777)
    job_dir = os.path.join(store.data_dir, "jobs", job)
    assert mode(os.path.join(job_dir, "log")) == "0o600"
    assert mode(os.path.join(job_dir, "spec.json")) == "0o600"
    assert mode(job_dir) == "0o700" and mode(os.path.join(store.data_dir, "jobs")) == "0o700"
    assert mode(store.data_dir) == "0o700"
    db = [f for f in os.listdir(store.data_dir) if f.endswith(".db")]
    assert db and all(mode(os.path.join(store.data_dir, f)) == "0o600" for f in os.listdir(store.data_dir) if ".db" in f), db
    if store.kind == "local":
        assert mode(os.path.join(store.data_dir, "blobs")) == "0o700"


def assert_only_job_variables(env, job, mount_env, allowed=()):
    assert env["MODELFS_JOB_ID"] == job and os.path.isfile(env["MODELFS_PARAMS"])
    assert not [k for k in env if k.startswith("AWS_")], sorted(env)
    assert CANARY not in env
    assert env["PATH"] == mount_env["PATH"]
    assert {k for k in env if k.startswith("MODELFS_")} == {
        "MODELFS_JOB_ID", "MODELFS_JOB_DIR", "MODELFS_MODEL", "MODELFS_VERSION", "MODELFS_DATASET", "MODELFS_MODEL_PATH",
        "MODELFS_DATASET_PATH", "MODELFS_OUTPUT_DIR", "MODELFS_PARAMS", "MODELFS_PARAM_EPOCHS"}
    # What /bin/sh and python3 set themselves (LC_CTYPE: Python's C-locale coercion).
    own = {"PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "_", "LC_CTYPE"}
    extra = {k for k in env if not k.startswith("MODELFS_")} - own - set(allowed)
    assert not extra, sorted(extra)


def test_a_local_job_gets_only_its_environment_and_private_files(store, tmp_path, name):
    with JobMount(store, tmp_path, env={CANARY: "leaked", "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "x")},
                 train_command=ENV_COMMAND).start() as m:
        _, job = one_successful_job(m, name)
        assert_only_job_variables(job_environment(m.p(), job), job, m.env)
        assert_private_job_files(store, job)


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
    wait_succeeded(jobs.p(), job)
    assert "v2.safetensors" in os.listdir(jobs.p("models", model))


def test_a_mount_without_a_train_command_refuses_jobs(store, name, mounts):
    path = mounts(store).path
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
            pytest.fail("SLURM_CONF is not set. " + os.environ.get("MODELFS_SLURM_START_ERROR", ""))
        pytest.skip("no Slurm test cluster (run scripts/test)")
    with JobMount(s3store, tmp_path, executor="slurm").start() as m:
        yield m


def test_a_slurm_job_makes_a_new_version(slurm_jobs, name):
    model, job = one_successful_job(slurm_jobs, name, epochs=2)
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


def test_a_slurm_job_gets_only_its_environment_and_private_files(s3store, tmp_path, name):
    if not SLURM:
        if os.environ.get("MODELFS_REQUIRE_SLURM") == "1":
            pytest.fail("SLURM_CONF is not set. " + os.environ.get("MODELFS_SLURM_START_ERROR", ""))
        pytest.skip("no Slurm test cluster (run scripts/test)")
    assert os.environ.get("AWS_SECRET_ACCESS_KEY"), "the S3 mount has credentials in its environment"
    with JobMount(s3store, tmp_path, executor="slurm", env={CANARY: "leaked"}, train_command=ENV_COMMAND).start() as m:
        _, job = one_successful_job(m, name)  # it found python3 through the PATH it was given
        env = job_environment(m.p(), job)
        assert env["SLURM_JOB_ID"] == json.load(open(m.p("jobs", job, "spec.json")))["executorID"]
        # Slurm adds its SLURM_* variables, a few of its own and (22.05, for any --export but ALL)
        # the user's login environment on the node, as `su - USER` gives it: nothing of the mount's.
        login = subprocess.run(["su", "-", pwd.getpwuid(os.getuid()).pw_name, "-c", "env"], capture_output=True, text=True).stdout
        slurm = {k for k in env if k.startswith("SLURM")} | {"ENVIRONMENT", "HOSTNAME", "TMPDIR"}
        assert_only_job_variables(env, job, m.env, allowed=slurm | {l.split("=", 1)[0] for l in login.splitlines() if "=" in l})
        assert env["SLURM_EXPORT_ENV"].split(",") == sorted(k for k in env if k.startswith("MODELFS_") or k in ("PATH", "HOME"))
        assert_private_job_files(s3store, job)
