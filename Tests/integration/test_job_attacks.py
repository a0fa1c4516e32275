"""A hostile job and a hostile user against a mount run by root with --allow-other (issue 20):
the mount never opens what a job can change with root's rights, never waits on it, and stays
responsive for everyone while an attack runs; a job runs only on what its user may read and
adds versions only where they may write; the audit trail names who asked. Each test is the
attack, by a trainer script the job runs as a second user (useradd), on the local executor and
on Slurm where the suite has a cluster."""
import errno
import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest

from helpers import MODELFS, sh, shared_top
from test_sharing import BOB, EVE, as_user, ensure_users, refused

# On the local store and s3api only: the attacks are on the job runner and the mount's files; what
# they import goes through the same uploads that test_cli.py and test_s3_compat.py check on every S3.

# One trainer for every attack, chosen by the request's `attack=` parameter. It does its attack,
# touches `attacked` in its working directory, then waits (bounded) for the test to let it end.
TRAINER = r'''
import os, sys, time, subprocess
attack = os.environ.get("MODELFS_PARAM_ATTACK", "")
job_dir, out = os.environ["MODELFS_JOB_DIR"], os.environ["MODELFS_OUTPUT_DIR"]
secret_dir = os.environ.get("MODELFS_PARAM_SECRET_DIR", "")
def quietly(f, *a):
    try:
        f(*a)
        print("attack step", f.__name__, a, "succeeded", flush=True)
    except OSError as e:
        print("attack step", f.__name__, a, "refused:", e, flush=True)
print("trainer uid", os.getuid(), "attack", attack, flush=True)
# The log, and what a Slurm job's output goes to (work/output.log, in its working directory).
if attack == "log-symlink":
    for log in (os.path.join(job_dir, "log"), "output.log"):
        quietly(os.unlink, log)
        quietly(os.symlink, "/etc/shadow", log)
elif attack == "log-fifo":
    for log in (os.path.join(job_dir, "log"), "output.log"):
        quietly(os.unlink, log)
        quietly(os.mkfifo, log)
elif attack == "output-symlink":
    quietly(shutil_rmtree := __import__("shutil").rmtree, out)
    quietly(os.rename, out, out + ".gone")
    quietly(os.symlink, secret_dir, out)
    # And inside output/, when it is still a directory of the job's.
    quietly(os.symlink, os.path.join(secret_dir, "stolen.pt"), os.path.join(out, "link.pt"))
    quietly(os.link, os.path.join(secret_dir, "stolen.pt"), os.path.join(out, "hard.pt"))
elif attack == "checkpoint":
    with open(os.path.join(out, "ckpt.pt"), "wb") as f:
        f.write(b"mine")
elif attack == "checkpoint-race":
    # 50 checkpoints, each flipped between a file of the job's and a link to a root-only file
    # until the mount has looked at them all (the test says so once the job's status is final),
    # by a process that outlives the trainer.
    for i in range(50):
        with open(os.path.join(out, "c%02d.pt" % i), "wb") as f:
            f.write(b"mine %02d" % i)
    stop = os.path.join(os.environ["MODELFS_PARAM_GATE"], os.environ["MODELFS_JOB_ID"] + ".stop")
    swapper = r"""
import os, sys, time
out, secret, stop = sys.argv[1], sys.argv[2], sys.argv[3]
deadline = time.time() + 120
n = 0
while time.time() < deadline:
    # All links, then all files: each name is a link half of the time.
    for i in range(50):
        os.symlink(secret, os.path.join(out, ".l%02d" % i))
        os.replace(os.path.join(out, ".l%02d" % i), os.path.join(out, "c%02d.pt" % i))
    for i in range(50):
        with open(os.path.join(out, ".f%02d" % i), "wb") as f:
            f.write(b"mine %02d" % i)
        os.replace(os.path.join(out, ".f%02d" % i), os.path.join(out, "c%02d.pt" % i))
    n += 1
    if os.path.exists(stop):
        break
"""
    subprocess.Popen([sys.executable, "-c", swapper, out, os.path.join(secret_dir, "stolen.pt"), stop],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
open("attacked", "w").close()
go = os.path.join(os.environ["MODELFS_PARAM_GATE"], os.environ["MODELFS_JOB_ID"])
deadline = time.time() + 120
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.1)
print("trainer done", flush=True)
'''

