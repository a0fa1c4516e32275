"""Inference services through the mount's `services/` (issue 23): a version or an alias served by
the mount's --serve-command (the example server, scripts/serve_example.py), on the local executor
and on a real one-node Slurm cluster. A prediction over HTTP is compared with the model's own
output, computed here by the example trainer's featurizer and forward pass (test_serve_example's
`expected`), not by the server's code. A client polls while the alias moves; crashes and servers
that never get ready fail with their log; stop and restart; `rm` of a served version is EBUSY; a
second user's service runs as them; the CLI; two mounts on one PostgreSQL catalog."""
import errno
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import Store
from helpers import errno_of, is_mounted, process_ended, sh, shared_top, wait_for
from test_serve_example import TEXTS, expected, t
from test_sharing import BOB, EVE, as_user, ensure_users

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
SERVER = os.path.join(ROOT, "scripts", "serve_example.py")
# The example server; a request's delay=SECONDS holds its weights back that long (status stays
# `starting`, /health answers 503).
SERVE = f'MODELFS_SERVE_EXAMPLE_DELAY="${{MODELFS_PARAM_DELAY:-0}}" exec {sys.executable} {SERVER}'
# A server of the standard library only, that any user can run (the suite's python3 with numpy is
# root's): it says who runs it, and /health answers with its uid from a file in its working directory.
WHOAMI_SERVE = ('echo "uid $(id -u) gid $(id -g)"; id -u > health; '
                'exec /usr/bin/python3 -m http.server --bind "$MODELFS_HOST" "$MODELFS_PORT"')
ALIVE = ("starting", "ready", "stopping")
SLURM = os.environ.get("SLURM_CONF")
# No proxy from the environment between the tests and the servers they call.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(url, path, body=None, timeout=30, text=False):
    """(status, decoded JSON, or the text with `text`) of one request; a body makes it a POST."""
    data = json.dumps(body).encode() if body is not None else None
    try:
        with HTTP.open(url + path, data=data, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    return status, raw.decode(errors="replace") if text else json.loads(raw)


def classify(url, texts=TEXTS):
    """The class probabilities the server at `url` gives `texts`, one row per text."""
    status, answer = call(url, "/v1/classify", {"input": texts})
    assert status == 200, (url, status, answer)
    return np.array([d["probabilities"] for d in answer["data"]])


def same(got, want):
    return got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-12)


def answers(url):
    """Whether anything answers HTTP at `url`."""
    try:
        HTTP.open(url + "/health", timeout=10).close()
    except urllib.error.HTTPError:
        pass
    except OSError:
        return False
    return True


# A write (and the answer read back on the same open file, for submit), as one user or another:
# the write succeeds or fails with an errno, the read says why.
WRITE = r'''
import json, os, sys
path, data, read_back = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
try:
    fd = os.open(path, os.O_RDWR if read_back else os.O_WRONLY)
except OSError as e:
    print(json.dumps([e.errno, "open: " + e.strerror]))
    sys.exit()
try:
    os.write(fd, data.encode())
    err = 0
except OSError as e:
    err = e.errno
answer = os.pread(fd, 4096, 0).decode() if read_back else ""
try:
    os.close(fd)
except OSError as e:
    err = err or e.errno
print(json.dumps([err, answer]))
'''


def write(path, data, user=None, read_back=False):
    """(errno, answer) of writing `data` to `path`, as `user` when given (0: it was accepted)."""
    argv = [WRITE, path, data, "1" if read_back else "0"]
    p = as_user(user, "/usr/bin/python3", "-c", *argv) if user else sh(sys.executable, "-c", *argv)
    assert p.returncode == 0, p.stderr
    err, answer = json.loads(p.stdout)
    return err, answer.strip()


def submit(mnt, request, user=None):
    """services/submit: (errno, the service's name or `error: …`)."""
    return write(os.path.join(mnt, "services", "submit"), request + "\n", user, read_back=True)


def control(mnt, svc, word, user=None):
    """The errno of writing `word` to the service's control file (0: accepted)."""
    return write(os.path.join(mnt, "services", svc, "control"), word + "\n", user)[0]


def read(mnt, svc, what):
    with open(os.path.join(mnt, "services", svc, what)) as f:
        return f.read()


def status(mnt, svc):
    """The service's status lines: [state] or [state, reason]."""
    return read(mnt, svc, "status").splitlines()


def endpoint(mnt, svc):
    return read(mnt, svc, "endpoint").strip()


def spec(mnt, svc):
    return json.loads(read(mnt, svc, "spec.json"))


