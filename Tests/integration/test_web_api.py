"""The JSON API of `modelfs web` (docs/WEB.md) against a store that is also mounted: each
endpoint's happy path; bad input refused with the status and the CLI's message; a write without
a user (401); a second user's token refused where the mount refuses them (403, EACCES); the same
version changed through one of the web, the CLI and the mount and read through the others; the
OpenAPI document valid and describing the routes."""
import errno
import hashlib
import json
import re
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from helpers import MODELFS, errno_of, sh, sha256_file, shared_top, wait_for, xattr

OWNER_TOKEN = "owner-token-0123456789abcdef"
# A second user by number: no account needed, the web and the kernel both go by uid.
EVE_UID = 4242
EVE_TOKEN = "eve-token-0123456789abcdefgh"
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Web:
    """`modelfs web` on a free port of 127.0.0.1 for `store`, with a tokens file (the process
    owner's, 0600): OWNER_TOKEN is this user, EVE_TOKEN is uid 4242."""

    def __init__(self, store, directory, *args):
        self.tokens = os.path.join(directory, "tokens")
        with open(self.tokens, "w") as f:
            f.write(f"# token user\n{OWNER_TOKEN} {os.getuid()}\n{EVE_TOKEN} {EVE_UID}\n")
        os.chmod(self.tokens, 0o600)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.log = open(os.path.join(directory, "web.log"), "w+")
        self.proc = subprocess.Popen([MODELFS, "web", "--listen", f"127.0.0.1:{self.port}", "--tokens", self.tokens, *args],
                                     env=store.env(), stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.up, timeout=60, what="modelfs web to answer /health")

    def up(self):
        assert self.proc.poll() is None, self.output()
        try:
            with HTTP.open(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def call(self, method, path, body=None, token=OWNER_TOKEN, raw=None, headers=None):
        """(status, decoded JSON) of one request; `raw` sends those bytes as the body."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json", **(headers or {})})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with HTTP.open(request, timeout=30) as r:
                status, answer = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read()
        return status, json.loads(answer)

    def fetch(self, path, headers=None):
        """(status, headers, bytes) of a GET without a user."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers or {})
        try:
            with HTTP.open(request, timeout=60) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def ok(self, method, path, body=None, token=OWNER_TOKEN, status=200, headers=None):
        got, answer = self.call(method, path, body, token, headers=headers)
        assert got == status, (method, path, got, answer)
        return answer

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def webs(tmp_path):
    """Starts `modelfs web` for a store (`webs(store, *args)`); every one is stopped at the end."""
    made = []

    def start(store, *args, directory=None):
        made.append(Web(store, directory or str(tmp_path), *args))
        return made[-1]
    yield start
    for w in made:
        w.stop()


def refusal(web, method, path, body=None, token=OWNER_TOKEN, raw=None, headers=None):
    """(status, errno, message) of a request the API refuses."""
    status, answer = web.call(method, path, body, token, raw=raw, headers=headers)
    assert status >= 400, (method, path, status, answer)
    return status, answer["error"].get("errno"), answer["error"]["message"]


def cli_message(store, *args):
    """What the CLI says refusing the same thing (its one stderr line, without `modelfs: `)."""
    p = store.run(*args, check=False)
    assert p.returncode == 1, p
    return p.stderr.strip().removeprefix("modelfs: ")


def put_version(m, model, version, size=4096):
    """A version written through the mount (cp of random bytes); its sha256."""
    src = os.path.join(os.path.dirname(m.path), f"src-{model}-{version}")
    with open(src, "wb") as f:
        f.write(os.urandom(size))
    shutil.copy(src, m.p("models", model, version))
    return sha256_file(src)


def test_models_versions_and_aliases_through_the_web_the_cli_and_the_mount(store, name, mounts, webs):
    m = mounts(store)
    web = webs(store)
    model = name("web")
    made = web.ok("POST", "/api/v1/models", {"name": model, "type": "text", "note": "from the web"}, status=201)
    assert (made["name"], made["type"], made["note"], made["owner"]["uid"]) == (model, "text", "from the web", os.getuid())
    assert web.ok("GET", f"/api/v1/models/{model}") == made
    assert os.path.isdir(m.p("models", model))
    assert xattr(m.p("models", model), "type") == "text"

    # Listed with the filters, as `modelfs models --type --search`.
    assert [x["name"] for x in web.ok("GET", f"/api/v1/models?type=text&search={model[-8:].upper()}")] == [model]
    assert web.ok("GET", f"/api/v1/models?type=image&search={model}") == []
    assert web.ok("GET", f"/api/v1/models/{model}/next") == {"version": "v1"}

    # Versions written through the mount, read through the web.
    sha1 = put_version(m, model, "v1.pt")
    sha2 = put_version(m, model, "v2.pt", size=8192)
    assert web.ok("GET", f"/api/v1/models/{model}/next") == {"version": "v3"}
    versions = web.ok("GET", f"/api/v1/models/{model}/versions")
    assert [(v["file"], v["size"], v["sha256"], v["status"]) for v in versions] == [("v1.pt", 4096, sha1, "ready"), ("v2.pt", 8192, sha2, "ready")]
    v1 = web.ok("GET", f"/api/v1/models/{model}/versions/v1")
    assert (v1["sha256"], v1["owner"]["uid"], v1["aliases"], v1.get("metrics")) == (sha1, os.getuid(), [], None)
    assert web.ok("GET", f"/api/v1/models/{model}/versions/v1.pt")["sha256"] == sha1

    # Its bytes, whole or one range, are the mount's.
    with open(m.p("models", model, "v2.pt"), "rb") as f:
        through_mount = f.read()
    status, headers, body = web.fetch(f"/api/v1/models/{model}/versions/v2/download")
    assert (status, headers["ETag"], hashlib.sha256(body).hexdigest(), body) == (200, f'"{sha2}"', sha2, through_mount)
    status, headers, body = web.fetch(f"/api/v1/models/{model}/versions/v2.pt/download", {"Range": "bytes=100-5099"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 100-5099/8192", through_mount[100:5100])
    assert web.fetch(f"/api/v1/models/{model}/versions/v2/download", {"Range": "bytes=-10"})[2] == through_mount[-10:]
    assert web.fetch(f"/api/v1/models/{model}/versions/v2/download", {"Range": "bytes=8192-"})[0] == 416

    # A note: set through the web, read through the mount and the CLI; set through the mount and
    # the CLI, read through the web.
    assert web.ok("PATCH", f"/api/v1/models/{model}/versions/v1", {"note": "web note"})["note"] == "web note"
    assert xattr(m.p("models", model, "v1.pt"), "note") == "web note"
    assert store.versions(model)["v1"]["note"] == "web note"
    os.setxattr(m.p("models", model, "v1.pt"), "user.modelfs.note", b"mount note")
    assert web.ok("GET", f"/api/v1/models/{model}/versions/v1")["note"] == "mount note"
    store.run("version", "note", model, "v1", "cli note")
    assert web.ok("GET", f"/api/v1/models/{model}/versions/v1")["note"] == "cli note"

    # Aliases: set through the web, a link in the mount; moved through the mount, seen by the web.
    assert web.ok("PUT", f"/api/v1/models/{model}/aliases/production", {"version": "v1"})["file"] == "v1.pt"
    assert os.readlink(m.p("models", model, "@production")) == "v1.pt"
    assert web.ok("GET", f"/api/v1/models/{model}/versions/v1")["aliases"] == ["@production"]
    os.symlink("v2.pt", m.p("models", model, "@tmp-link"))
    os.rename(m.p("models", model, "@tmp-link"), m.p("models", model, "@production"))
    assert web.ok("GET", f"/api/v1/models/{model}/aliases") == [
        {"alias": "@production", "version": "v2", "file": "v2.pt", "modified": web.ok("GET", f"/api/v1/models/{model}/aliases")[0]["modified"]}]
    assert web.ok("DELETE", f"/api/v1/models/{model}/aliases/@production")["version"] == "v2"
    assert not os.path.lexists(m.p("models", model, "@production"))

    # Rename a version through the web: the mount and the CLI see the new name, same bytes.
    assert web.ok("PATCH", f"/api/v1/models/{model}/versions/v1", {"name": "v1b"})["file"] == "v1b.pt"
    assert sha256_file(m.p("models", model, "v1b.pt")) == sha1
    assert "v1b" in store.versions(model)

    # The model: type and note through the web, read through the mount; renamed, then deleted.
    assert web.ok("PATCH", f"/api/v1/models/{model}", {"type": "image", "note": "changed"})["type"] == "image"
    assert xattr(m.p("models", model), "type") == "image"
    assert xattr(m.p("models", model), "note") == "changed"
    renamed = model + "-r"
    assert web.ok("PATCH", f"/api/v1/models/{model}", {"name": renamed})["name"] == renamed
    assert sorted(os.listdir(m.p("models", renamed))) == ["v1b.pt", "v2.pt"]

    # A version deleted through the web is gone from the mount; the last one is refused with the
    # CLI's reason (EPERM: 403).
    assert web.ok("DELETE", f"/api/v1/models/{renamed}/versions/v1b")["file"] == "v1b.pt"
    # The mount's kernel caches names for a second or so.
    wait_for(lambda: not os.path.exists(m.p("models", renamed, "v1b.pt")), 30, "the deleted version leaving the mount")
    status, code, message = refusal(web, "DELETE", f"/api/v1/models/{renamed}/versions/v2")
    assert (status, code) == (403, "EPERM")
    assert message == cli_message(store, "version", "rm", renamed, "v2")
    assert "last" in message
    assert errno_of(os.unlink, m.p("models", renamed, "v2.pt")) == errno.EPERM

    # The audit trail names who did it; stats count it.
    actions = [(e["action"], e["uid"]) for e in web.ok("GET", f"/api/v1/audit?model={renamed}")]
    assert ("version.delete", os.getuid()) in actions and ("model.rename", os.getuid()) in actions
    assert web.ok("GET", "/api/v1/stats")["models"] >= 1
    assert web.ok("DELETE", f"/api/v1/models/{renamed}")["name"] == renamed
    wait_for(lambda: not os.path.exists(m.p("models", renamed)), 30, "the deleted model leaving the mount")
    assert web.ok("GET", f"/api/v1/models?search={renamed}") == []


def test_bad_input_is_refused_with_its_status_and_the_clis_message(store, name, webs):
    web = webs(store)
    model = name("web")
    missing = name("missing")
    status, code, message = refusal(web, "GET", f"/api/v1/models/{missing}/versions")
    assert (status, code) == (404, "ENOENT")
    assert message == cli_message(store, "versions", missing) == f"no model named {missing}"
    assert refusal(web, "DELETE", f"/api/v1/models/{missing}")[:2] == (404, "ENOENT")
    assert refusal(web, "GET", "/api/v1/jobs/no-such-job")[:2] == (404, "ENOENT")
    status, code, message = refusal(web, "GET", "/api/v1/no-such-thing")
    assert (status, code) == (404, None) and "/api/v1/openapi.json" in message

    web.ok("POST", "/api/v1/models", {"name": model}, status=201)
    status, code, message = refusal(web, "POST", "/api/v1/models", {"name": model})
    assert (status, code) == (409, "EEXIST")
    assert message == cli_message(store, "model", "create", model)
    assert refusal(web, "GET", f"/api/v1/models/{model}/versions/v9")[:2] == (404, "ENOENT")

    # Bad JSON, a missing field, a wrong type, a bad value: 400 (EINVAL).
    for raw in (b"{not json", b"[]", b'{"type": "text"}', b'{"name": 5}'):
        assert refusal(web, "POST", "/api/v1/models", raw=raw)[:2] == (400, "EINVAL"), raw
    status, code, message = refusal(web, "PATCH", f"/api/v1/models/{model}", {"type": "video"})
    assert (status, code) == (400, "EINVAL")
    assert message == cli_message(store, "model", "set", model, "--type", "video")
    assert refusal(web, "GET", "/api/v1/models?type=video")[:2] == (400, "EINVAL")
    assert refusal(web, "POST", "/api/v1/models", {"name": "a/b"})[:2] == (400, "EINVAL")

    # A change without a user is 401; a wrong token too, and it is not echoed nor logged.
    status, code, message = refusal(web, "POST", "/api/v1/models", {"name": name("anon")}, token=None)
    assert status == 401 and "Bearer" in message
    assert refusal(web, "DELETE", f"/api/v1/models/{model}", token=None)[0] == 401
    wrong = "wrong-token-0123456789abcdef"
    status, _, message = refusal(web, "DELETE", f"/api/v1/models/{model}", token=wrong)
    assert status == 401 and wrong not in message
    assert web.ok("GET", f"/api/v1/models?search={model}", token=None)[0]["name"] == model  # reads from loopback need none
    for token in (wrong, OWNER_TOKEN, EVE_TOKEN):
        assert token not in web.output()


def test_a_served_version_is_not_deleted_and_services_stop_and_restart(store, name, mounts, webs):
    m = mounts(store)
    web = webs(store)
    model = name("web")
    web.ok("POST", "/api/v1/models", {"name": model}, status=201)
    put_version(m, model, "v1.pt")
    put_version(m, model, "v2.pt")
    # Recorded `starting` for a mount with --serve-command (this one has none), as `serve start`.
    s = web.ok("POST", "/api/v1/services", {"model": model, "version": "v2", "name": f"{model}-svc", "params": {"delay": "1"}}, status=201)
    assert (s["name"], s["version"], s["status"], s["params"], s["owner"]["uid"]) == (f"{model}-svc", "v2.pt", "starting", {"delay": "1"}, os.getuid())
    assert [x["name"] for x in web.ok("GET", "/api/v1/services")].count(f"{model}-svc") == 1
    assert os.path.isdir(m.p("services", f"{model}-svc"))

    status, code, message = refusal(web, "DELETE", f"/api/v1/models/{model}/versions/v2")
    assert (status, code) == (409, "EBUSY")
    assert f"{model}-svc" in message
    assert message == cli_message(store, "version", "rm", model, "v2")
    assert refusal(web, "POST", "/api/v1/services", {"model": model, "version": "v2", "name": f"{model}-svc"})[:2] == (409, "EEXIST")
    assert refusal(web, "POST", "/api/v1/services", {"model": model, "version": "v7"})[:2] == (404, "ENOENT")
    assert refusal(web, "POST", "/api/v1/services", {"model": model})[:2] == (400, "EINVAL")

    # Another user may not stop it (EACCES: 403), its owner may; then the version may go.
    assert refusal(web, "POST", f"/api/v1/services/{model}-svc/stop", token=EVE_TOKEN)[:2] == (403, "EACCES")
    assert web.ok("POST", f"/api/v1/services/{model}-svc/stop")["status"] == "stopped"
    assert open(m.p("services", f"{model}-svc", "status")).readline().strip() == "stopped"
    assert web.ok("POST", f"/api/v1/services/{model}-svc/restart")["status"] == "starting"
    assert web.ok("POST", f"/api/v1/services/{model}-svc/stop")["status"] == "stopped"
    web.ok("DELETE", f"/api/v1/models/{model}/versions/v2")
    actions = [e["action"] for e in web.ok("GET", f"/api/v1/audit?model={model}")]
    assert actions.count("service.stop") == 2 and "service.restart" in actions and "service.start" in actions


def test_datasets_jobs_and_stats(store, name, mounts, webs):
    m = mounts(store)
    web = webs(store)
    data, model = name("qa"), name("web")
    with open(m.p("datasets", f"{data}.jsonl"), "w") as f:
        f.write('{"q": 1}\n{"q": 2}\n{"q": 3}\n')
    row = next(d for d in web.ok("GET", "/api/v1/datasets") if d["name"] == data)
    assert (row["file"], row["size"], row["records"], row["status"]) == (f"{data}.jsonl", 27, 3, "ready")
    web.ok("POST", "/api/v1/models", {"name": model}, status=201)
    put_version(m, model, "v1.pt")
    # A job queued while no mount runs jobs stays queued: what the API says of it is the catalog's.
    m.unmount()
    job = store.run("train", "--model", model, "--version", "v1", "--dataset", data, "--detach", "--train-command", "true", "epochs=2").stdout.split()[1]
    assert job in [j["id"] for j in web.ok("GET", "/api/v1/jobs")]
    got = web.ok("GET", f"/api/v1/jobs/{job}")
    assert (got["id"], got["model"], got["version"], got["dataset"], got["status"], got["params"]) == (job, model, "v1", data, "queued", {"epochs": "2"})
    stats = web.ok("GET", "/api/v1/stats")
    assert stats["datasets"] >= 1 and stats == json.loads(store.run("stats", "--json").stdout)
    # The server's own metrics: its catalog transactions (the model it created) were timed.
    status, headers, body = web.fetch("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), (status, headers)
    count = re.search(rb"^modelfs_catalog_transaction_seconds_count(?:\{[^}]*\})? (\d+)", body, re.M)
    assert count and int(count.group(1)) >= 1, body[:2000]


def test_a_second_users_token_is_refused_where_the_mount_refuses_them(store, name, mounts, webs):
    if os.geteuid() != 0:
        pytest.skip("needs root: a mount other users may use")
    top, mnt = shared_top(store, "modelfs-web-")
    m = web = None
    try:
        m = mounts(store, "--allow-other", path=mnt)
        web = webs(store, directory=top)
        model = name("web")
        web.ok("POST", "/api/v1/models", {"name": model}, status=201)  # 0755, this user's
        put_version(m, model, "v1.pt")
        put_version(m, model, "v2.pt")
        eve = ["setpriv", f"--reuid={EVE_UID}", f"--regid={EVE_UID}", "--clear-groups"]

        # Eve may not delete, rename or annotate in a model that is not hers: the mount says EACCES too.
        status, code, message = refusal(web, "DELETE", f"/api/v1/models/{model}/versions/v1", token=EVE_TOKEN)
        assert (status, code) == (403, "EACCES"), message
        p = sh(*eve, "rm", "-f", m.p("models", model, "v1.pt"), check=False)
        assert p.returncode != 0 and "Permission denied" in p.stderr
        assert refusal(web, "PATCH", f"/api/v1/models/{model}/versions/v1", {"name": "v9"}, token=EVE_TOKEN)[:2] == (403, "EACCES")
        assert refusal(web, "PATCH", f"/api/v1/models/{model}/versions/v1", {"note": "eve"}, token=EVE_TOKEN)[:2] == (403, "EACCES")
        p = sh(*eve, "setfattr", "-n", "user.modelfs.note", "-v", "eve", m.p("models", model, "v1.pt"), check=False)
        assert p.returncode != 0
        assert refusal(web, "PUT", f"/api/v1/models/{model}/aliases/eve", {"version": "v1"}, token=EVE_TOKEN)[:2] == (403, "EACCES")
        assert refusal(web, "DELETE", f"/api/v1/models/{model}", token=EVE_TOKEN)[:2] == (403, "EACCES")
        assert sorted(os.listdir(m.p("models", model))) == ["v1.pt", "v2.pt"]

        # Bytes: what others may read (0444) anyone downloads; a version made 0400 only its owner,
        # through the web as through the mount.
        assert web.fetch(f"/api/v1/models/{model}/versions/v1/download")[0] == 200
        os.chmod(m.p("models", model, "v2.pt"), 0o400)
        assert sh(*eve, "cat", m.p("models", model, "v2.pt"), check=False).returncode != 0
        assert web.fetch(f"/api/v1/models/{model}/versions/v2/download")[0] == 403
        assert web.fetch(f"/api/v1/models/{model}/versions/v2/download", {"Authorization": f"Bearer {EVE_TOKEN}"})[0] == 403
        assert web.fetch(f"/api/v1/models/{model}/versions/v2/download", {"Authorization": f"Bearer {OWNER_TOKEN}"})[0] == 200

        # Her own model (models/ is 1777 on such a mount): hers in the mount and in the audit trail.
        hers = name("eve")
        assert web.ok("POST", "/api/v1/models", {"name": hers}, token=EVE_TOKEN, status=201)["owner"]["uid"] == EVE_UID
        assert os.stat(m.p("models", hers)).st_uid == EVE_UID
        assert [(e["action"], e["uid"]) for e in web.ok("GET", f"/api/v1/audit?model={hers}")] == [("model.create", EVE_UID)]
        # The store's owner may still delete in a model that is theirs.
        web.ok("DELETE", f"/api/v1/models/{model}/versions/v1")
        wait_for(lambda: not os.path.exists(m.p("models", model, "v1.pt")), 30, "the deleted version leaving the mount")
    finally:
        # Both use the data dir in `top`: stopped and unmounted before it goes.
        if web:
            web.stop()
        if m:
            m.unmount()
        shutil.rmtree(top, ignore_errors=True)


def test_the_openapi_document_is_valid_and_describes_every_route(store, webs):
    from openapi_spec_validator import validate
    web = webs(store)
    doc = web.ok("GET", "/api/v1/openapi.json", token=None)
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    wanted = {("get", "/api/v1/models"), ("post", "/api/v1/models"), ("get", "/api/v1/models/{model}"), ("patch", "/api/v1/models/{model}"), ("delete", "/api/v1/models/{model}"),
              ("get", "/api/v1/models/{model}/versions"), ("get", "/api/v1/models/{model}/versions/{version}"),
              ("patch", "/api/v1/models/{model}/versions/{version}"), ("delete", "/api/v1/models/{model}/versions/{version}"), ("get", "/api/v1/models/{model}/versions/{version}/download"),
              ("get", "/api/v1/models/{model}/next"), ("get", "/api/v1/models/{model}/aliases"),
              ("put", "/api/v1/models/{model}/aliases/{alias}"), ("delete", "/api/v1/models/{model}/aliases/{alias}"),
              ("get", "/api/v1/datasets"), ("get", "/api/v1/jobs"), ("get", "/api/v1/jobs/{job}"), ("get", "/api/v1/services"),
              ("post", "/api/v1/services"), ("post", "/api/v1/services/{service}/stop"), ("post", "/api/v1/services/{service}/restart"),
              ("get", "/api/v1/audit"), ("get", "/api/v1/stats"), ("get", "/api/v1/openapi.json"), ("get", "/health"),
              ("get", "/metrics")}
    # Uploads and jobs (test_web_uploads.py).
    wanted |= {("put", "/api/v1/models/{model}/versions/{version}/content"), ("get", "/api/v1/models/{model}/versions/{version}/upload"),
               ("delete", "/api/v1/models/{model}/versions/{version}/upload"),
               ("post", "/api/v1/jobs"), ("get", "/api/v1/jobs/{job}/log"), ("post", "/api/v1/jobs/{job}/cancel")}
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops if method != "parameters"}
    assert described == wanted
    # Each documented read without parameters answers 200 with JSON (health with text).
    for method, path in sorted(wanted):
        if method == "get" and "{" not in path and path not in ("/health", "/metrics"):
            assert web.call("GET", path, token=None)[0] == 200, path


def test_a_trusted_proxys_header_names_the_user_only_when_trusted(store, name, tmp_path, webs):
    trusting = webs(store, "--trust-proxy-header", "X-Remote-User")
    model = name("proxy")
    made = trusting.ok("POST", "/api/v1/models", {"name": model}, token=None, status=201, headers={"X-Remote-User": str(EVE_UID)})
    assert made["owner"]["uid"] == EVE_UID
    assert [(e["action"], e["uid"]) for e in trusting.ok("GET", f"/api/v1/audit?model={model}")] == [("model.create", EVE_UID)]
    assert refusal(trusting, "DELETE", f"/api/v1/models/{model}", token=None)[0] == 401
    assert refusal(trusting, "DELETE", f"/api/v1/models/{model}", token=None, headers={"X-Remote-User": "no-such-user-here"})[0] == 401
    # A bearer token names its own user, whatever the header says.
    other = name("proxy")
    assert trusting.ok("POST", "/api/v1/models", {"name": other}, status=201, headers={"X-Remote-User": str(EVE_UID)})["owner"]["uid"] == os.getuid()
    assert trusting.ok("DELETE", f"/api/v1/models/{model}", token=None, headers={"X-Remote-User": str(EVE_UID)})["name"] == model
    # A server that trusts no header ignores it.
    (tmp_path / "plain").mkdir()
    plain = webs(store, directory=str(tmp_path / "plain"))
    assert refusal(plain, "POST", "/api/v1/models", {"name": name("proxy")}, token=None, headers={"X-Remote-User": "0"})[0] == 401


def test_a_tokens_file_others_may_read_is_refused(store, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{OWNER_TOKEN} {os.getuid()}\n")
    os.chmod(tokens, 0o640)
    p = store.run("web", "--listen", "127.0.0.1:1", "--tokens", str(tokens), check=False, timeout=60)
    assert p.returncode == 1 and "must be 600" in p.stderr, p
    assert OWNER_TOKEN not in p.stderr
    tokens.write_text(f"short {os.getuid()}\n")
    os.chmod(tokens, 0o600)
    p = store.run("web", "--listen", "127.0.0.1:1", "--tokens", str(tokens), check=False, timeout=60)
    assert p.returncode == 1 and "line 1: the token is shorter than 16 characters" in p.stderr, p