EVALUATOR = r'''
import json, os
names = os.environ.get("MODELFS_PARAM_NAMES", "accuracy").split(",")
with open(os.environ["MODELFS_METRICS_FILE"], "w") as f:
    json.dump({n: 0.5 for n in names}, f)
'''

SECRET = b"root only: " + os.urandom(16).hex().encode()


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "slurm"])
def hostile(request, store, mounts):
    """A mount with --allow-other running the hostile trainer; Bob owns a model with v1 and a
    dataset; a root-only directory holds a secret checkpoint."""
    if os.geteuid() != 0:
        pytest.skip("needs root: useradd, and a mount others may use")
    executor = request.param
    if executor == "slurm" and not os.environ.get("SLURM_CONF"):
        if os.environ.get("MODELFS_REQUIRE_SLURM") == "1":
            pytest.fail("SLURM_CONF is not set. " + os.environ.get("MODELFS_SLURM_START_ERROR", ""))
        pytest.skip("no Slurm cluster (scripts/test starts one)")
    bob, eve, team = ensure_users()
    top, mnt = shared_top(store, "modelfs-attack-")
    gate, secret = (os.path.join(top, d) for d in ("gate", "secret"))
    for d, mode in ((gate, 0o755), (secret, 0o700)):
        os.makedirs(d)
        os.chmod(d, mode)
    with open(os.path.join(secret, "stolen.pt"), "wb") as f:
        f.write(SECRET)
    os.chmod(os.path.join(secret, "stolen.pt"), 0o600)
    for name, text in (("trainer.py", TRAINER), ("evaluator.py", EVALUATOR)):
        with open(os.path.join(top, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(top, name), 0o644)
    weights = os.path.join(top, "w.pt")
    with open(weights, "wb") as f:
        f.write(os.urandom(64 << 10))
    os.chmod(weights, 0o644)
    m = mounts(store, "--allow-other", "--executor", executor, "--train-command", f"python3 {top}/trainer.py",
               "--eval-command", f"python3 {top}/evaluator.py", path=mnt)
    ctx = Hostile(store, top, mnt, gate, secret, weights, bob, eve, executor)
    try:
        yield ctx
    finally:
        # Let every trainer end, then unmount whatever happened.
        jobs = os.path.join(top, "data", "jobs")
        for job in os.listdir(jobs) if os.path.isdir(jobs) else []:
            open(os.path.join(gate, job), "w").close()
            open(os.path.join(gate, job + ".stop"), "w").close()
        m.unmount()
        # A swapper still between two passes writes into output/ until it sees its stop file.
        deadline = time.time() + 30
        while os.path.exists(top) and time.time() < deadline:
            shutil.rmtree(top, ignore_errors=True)
            time.sleep(0.2)


class Hostile:
    def __init__(self, store, top, mnt, gate, secret, weights, bob, eve, executor):
        self.store, self.top, self.mnt, self.gate, self.secret = store, top, mnt, gate, secret
        self.weights, self.bob, self.eve, self.executor = weights, bob, eve, executor

    def p(self, *parts):
        return os.path.join(self.mnt, *parts)

    def seed(self, model, dataset, user=BOB, mode="755"):
        assert as_user(user, "mkdir", "-m", mode, self.p("models", model)).returncode == 0
        assert as_user(user, "cp", self.weights, self.p("models", model, "v1.pt")).returncode == 0
        assert as_user(user, "cp", self.weights, self.p("datasets", dataset + ".csv")).returncode == 0

    def submit(self, user, request, control="submit"):
        """Writes a request as `user` and reads the answer on the same open file: (errno, answer)."""
        code = ("import json, os, sys\n"
                "fd = os.open(sys.argv[1], os.O_RDWR)\n"
                "try:\n    os.write(fd, sys.argv[2].encode()); err = 0\n"
                "except OSError as e:\n    err = e.errno\n"
                "print(json.dumps([err, os.pread(fd, 4096, 0).decode()]))\n")
        p = as_user(user, "python3", "-c", code, self.p("jobs", control), request + "\n")
        assert p.returncode == 0, p.stderr
        err, answer = json.loads(p.stdout)
        return err, answer.strip()

    def attack(self, user, model, dataset, attack, **params):
        extra = " ".join(f"{k}={v}" for k, v in params.items())
        err, job = self.submit(user, f"model={model} version=v1 dataset={dataset} attack={attack} gate={self.gate} "
                                     f"secret_dir={self.secret} mnt={self.mnt} {extra}")
        assert err == 0, job
        return job

    def job_dir(self, job):
        return os.path.join(self.top, "data", "jobs", job)

    def wait_attacked(self, job, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(os.path.exists(os.path.join(self.job_dir(job), d, "attacked")) for d in ("", "work")):
                return
            assert self.status(job) in ("queued", "running"), f"job {job} is {self.status(job)}"
            time.sleep(0.2)
        raise AssertionError(f"job {job} did not attack within {timeout}s")

    def status(self, job):
        p = subprocess.run(["timeout", "30", "cat", self.p("jobs", job, "status")], capture_output=True, text=True)
        return p.stdout.strip()

    def release(self, job, timeout=120):
        open(os.path.join(self.gate, job), "w").close()
        deadline = time.time() + timeout
        while self.status(job) in ("queued", "running") and time.time() < deadline:
            time.sleep(0.2)
        return self.status(job)

    def another_user_reads(self, model):
        """Eve reads Bob's v1 through the mount (bounded): the mount answers during the attack."""
        p = as_user(EVE, "timeout", "60", "sha256sum", self.p("models", model, "v1.pt"))
        assert p.returncode == 0, f"another user's read got no answer while the attack ran: {p.returncode} {p.stderr}"
        assert p.stdout.split()[0] == sha(open(self.weights, "rb").read())

    def read_log(self, user, job):
        p = as_user(user, "timeout", "60", "cat", self.p("jobs", job, "log"))
        assert p.returncode == 0, p.stderr
        return p.stdout



def test_a_log_replaced_by_a_link_to_etc_shadow_is_not_served(hostile, name):
    h = hostile
    model, dataset = name("m"), name("d")
    h.seed(model, dataset)
    job = h.attack(BOB, model, dataset, "log-symlink")
    h.wait_attacked(job)
    h.another_user_reads(model)
    assert h.release(job) == "succeeded"
    log = h.read_log(BOB, job)
    shadow_root = [l for l in open("/etc/shadow").read().splitlines() if l.startswith("root:")][0]
    assert shadow_root not in log and "root:" not in log, log
    assert "job succeeded" in log, log
    # A Slurm job that swapped its own output file lost what it printed after: its own doing.
    assert h.executor != "local" or "trainer done" in log, log
    assert not os.path.islink(os.path.join(h.job_dir(job), "log"))


def test_a_log_replaced_by_a_fifo_blocks_no_thread(hostile, name):
    """25 readers of the FIFO at once (more than the mount's FUSE threads): every one gets an
    answer, and so does another user reading a version meanwhile."""
    h = hostile
    model, dataset = name("m"), name("d")
    h.seed(model, dataset)
    job = h.attack(BOB, model, dataset, "log-fifo")
    h.wait_attacked(job)
    readers = [subprocess.Popen(["runuser", "-u", BOB, "--", "timeout", "60", "cat", h.p("jobs", job, "log")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(25)]
    codes = [r.wait(timeout=120) for r in readers]
    for r in readers:
        r.stdout.close(), r.stderr.close()
    h.another_user_reads(model)
    assert sh("timeout", "60", "ls", h.p("models")).returncode == 0
    assert codes == [0] * 25, codes
    assert h.release(job) == "succeeded"
    log = h.read_log(BOB, job)
    assert "job succeeded" in log and (h.executor != "local" or "trainer done" in log), log


def test_an_output_dir_replaced_by_a_link_to_a_root_only_dir_imports_nothing(hostile, name):
    h = hostile
    model, dataset = name("m"), name("d")
    h.seed(model, dataset)
    job = h.attack(BOB, model, dataset, "output-symlink")
    h.wait_attacked(job)
    h.another_user_reads(model)
    h.release(job)
    outputs = json.loads(h.store.run("jobs", job, "--json").stdout)["outputs"]
    assert all(SECRET not in open(h.p("models", model, v), "rb").read() for v in outputs), outputs
    assert outputs == [], outputs
    log = h.read_log(BOB, job)
    assert "link.pt left out" in log or "not a directory" in log or "link.pt" not in log, log


def test_a_checkpoint_raced_against_a_link_50_times_never_imports_the_link(hostile, name):
    h = hostile
    model, dataset = name("m"), name("d")
    h.seed(model, dataset)
    job = h.attack(BOB, model, dataset, "checkpoint-race")
    h.wait_attacked(job)
    h.another_user_reads(model)
    assert h.release(job) == "succeeded"
    open(os.path.join(h.gate, job + ".stop"), "w").close()
    # What the catalog says the job made (a listing of the model could be the kernel's cached one).
    outputs = json.loads(h.store.run("jobs", job, "--json").stdout)["outputs"]
    versions = {v: open(h.p("models", model, v), "rb").read() for v in outputs}
    stolen = [v for v, data in versions.items() if SECRET in data]
    assert not stolen, f"root-only bytes imported as {stolen}"
    assert all(data.startswith(b"mine ") for data in versions.values())
    assert all(os.stat(h.p("models", model, v)).st_uid == h.bob.pw_uid for v in versions)
    log = h.read_log(BOB, job)
    assert len(versions) + log.count(" left out: ") == 50, log


# Jobs obey owners (local executor only: these are refused before any executor is involved, so
# their Slurm cases are not even collected).
local_executor = pytest.mark.parametrize("hostile", ["local"], indirect=True)


@pytest.fixture
def owners(hostile):
    return hostile


@local_executor
def test_jobs_obey_owners(owners, name):
    h = owners
    private, shared, bobs, dataset, bobs_data = name("private"), name("shared"), name("bobs"), name("d"), name("bd")
    # Root's models: one private (700), one anyone may read (755) but only root may write.
    os.mkdir(h.p("models", private), 0o700)
    os.mkdir(h.p("models", shared), 0o755)
    for m in (private, shared):
        shutil.copy(h.weights, h.p("models", m, "v1.pt"))
    shutil.copy(h.weights, h.p("datasets", dataset + ".csv"))
    h.seed(bobs, bobs_data)
    assert as_user(BOB, "chmod", "0400", h.p("datasets", bobs_data + ".csv")).returncode == 0

    cases = [
        (BOB, f"model={private} version=v1 dataset={dataset}", "submit", f"may not read {private}/v1.pt"),
        (BOB, f"model={shared} version=v1 dataset={dataset}", "submit", f"may not add versions to models/{shared}"),
        (EVE, f"model={bobs} version=v1 dataset={dataset} evaluate={bobs_data}", "submit",
         f"may not read datasets/{bobs_data}.csv"),
        (EVE, f"model={bobs} version=v1 dataset={bobs_data}", "evaluate", f"may not read datasets/{bobs_data}.csv"),
        (BOB, f"model={shared} version=v1 dataset={dataset}", "evaluate", f"may not store metrics on {shared}/v1.pt"),
    ]
    before = set(os.listdir(h.p("jobs")))
    for user, request, control, reason in cases:
        err, answer = h.submit(user, request, control)
        assert err == errno.EACCES and answer.startswith("error:") and reason in answer, (request, err, answer)
    assert set(os.listdir(h.p("jobs"))) == before, "nothing queued"

    # Root's metrics on its version stay root's: an evaluation Root asked for, then Bob's refused.
    err, job = h.submit("root", f"model={shared} version=v1 dataset={dataset}", "evaluate")
    assert err == 0, job
    assert h.release(job) == "succeeded", h.read_log("root", job)
    metrics = os.getxattr(h.p("models", shared, "v1.pt"), "user.modelfs.metrics")
    err, _ = h.submit(BOB, f"model={shared} version=v1 dataset={dataset} names=hacked", "evaluate")
    assert err == errno.EACCES
    assert os.getxattr(h.p("models", shared, "v1.pt"), "user.modelfs.metrics") == metrics

    # Bob's own: training adds a version of his, his evaluation of it stores metrics; the trail names him.
    err, job = h.submit(BOB, f"model={bobs} version=v1 dataset={bobs_data} attack=checkpoint gate={h.gate}")
    assert err == 0, job
    assert h.release(job) == "succeeded", h.read_log(BOB, job)
    err, ev = h.submit(BOB, f"model={bobs} version=v1 dataset={bobs_data}", "evaluate")
    assert err == 0, ev
    assert h.release(ev) == "succeeded", h.read_log(BOB, ev)
    trail = json.loads(h.store.run("log", bobs, "--json").stdout)
    evaluated = [e for e in trail if e["action"] == "version.evaluate"]
    assert evaluated and all(e["uid"] == h.bob.pw_uid for e in evaluated), evaluated
    created = [e for e in trail if e["action"] == "version.create" and "by job" in e.get("detail", "")]
    assert created and all(e["uid"] == h.bob.pw_uid for e in created), created
    submitted = [e for e in trail if e["action"] == "job.submit"]
    assert submitted and all(e["uid"] == h.bob.pw_uid for e in submitted), submitted


@local_executor
def test_another_users_job_answers_eacces_and_the_cli_says_why(owners, name):
    h = owners
    model, dataset = name("m"), name("d")
    h.seed(model, dataset)
    job = h.attack(BOB, model, dataset, "none")
    h.wait_attacked(job)
    # spec.json and status are the job's (Bob's), readable by whoever may read the job; the log his only.
    for f in ("spec.json", "status", "log", "control"):
        assert os.stat(h.p("jobs", job, f)).st_uid == h.bob.pw_uid, f
    assert as_user(EVE, "cat", h.p("jobs", job, "spec.json")).returncode == 0
    assert refused(as_user(EVE, "cat", h.p("jobs", job, "log")), "Permission denied")
    # Eve cancels Bob's job: EACCES, through the mount and from the command line.
    code = (f"import os\ntry:\n    os.open({h.p('jobs', job, 'control')!r}, os.O_WRONLY)\n"
            "except OSError as e:\n    print(e.errno)\n")
    assert as_user(EVE, "python3", "-c", code).stdout.strip() == str(errno.EACCES)
    env = h.store.env()
    cli = os.path.join(h.top, "modelfs")
    shutil.copy(MODELFS, cli)
    os.chmod(cli, 0o755)
    store_env = [f"{k}={v}" for k, v in env.items() if k.startswith(("MODELFS_", "AWS_"))]
    p = subprocess.run(["runuser", "-u", EVE, "--", "env", *store_env, cli, "jobs", job, "--cancel"], capture_output=True, text=True)
    assert p.returncode != 0 and "only they (or root) use it" in p.stderr and "mkdir" not in p.stderr, p.stderr
    assert h.status(job) == "running"
    assert h.release(job) == "succeeded"


@local_executor
def test_parameters_sharing_a_variable_and_metrics_named_dots_are_refused(owners, name):
    h = owners
    model, dataset = name("m"), name("d")
    h.seed(model, dataset)
    for pair in ("a-b=1 a_b=2", "a_b=1 A_B=2"):
        err, answer = h.submit(BOB, f"model={model} version=v1 dataset={dataset} {pair}")
        keys = [kv.split("=")[0] for kv in pair.split()]
        assert err == errno.EINVAL and all(k in answer for k in keys) and "MODELFS_PARAM_A_B" in answer, answer
    err, job = h.submit(BOB, f"model={model} version=v1 dataset={dataset} names=..", "evaluate")
    assert err == 0, job
    assert h.release(job) == "failed"
    log = h.read_log(BOB, job)
    assert "'..' is not a metric name" in log, log
    assert "user.modelfs.metrics" not in os.listxattr(h.p("models", model, "v1.pt"))