def wait_status(mnt, svc, wanted, timeout=180):
    """The status lines once the state is one of `wanted`; a state that is final and not wanted,
    or the timeout, fails the test with the service's log."""
    deadline = time.time() + timeout
    lines = []
    while time.time() < deadline:
        lines = status(mnt, svc)
        if lines and lines[0] in wanted:
            return lines
        if lines and lines[0] in ("failed", "stopped"):
            break
        time.sleep(0.1)
    raise AssertionError(f"service {svc} is {lines}, not {wanted}; log:\n{read(mnt, svc, 'log')}")


def wait_ready(mnt, svc, timeout=180):
    """Waits for `ready`; returns the endpoint."""
    wait_status(mnt, svc, {"ready"}, timeout)
    url = endpoint(mnt, svc)
    assert re.fullmatch(r"http://[^\s:/]+:\d+", url), url
    return url


def wait_log(mnt, svc, text, timeout=120):
    """The service's log once it holds `text` (a Slurm job's output reaches it a moment later)."""
    wait_for(lambda: text in read(mnt, svc, "log"), timeout, f"{text!r} in the log of {svc}")
    return read(mnt, svc, "log")


def modelfs_lines(log):
    return [line for line in log.splitlines() if line.startswith("modelfs: ")]


def seed_model(mnt, model, tmp_path, **seeds):
    """A model whose versions (v1=SEED, …) are example-trainer weights with non-default sizes,
    copied in through the mount; {version: the local file}."""
    os.mkdir(os.path.join(mnt, "models", model))
    files = {}
    for version, seed in seeds.items():
        files[version] = tmp_path / f"{model}-{version}.safetensors"
        t.init_weights(str(files[version]), inputs=96, hidden=6, classes=3, seed=seed)
        sh("cp", str(files[version]), os.path.join(mnt, "models", model, f"{version}.safetensors"))
    return files


def service_processes(where):
    """{pid: MODELFS_MODEL_PATH} of the processes whose MODELFS_MODEL_PATH is under `where` (a
    mountpoint): the servers of that mount's services."""
    marker = f"MODELFS_MODEL_PATH={where}/".encode()
    pids = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        found = [v for v in env if v.startswith(marker)]
        if found and not process_ended(int(pid)):
            pids[int(pid)] = found[0].split(b"=", 1)[1].decode()
    return pids


def stop_services(mnt, timeout=60):
    """Stops every service of the mount that is still up, and waits (bounded) until they are down."""
    names = [n for n in os.listdir(os.path.join(mnt, "services")) if n != "submit"]
    for svc in names:
        if status(mnt, svc)[:1] in (["starting"], ["ready"]):
            control(mnt, svc, "stop")
    deadline = time.time() + timeout
    while time.time() < deadline and any(status(mnt, svc)[:1] in [[s] for s in ALIVE] for svc in names):
        time.sleep(0.2)


class Serving:
    """`mounts` with --serve-command: `serving(store, *args, command=SERVE)`. At the end every
    service still up is stopped, the mounts unmounted, and a server still running 30 s later is
    killed (and reported), so that no test leaves one behind (a mount that goes leaves its
    servers running, for the next mount to follow)."""

    def __init__(self, mounts):
        self.mounts = mounts

    def __call__(self, store, *args, command=SERVE, **kwargs):
        return self.mounts(store, "--serve-command", command, *args, **kwargs)

    def finish(self):
        for m in self.mounts.made:
            try:
                if is_mounted(m.path):
                    stop_services(m.path)
            except OSError as e:
                print(f"stopping the services of {m.path}: {e}")
        self.mounts.unmount_all()
        for m in self.mounts.made:
            deadline = time.time() + 30
            while service_processes(m.path) and time.time() < deadline:
                time.sleep(0.2)
            for pid in service_processes(m.path):
                print(f"a server of {m.path} still runs 30 s after its service stopped: killing pid {pid}")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture
def serving(mounts):
    s = Serving(mounts)
    yield s
    s.finish()


@pytest.fixture
def local_store(tmp_path):
    """The local store: what services do does not depend on where the bytes are."""
    return Store("local", str(tmp_path / "data"))


def require_slurm():
    if not SLURM:
        if os.environ.get("MODELFS_REQUIRE_SLURM") == "1":
            pytest.fail("SLURM_CONF is not set. " + os.environ.get("MODELFS_SLURM_START_ERROR", ""))
        pytest.skip("no Slurm test cluster (run scripts/test)")


def audit(store, svc):
    """The audit trail's actions on service `svc`, oldest first."""
    return [e["action"] for e in json.loads(store.run("log", "--json").stdout) if e.get("target") == svc]


# -- the local executor ---------------------------------------------------------------------------

@pytest.mark.every_s3  # the server reads its version through the mount: on s3api, moto and RGW
def test_a_service_from_a_version_answers_as_the_model_does(store, serving, name, tmp_path):
    m = serving(store)
    model = name("tiny")
    files = seed_model(m.path, model, tmp_path, v1=4)
    err, svc = submit(m.path, f"model={model} version=v1 delay=3 note=hello")
    assert (err, svc) == (0, f"{model}-v1-1")
    d = m.p("services", svc)
    assert sorted(os.listdir(m.p("services"))) == sorted(["submit", svc])
    assert sorted(os.listdir(d)) == ["control", "endpoint", "log", "spec.json", "status"]
    # The weights are held back 3 s: starting, and nowhere to call yet (the endpoint is read first:
    # a service still starting after it was read had none).
    first_endpoint = read(m.path, svc, "endpoint")
    assert status(m.path, svc) == ["starting"] and first_endpoint == ""
    modes = {f: os.stat(os.path.join(d, f)).st_mode & 0o777 for f in ("log", "control")}
    assert modes == {"log": 0o400, "control": 0o200} and os.stat(d).st_mode & 0o777 == 0o755
    assert os.stat(m.p("services", "submit")).st_mode & 0o777 == 0o666

    s = spec(m.path, svc)
    assert {k: s[k] for k in ("name", "model", "version", "alias", "params", "executor", "owner")} == {
        "name": svc, "model": model, "version": "v1.safetensors", "alias": None,
        "params": {"delay": "3", "note": "hello"}, "executor": "local",
        "owner": {"uid": os.getuid(), "gid": os.getgid()}}
    assert s["created"]

    url = wait_ready(m.path, svc)
    assert status(m.path, svc) == ["ready"]
    host, port = re.fullmatch(r"http://(.+):(\d+)", url).groups()
    assert host == "127.0.0.1"
    # MODELFS_MODEL is the model's name; the weights are the version's file in the mount.
    assert call(url, "/v1/models")[1]["data"][0]["id"] == model
    want = expected(files["v1"], TEXTS, tmp_path)
    got = classify(url)
    assert same(got, want), (got, want)

    log = wait_log(m.path, svc, '"POST /v1/classify HTTP/1.1" 200')
    assert f"listening on 127.0.0.1:{port}" in log, log
    assert f"{model} loaded from {m.p('models', model, 'v1.safetensors')}" in log, log
    ours = modelfs_lines(log)
    assert len(ours) >= 2 and any("ready" in line for line in ours), log


def test_a_service_gets_only_its_environment(local_store, serving, name, tmp_path):
    """The command sees the service's variables, PATH and HOME: nothing else of the mount's
    environment (no AWS_* credentials), and runs in a private working directory."""
    command = (f"{sys.executable} -c 'import json, os; print(\"ENV \" + json.dumps(dict(os.environ)) + \"\\nCWD \" + os.getcwd(), flush=True)'; "
               'echo ok > health; exec python3 -m http.server --bind "$MODELFS_HOST" "$MODELFS_PORT"')
    env = local_store.env(ZZ_MOUNT_ONLY_CANARY="leaked", AWS_SECRET_ACCESS_KEY="not for services")
    m = serving(local_store, command=command, env=env)
    model = name("tiny")
    seed_model(m.path, model, tmp_path, v1=1)
    err, svc = submit(m.path, f"model={model} version=v1 name=env-probe epochs=2")
    assert (err, svc) == (0, "env-probe")
    url = wait_ready(m.path, svc)
    assert call(url, "/health", text=True) == (200, "ok\n")
    log = read(m.path, svc, "log").splitlines()
    lines, work = [line for line in log if line.startswith("ENV ")], [line[4:] for line in log if line.startswith("CWD ")]
    assert len(lines) == 1 and len(work) == 1, log
    seen, work = json.loads(lines[0][4:]), work[0]
    assert {k for k in seen if k.startswith("MODELFS_")} == {
        "MODELFS_MODEL_PATH", "MODELFS_PORT", "MODELFS_HOST", "MODELFS_SERVICE", "MODELFS_SERVICE_DIR",
        "MODELFS_INSTANCE_DIR", "MODELFS_MODEL", "MODELFS_VERSION", "MODELFS_PARAM_EPOCHS"}, sorted(seen)
    assert (seen["MODELFS_MODEL_PATH"], seen["MODELFS_MODEL"], seen["MODELFS_VERSION"], seen["MODELFS_SERVICE"]) == (
        m.p("models", model, "v1.safetensors"), model, "v1", svc)
    assert (seen["MODELFS_HOST"], seen["MODELFS_PARAM_EPOCHS"]) == ("127.0.0.1", "2")
    assert url == f"http://127.0.0.1:{seen['MODELFS_PORT']}"
    # What /bin/sh and python3 set themselves besides PATH and HOME (LC_CTYPE: Python's C-locale coercion).
    own = {"PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "_", "LC_CTYPE"}
    assert not {k for k in seen if not k.startswith("MODELFS_")} - own, sorted(seen)
    assert seen["PATH"] == env["PATH"]
    assert not work.startswith(m.path + "/") and os.path.isfile(os.path.join(work, "health"))
    assert os.stat(work).st_uid == os.getuid() and os.stat(work).st_mode & 0o077 == 0, oct(os.stat(work).st_mode)


def test_bad_requests_fail_the_write_with_the_errno(local_store, serving, name, tmp_path):
    m = serving(local_store)
    model = name("tiny")
    seed_model(m.path, model, tmp_path, v1=1)
    assert submit(m.path, f"model={model} version=v1 name=taken delay=30") == (0, "taken")
    cases = [
        ("garbage", errno.EINVAL),
        (f"model={model}", errno.EINVAL),                                   # no version
        ('{"model": "%s", "version": "v1"' % model, errno.EINVAL),          # bad JSON
        (f"model={model} version=v1 name=submit", errno.EINVAL),            # the control file's name
        (f"model={model} version=v1 name=a/b", errno.EINVAL),
        (f"model={model} version=v1 note=a\x1bb", errno.EINVAL),            # a control character
        (f"model=nope-{model} version=v1", errno.ENOENT),
        (f"model={model} version=v9", errno.ENOENT),
        (f"model={model} version=@nowhere", errno.ENOENT),
        (f"model={model} version=v1 name=taken", errno.EEXIST),
    ]
    for request, code in cases:
        err, answer = submit(m.path, request)
        assert err == code and answer.startswith("error:"), (request, err, answer)
    # JSON works as key=value does.
    assert submit(m.path, json.dumps({"model": model, "version": "v1", "name": "json-one", "delay": 30})) == (0, "json-one")
    assert spec(m.path, "json-one")["params"] == {"delay": "30"}
    # A version still uploading is busy.
    fd = os.open(m.p("models", model, "v3.safetensors"), os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, b"x" * 1024)
        err, answer = submit(m.path, f"model={model} version=v3")
        assert err == errno.EBUSY and answer.startswith("error:"), answer
    finally:
        os.close(fd)
    assert sorted(os.listdir(m.p("services"))) == ["json-one", "submit", "taken"]


def test_a_mount_without_a_serve_command_refuses_services(local_store, mounts, name, tmp_path):
    m = mounts(local_store)
    model = name("tiny")
    seed_model(m.path, model, tmp_path, v1=1)
    err, answer = submit(m.path, f"model={model} version=v1")
    assert err == errno.ENOTSUP and "--serve-command" in answer, (err, answer)
    assert os.listdir(m.p("services")) == ["submit"]


def test_stop_and_restart(local_store, serving, name, tmp_path):
    m = serving(local_store)
    model = name("tiny")
    files = seed_model(m.path, model, tmp_path, v1=2)
    want = expected(files["v1"], TEXTS, tmp_path)
    err, svc = submit(m.path, f"model={model} version=v1")
    assert err == 0
    url = wait_ready(m.path, svc)
    assert same(classify(url), want)

    sh("sh", "-c", f"echo stop > {m.p('services', svc, 'control')}")
    assert wait_status(m.path, svc, {"stopped"}) == ["stopped"]
    assert read(m.path, svc, "endpoint") == "" and os.stat(m.p("services", svc, "endpoint")).st_size == 0
    wait_for(lambda: not answers(url), 60, f"{url} to stop answering")
    wait_for(lambda: service_processes(m.path) == {}, 60, "the server's processes to end")
    assert svc in os.listdir(m.p("services")), "a stopped service keeps its directory"
    assert control(m.path, svc, "explode") == errno.EINVAL

    sh("sh", "-c", f"echo restart > {m.p('services', svc, 'control')}")
    again = wait_ready(m.path, svc)
    assert same(classify(again), want)
    log = read(m.path, svc, "log")
    assert any("stopped" in line for line in modelfs_lines(log)), log
    assert log.count("serve_example: listening on") == 2, log
    assert control(m.path, svc, "stop") == 0
    wait_status(m.path, svc, {"stopped"})
    actions = audit(local_store, svc)
    asked = [a for a in actions if a in ("service.start", "service.stop", "service.restart", "service.switch")]
    assert asked == ["service.start", "service.stop", "service.restart", "service.stop"], actions


def test_a_server_that_crashes_or_never_gets_ready_fails_with_its_log(local_store, serving, name, tmp_path):
    command = ('echo "serving $MODELFS_PARAM_MODE"; '
               'if [ "$MODELFS_PARAM_MODE" = crash ]; then echo "cannot load the weights" >&2; exit 1; fi; '
               'sleep 60 & echo "sleeping as pid $!"; wait')
    m = serving(local_store, "--serve-timeout", "3", command=command)
    model = name("tiny")
    seed_model(m.path, model, tmp_path, v1=1)
    assert submit(m.path, f"model={model} version=v1 name=crash mode=crash") == (0, "crash")
    assert submit(m.path, f"model={model} version=v1 name=hang mode=hang") == (0, "hang")
    reasons = {}
    for svc, said in (("crash", "cannot load the weights"), ("hang", "serving hang")):
        lines = wait_status(m.path, svc, {"failed"}, timeout=120)
        # Why, then the last lines the server wrote.
        assert len(lines) >= 2 and lines[1].strip() and said in "\n".join(lines[2:]), lines
        reasons[svc] = lines[1]
        log = read(m.path, svc, "log")
        assert said in log, log
        assert any("failed" in line for line in modelfs_lines(log)), log
        assert read(m.path, svc, "endpoint") == ""
    assert reasons["crash"] != reasons["hang"], reasons
    # The server that never got ready was stopped.
    pid = int(re.search(r"sleeping as pid (\d+)", read(m.path, "hang", "log")).group(1))
    wait_for(lambda: process_ended(pid), 60, f"the never-ready server (pid {pid}) to be stopped")
    # A failed service holds no version: the model can go.
    os.rmdir(m.p("models", model))


def test_rm_of_a_served_version_is_ebusy_until_the_service_stops(local_store, serving, name, tmp_path):
    m = serving(local_store)
    model = name("tiny")
    seed_model(m.path, model, tmp_path, v1=1, v2=2)
    err, svc = submit(m.path, f"model={model} version=v1 name=busy-one")
    assert err == 0
    wait_ready(m.path, svc)
    v1 = m.p("models", model, "v1.safetensors")
    assert errno_of(os.remove, v1) == errno.EBUSY
    assert errno_of(os.rmdir, m.p("models", model)) == errno.EBUSY
    for argv in (("version", "rm", model, "v1"), ("model", "rm", model)):
        p = local_store.run(*argv, check=False)
        assert p.returncode != 0 and svc in p.stderr, (argv, p.stderr)
    assert sorted(os.listdir(m.p("models", model))) == ["v1.safetensors", "v2.safetensors"]
    assert status(m.path, svc) == ["ready"]

    assert control(m.path, svc, "stop") == 0
    wait_status(m.path, svc, {"stopped"})
    os.remove(v1)
    assert os.listdir(m.p("models", model)) == ["v2.safetensors"]


def test_a_remount_follows_the_services_it_runs(local_store, serving, name, tmp_path):
    m = serving(local_store)
    model = name("tiny")
    files = seed_model(m.path, model, tmp_path, v1=2)
    err, svc = submit(m.path, f"model={model} version=v1")
    assert err == 0
    url = wait_ready(m.path, svc)
    m.remount()
    assert wait_ready(m.path, svc) == url
    assert same(classify(url), expected(files["v1"], TEXTS, tmp_path))
    assert errno_of(os.remove, m.p("models", model, "v1.safetensors")) == errno.EBUSY
    assert control(m.path, svc, "stop") == 0
    wait_status(m.path, svc, {"stopped"})
    wait_for(lambda: not answers(url), 60, f"{url} to stop answering")


# -- following an alias ---------------------------------------------------------------------------

class Client(threading.Thread):
    """Calls the service over and over, re-reading `endpoint` before each call as a client that
    looks the service up would: every answer by the URL it came from, and every failure."""

    def __init__(self, endpoint_file):
        super().__init__(daemon=True)
        self.file, self.answers, self.errors = endpoint_file, [], []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                with open(self.file) as f:
                    url = f.read().strip()
                if not url:
                    self.errors.append("the endpoint was empty")
                else:
                    self.answers.append((url, classify(url)))
            except Exception as e:  # noqa: BLE001 (whatever it was, it was a refused request)
                self.errors.append(repr(e))
            time.sleep(0.02)

    def count(self, url=None):
        return sum(1 for u, _ in list(self.answers) if url in (None, u))

    def wait(self, n, url=None, timeout=120):
        wait_for(lambda: self.count(url) >= n or self.errors, timeout, f"{n} answers from {url or 'the service'}")
        assert not self.errors, self.errors[:5]

    def finish(self):
        self.done.set()
        self.join(60)


def alias_switch(m, model, files, tmp_path, timeout=180):
    """Serves @production (v1), moves the alias to v2 while a client polls: no call refused,
    v1's answers before, v2's after, the switch in the log. Returns the service's name."""
    want = {v: expected(f, TEXTS, tmp_path) for v, f in files.items()}
    assert not np.allclose(want["v1"], want["v2"], rtol=0, atol=1e-6), "v1 and v2 must answer differently"
    os.symlink("v1.safetensors", m.p("models", model, "@production"))
    err, svc = submit(m.path, f"model={model} version=@production")
    assert (err, svc) == (0, f"{model}-production-1")
    old = wait_ready(m.path, svc, timeout)
    s = spec(m.path, svc)
    # The alias as the request and the link name it.
    assert s["alias"] == "@production" and s["version"] == "v1.safetensors", s
    assert same(classify(old), want["v1"])

    client = Client(m.p("services", svc, "endpoint"))
    client.start()
    try:
        client.wait(5)
        sh("ln", "-sfn", "v2.safetensors", m.p("models", model, "@production"))
        wait_for(lambda: endpoint(m.path, svc) not in ("", old) or client.errors, timeout, "the endpoint to move to v2")
        new = endpoint(m.path, svc)
        # The old server keeps answering through the drain, then stops; v2's answers meanwhile.
        wait_for(lambda: not answers(old), timeout, f"v1's server ({old}) to stop after the drain")
        client.wait(client.count(new) + 5, new)
    finally:
        client.finish()
    assert not client.errors, client.errors[:5]
    assert client.count(old) >= 5 and client.count(new) >= 5
    for url, got in client.answers:
        assert url in (old, new) and same(got, want["v1" if url == old else "v2"]), url
    assert status(m.path, svc) == ["ready"]
    s = spec(m.path, svc)
    assert s["alias"] == "@production" and s["version"] == "v2.safetensors", s
    wait_log(m.path, svc, f"modelfs: switched from v1.safetensors to v2.safetensors ({old} -> {new})")
    wait_log(m.path, svc, f"loaded from {m.p('models', model, 'v2.safetensors')}")
    # v1 is no longer served (nor aliased): it may go; v2 may not.
    os.remove(m.p("models", model, "v1.safetensors"))
    assert errno_of(os.remove, m.p("models", model, "v2.safetensors")) == errno.EBUSY
    return svc


def test_a_service_follows_its_alias_with_no_request_refused(store, serving, name, tmp_path):
    m = serving(store, "--serve-drain", "3")
    model = name("tiny")
    files = seed_model(m.path, model, tmp_path, v1=4, v2=7)
    svc = alias_switch(m, model, files, tmp_path)
    actions = audit(store, svc)
    assert "service.start" in actions and "service.switch" in actions, actions


def test_a_failed_switch_keeps_the_old_server(local_store, serving, name, tmp_path):
    """v3 is safetensors but not the example trainer's weights: its server exits, the service
    keeps serving v2 and says why; the alias moving again (to v1) switches."""
    m = serving(local_store, "--serve-drain", "1")
    model = name("tiny")
    files = seed_model(m.path, model, tmp_path, v1=4, v2=7)
    from safetensors.numpy import save_file
    save_file({"x": np.zeros(3, dtype=np.float32)}, str(tmp_path / "other.safetensors"))
    sh("cp", str(tmp_path / "other.safetensors"), m.p("models", model, "v3.safetensors"))
    os.symlink("v2.safetensors", m.p("models", model, "@production"))
    err, svc = submit(m.path, f"model={model} version=@production")
    assert err == 0
    url = wait_ready(m.path, svc)

    sh("ln", "-sfn", "v3.safetensors", m.p("models", model, "@production"))
    wait_for(lambda: len(status(m.path, svc)) > 1, 180, "the status to say the switch failed")
    lines = status(m.path, svc)
    assert lines[0] == "ready" and lines[1].startswith("switch to v3") and "failed" in lines[1], lines
    assert endpoint(m.path, svc) == url and spec(m.path, svc)["version"] == "v2.safetensors"
    assert same(classify(url), expected(files["v2"], TEXTS, tmp_path))
    log = read(m.path, svc, "log")
    assert "serve_example: error:" in log and any("v3" in line for line in modelfs_lines(log)), log
    wait_for(lambda: set(service_processes(m.path).values()) == {m.p("models", model, "v2.safetensors")}, 60,
             "v3's server to be gone, v2's to run")

    sh("ln", "-sfn", "v1.safetensors", m.p("models", model, "@production"))
    wait_for(lambda: spec(m.path, svc)["version"] == "v1.safetensors", 180, "the switch to v1")
    assert status(m.path, svc) == ["ready"]
    assert same(classify(endpoint(m.path, svc)), expected(files["v1"], TEXTS, tmp_path))


# -- users ----------------------------------------------------------------------------------------

@pytest.fixture
def shared_serving(local_store, serving):
    """A mount others may use (--allow-other), serving with WHOAMI_SERVE, in a place they reach."""
    if os.geteuid() != 0:
        pytest.skip("needs root: useradd, and a mount others may use")
    import shutil
    users = ensure_users()
    top, mnt = shared_top(local_store, "modelfs-serve-")
    try:
        yield serving(local_store, "--allow-other", command=WHOAMI_SERVE, path=mnt), users
    finally:
        serving.finish()
        shutil.rmtree(top, ignore_errors=True)


def processes_of(svc):
    """(pid, real uid, effective uid) of each process running service `svc`."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"MODELFS_SERVICE={svc}".encode() not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/status") as f:
                uids = [line.split()[1:3] for line in f if line.startswith("Uid:")][0]
        except OSError:
            continue
        out.append((int(pid), int(uids[0]), int(uids[1])))
    return out


def test_a_users_service_runs_as_them_and_only_they_stop_it(shared_serving, name):
    m, (bob, eve, _) = shared_serving
    model = name("bobs")
    d = m.p("models", model)
    assert as_user(BOB, "mkdir", d).returncode == 0
    weights = os.path.join(os.path.dirname(m.path), "w.safetensors")
    t.init_weights(weights, inputs=96, hidden=6, classes=3, seed=1)
    os.chmod(weights, 0o644)
    assert as_user(BOB, "cp", weights, os.path.join(d, "v1.safetensors")).returncode == 0

    err, svc = submit(m.path, f"model={model} version=v1", user=BOB)
    assert (err, svc) == (0, f"{model}-v1-1")
    assert os.stat(m.p("services", svc)).st_uid == bob.pw_uid
    assert spec(m.path, svc)["owner"] == {"uid": bob.pw_uid, "gid": bob.pw_gid}
    url = wait_ready(m.path, svc)
    # The server runs as Bob: it says so, its file says so, and so does /proc.
    assert f"uid {bob.pw_uid} gid {bob.pw_gid}" in read(m.path, svc, "log")
    assert call(url, "/health", text=True) == (200, f"{bob.pw_uid}\n")
    procs = processes_of(svc)
    assert procs and all(uid == euid == bob.pw_uid for _, uid, euid in procs), procs
    # His log is his.
    assert as_user(BOB, "cat", m.p("services", svc, "log")).returncode == 0
    assert as_user(EVE, "cat", m.p("services", svc, "log")).returncode != 0

    # Eve may not stop or restart it; Bob may.
    assert control(m.path, svc, "stop", user=EVE) == errno.EACCES
    assert control(m.path, svc, "restart", user=EVE) == errno.EACCES
    assert status(m.path, svc) == ["ready"] and answers(url)
    assert control(m.path, svc, "stop", user=BOB) == 0
    wait_status(m.path, svc, {"stopped"})

    # Eve may serve what she may read, not what she may not.
    err, answer = submit(m.path, f"model={model} version=v1 name=eves", user=EVE)
    assert err == 0, answer
    wait_ready(m.path, "eves")
    assert control(m.path, "eves", "stop", user=EVE) == 0
    wait_status(m.path, "eves", {"stopped"})
    assert as_user(BOB, "chmod", "0400", os.path.join(d, "v1.safetensors")).returncode == 0
    err, answer = submit(m.path, f"model={model} version=v1 name=eves-2", user=EVE)
    assert err == errno.EACCES and answer.startswith("error:"), (err, answer)
    assert "eves-2" not in os.listdir(m.p("services"))
    actions = json.loads(m.store.run("log", "--json").stdout)
    assert any(e["action"] == "service.start" and e["target"] == svc and e["uid"] == bob.pw_uid for e in actions)


# -- the CLI --------------------------------------------------------------------------------------

def test_the_cli_starts_lists_and_stops_what_a_mount_runs(local_store, serving, name, tmp_path):
    m = serving(local_store)
    model = name("tiny")
    files = seed_model(m.path, model, tmp_path, v1=3)
    want = expected(files["v1"], TEXTS, tmp_path)
    p = local_store.run("serve", "start", "--model", model, "--version", "v1", "--name", "cli-one", "--wait", "note=cli")
    assert p.stdout.splitlines()[0] == "cli-one", p.stdout
    url = wait_ready(m.path, "cli-one")
    assert spec(m.path, "cli-one")["params"] == {"note": "cli"}
    assert same(classify(url), want)

    rows = {r["name"]: r for r in json.loads(local_store.run("serve", "list", "--json").stdout)}
    row = rows["cli-one"]
    assert (row["model"], row["status"], row["endpoint"]) == (model, "ready", url), row
    assert row["version"] in ("v1", "v1.safetensors") and row["alias"] is None, row
    table = local_store.run("serve", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "MODEL", "VERSION", "ALIAS", "STATUS", "ENDPOINT", "OWNER"], table
    assert any(line.split()[:2] == ["cli-one", model] and "ready" in line and url in line for line in table[1:]), table
    logs = local_store.run("serve", "logs", "cli-one").stdout
    assert "serve_example: listening on" in logs and modelfs_lines(logs), logs

    # The same rules as services/submit.
    for argv in (("--model", model, "--version", "v1", "--name", "cli-one"), ("--model", model, "--version", "v9")):
        assert local_store.run("serve", "start", *argv, check=False).returncode != 0, argv
    # Without --wait it prints the name; the mount starts it.
    p = local_store.run("serve", "start", "--model", model, "--version", "v1")
    second = p.stdout.splitlines()[0]
    assert second == f"{model}-v1-1", p.stdout
    wait_ready(m.path, second)

    local_store.run("serve", "stop", "cli-one")
    wait_status(m.path, "cli-one", {"stopped"})
    wait_for(lambda: not answers(url), 60, f"{url} to stop answering")
    assert {r["name"]: r["status"] for r in json.loads(local_store.run("serve", "list", "--json").stdout)} == {
        "cli-one": "stopped", second: "ready"}
    local_store.run("serve", "restart", "cli-one")
    assert same(classify(wait_ready(m.path, "cli-one")), want)
    local_store.run("serve", "stop", second)
    wait_status(m.path, second, {"stopped"})


# -- many nodes -----------------------------------------------------------------------------------

def test_two_mounts_on_one_postgresql_catalog_list_the_same_services(serving, name, tmp_path):
    from test_cluster import mount_nodes  # skips (or fails, MODELFS_REQUIRE_PG=1) without PostgreSQL
    n1, n2 = mount_nodes(lambda store, **kw: serving(store, **kw), tmp_path, 2)
    model = name("tiny")
    files = seed_model(n1.path, model, tmp_path, v1=5)
    want = expected(files["v1"], TEXTS, tmp_path)
    wait_for(lambda: os.path.exists(n2.p("models", model, "v1.safetensors")), 60, "the version on node 2")

    err, one = submit(n1.path, f"model={model} version=v1 name=from-one")
    assert err == 0, one
    url = wait_ready(n1.path, one)
    wait_for(lambda: one in os.listdir(n2.p("services")), 60, "node 2 to list node 1's service")
    assert wait_ready(n2.path, one) == url
    assert spec(n2.path, one)["model"] == model
    assert same(classify(url), want)

    err, two = submit(n2.path, f"model={model} version=v1 name=from-two")
    assert err == 0, two
    url2 = wait_ready(n2.path, two)
    wait_for(lambda: two in os.listdir(n1.p("services")), 60, "node 1 to list node 2's service")
    assert wait_ready(n1.path, two) == url2 and same(classify(url2), want)
    for n in (n1, n2):
        rows = json.loads(n.store.run("serve", "list", "--json", env=n.store.env(**n.store.env_extra)).stdout)
        assert {r["name"]: r["endpoint"] for r in rows} == {one: url, two: url2}, rows

    # Node 2 stops node 1's service: node 1, which runs it, follows.
    assert control(n2.path, one, "stop") == 0
    wait_status(n1.path, one, {"stopped"})
    wait_status(n2.path, one, {"stopped"})
    wait_for(lambda: not answers(url), 60, f"{url} to stop answering")
    assert answers(url2)


# -- Slurm ----------------------------------------------------------------------------------------

def test_a_service_on_slurm(s3store, serving, name, tmp_path):
    require_slurm()
    m = serving(s3store, "--executor", "slurm")
    model = name("tiny")
    files = seed_model(m.path, model, tmp_path, v1=6)
    err, svc = submit(m.path, f"model={model} version=v1")
    assert err == 0, svc
    url = wait_ready(m.path, svc, timeout=300)
    assert spec(m.path, svc)["executor"] == "slurm"
    assert same(classify(url), expected(files["v1"], TEXTS, tmp_path))
    port = url.rsplit(":", 1)[1]
    wait_log(m.path, svc, f"listening on 0.0.0.0:{port}")  # MODELFS_HOST: Slurm picks the node

    assert control(m.path, svc, "stop") == 0
    wait_status(m.path, svc, {"stopped"}, timeout=300)
    assert endpoint(m.path, svc) == ""
    wait_for(lambda: not answers(url), 120, f"{url} to stop answering (scancel)")


def test_a_service_on_slurm_follows_its_alias(local_store, serving, name, tmp_path):
    require_slurm()
    m = serving(local_store, "--executor", "slurm", "--serve-drain", "3")
    model = name("tiny")
    files = seed_model(m.path, model, tmp_path, v1=4, v2=7)
    alias_switch(m, model, files, tmp_path, timeout=300)
