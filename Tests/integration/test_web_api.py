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
import subprocess
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from helpers import MODELFS, errno_of, free_port, sh, sha256_file, shared_top, wait_for, xattr

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
        self.port = free_port()
        self.log = open(os.path.join(directory, "web.log"), "w+")
        self.proc = subprocess.Popen([MODELFS, "web", "--listen", f"127.0.0.1:{self.port}", "--tokens", self.tokens, *args],
                                     env=store.env(), stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.up, timeout=60, what="modelfs web to answer /health")

    def up(self):
        """Whether /health answers (not yet while it is not listening); a server of its own must still run."""
        assert self.proc is None or self.proc.poll() is None, self.output()
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
              ("get", "/metrics"), ("get", "/api/v1/versions"), ("get", "/api/v1/models/{model}/compare"),
              ("get", "/api/v1/models/{model}/evaluations"), ("get", "/api/v1/services/{service}/log")}
    # Uploads and jobs (test_web_uploads.py).
    wanted |= {("put", "/api/v1/models/{model}/versions/{version}/content"), ("get", "/api/v1/models/{model}/versions/{version}/upload"),
               ("delete", "/api/v1/models/{model}/versions/{version}/upload"),
               ("post", "/api/v1/jobs"), ("get", "/api/v1/jobs/{job}/log"), ("post", "/api/v1/jobs/{job}/cancel")}
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops if method != "parameters"}
    assert described == wanted
    # Each documented read without parameters answers 200 with JSON (health with text).
    for method, path in sorted(wanted):
        if method == "get" and "{" not in path and path not in ("/health", "/metrics", "/api/v1/versions"):
            assert web.call("GET", path, token=None)[0] == 200, path


def test_a_trusted_proxys_header_names_the_user_only_when_trusted(store, name, tmp_path, webs):
    trusting = webs(store, "--trust-proxy-header", "X-Remote-User")
    model = name("proxy")
    # The proxy adds its header to whatever a browser sends, whichever site asked: a write needs
    # the CSRF token the pages embed for that user too (403 without it; docs/WEB.md).
    eve = {"X-Remote-User": str(EVE_UID)}
    status, _, message = refusal(trusting, "POST", "/api/v1/models", {"name": model}, token=None, headers=eve)
    assert status == 403 and "X-CSRF-Token" in message
    page = trusting.fetch("/", headers=eve)[2].decode()
    eve["X-CSRF-Token"] = re.search(r'<meta name="csrf-token" content="([0-9a-f]{64})">', page).group(1)
    made = trusting.ok("POST", "/api/v1/models", {"name": model}, token=None, status=201, headers=eve)
    assert made["owner"]["uid"] == EVE_UID
    assert [(e["action"], e["uid"]) for e in trusting.ok("GET", f"/api/v1/audit?model={model}")] == [("model.create", EVE_UID)]
    assert refusal(trusting, "DELETE", f"/api/v1/models/{model}", token=None)[0] == 401
    assert refusal(trusting, "DELETE", f"/api/v1/models/{model}", token=None, headers={"X-Remote-User": "no-such-user-here"})[0] == 401
    # A bearer token names its own user, whatever the header says.
    other = name("proxy")
    assert trusting.ok("POST", "/api/v1/models", {"name": other}, status=201, headers={"X-Remote-User": str(EVE_UID)})["owner"]["uid"] == os.getuid()
    assert trusting.ok("DELETE", f"/api/v1/models/{model}", token=None, headers=eve)["name"] == model
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


# -- the reads the pages need: pages of a list, the duplicate check, compare, evaluations, logs --

def next_link(headers):
    """The path of `Link: <…>; rel="next"`, or None."""
    link = headers.get("Link")
    if link is None:
        return None
    found = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert found, link
    return found.group(1)


def walk(web, path, token=None):
    """Every page from `path` on, following the Link headers: (rows, number of pages)."""
    rows, pages = [], 0
    while path:
        status, headers, body = web.fetch(path, {"Authorization": f"Bearer {token}"} if token else None)
        assert status == 200, (path, status, body)
        page = json.loads(body)
        rows += page
        pages += 1
        path = next_link(headers)
        assert path is None or page, "a next link after an empty page"
    return rows, pages


def test_lists_come_a_page_at_a_time_to_the_end(store, name, mounts, webs):
    web = webs(store)
    prefix = name("page")
    made = sorted(f"{prefix}-{i:03d}" for i in range(250))
    for model in made:
        web.ok("POST", "/api/v1/models", {"name": model}, status=201)

    # 250 models, 100 a page: every one once, in order, in three pages; the last has no link.
    rows, pages = walk(web, f"/api/v1/models?search={prefix}&limit=100")
    assert [r["name"] for r in rows] == made and pages == 3
    status, headers, body = web.fetch(f"/api/v1/models?search={prefix}&limit=100")
    assert next_link(headers) == f"/api/v1/models?limit=100&search={prefix}&after={made[99]}"
    assert len(json.loads(body)) == 100
    # The default page is 100; the rows are what `modelfs models --json` counts.
    assert [r["name"] for r in web.ok("GET", f"/api/v1/models?search={prefix}")] == made[:100]
    cli = {r["name"]: r for r in json.loads(store.run("models", "--search", prefix, "--json").stdout)}
    assert all((r["versions"], r["bytes"]) == (cli[r["name"]]["versions"], cli[r["name"]]["bytes"]) for r in rows)
    # An `after` that is no model (deleted since the link was made) pages on from where it would be.
    assert [r["name"] for r in web.ok("GET", f"/api/v1/models?search={prefix}&limit=2&after={made[10]}x")] == made[11:13]
    assert web.ok("GET", f"/api/v1/models?search={prefix}&after={made[-1]}") == []
    # A bad limit: 400 with what is wrong.
    for bad in ("0", "1001", "ten", "-5"):
        status, code, message = refusal(web, "GET", f"/api/v1/models?limit={bad}")
        assert (status, code) == (400, "EINVAL") and message == f"limit is a number from 1 to 1000, not {bad}", message

    # A model's versions, a page at a time, in their listing order; counts and bytes as the CLI's.
    m = mounts(store)
    model = made[0]
    shas = {f"v{i}": put_version(m, model, f"v{i}.pt", size=1000 + i) for i in range(1, 6)}
    rows, pages = walk(web, f"/api/v1/models/{model}/versions?limit=2")
    assert [(r["name"], r["sha256"]) for r in rows] == sorted(shas.items()) and pages == 3
    status, headers, _ = web.fetch(f"/api/v1/models/{model}/versions?limit=2&after=v2")
    assert next_link(headers) == f"/api/v1/models/{model}/versions?limit=2&after=v4"
    assert [v["name"] for v in web.ok("GET", f"/api/v1/models/{model}/versions?after=v3")] == ["v4", "v5"]
    assert refusal(web, "GET", f"/api/v1/models/{model}/versions?limit=x")[:2] == (400, "EINVAL")
    got = web.ok("GET", f"/api/v1/models/{model}")
    assert (got["versions"], got["bytes"]) == (5, sum(1000 + i for i in range(1, 6)))
    assert web.ok("GET", f"/api/v1/models?search={model}&limit=1")[0]["versions"] == 5


def test_the_duplicate_check_finds_ready_versions_the_asker_may_list(store, name, mounts, webs):
    m = mounts(store)
    web = webs(store)
    mine, private = name("dup"), name("private")
    for model in (mine, private):
        web.ok("POST", "/api/v1/models", {"name": model}, status=201)
    sha = put_version(m, mine, "v1.pt", size=5000)
    shutil.copy(m.p("models", mine, "v1.pt"), m.p("models", private, "v3.pt"))
    put_version(m, mine, "v2.pt")

    found = web.ok("GET", f"/api/v1/versions?sha256={sha}")
    assert found == [{"model": mine, "version": "v1", "size": 5000}, {"model": private, "version": "v3", "size": 5000}]
    assert web.ok("GET", f"/api/v1/versions?sha256={sha.upper()}", token=None) == found
    assert web.ok("GET", f"/api/v1/versions?sha256={'0' * 64}") == []
    for bad in ("", "xyz", sha[:63], sha + "0", "g" * 64):
        status, code, message = refusal(web, "GET", f"/api/v1/versions?sha256={bad}")
        assert (status, code) == (400, "EINVAL") and "64 hexadecimal digits" in message, message

    # A model its owner made 0700: others (a token's user, or nobody) may not list it, as `ls` on the mount.
    os.chmod(m.p("models", private), 0o700)
    assert web.ok("GET", f"/api/v1/models/{private}")["owner"]["mode"] == 0o700
    assert web.ok("GET", f"/api/v1/versions?sha256={sha}", token=EVE_TOKEN) == found[:1]
    assert web.ok("GET", f"/api/v1/versions?sha256={sha}", token=None) == found[:1]
    assert web.ok("GET", f"/api/v1/versions?sha256={sha}") == found
    status, code, message = refusal(web, "GET", f"/api/v1/models/{private}/versions", token=EVE_TOKEN)
    assert (status, code) == (403, "EACCES") and f"may not list model {private}" in message
    assert refusal(web, "GET", f"/api/v1/models/{private}/versions", token=None)[:2] == (403, "EACCES")
    assert refusal(web, "GET", f"/api/v1/models/{private}/evaluations", token=EVE_TOKEN)[:2] == (403, "EACCES")
    assert refusal(web, "GET", f"/api/v1/models/{private}/compare?versions=v3", token=EVE_TOKEN)[:2] == (403, "EACCES")
    assert [v["name"] for v in web.ok("GET", f"/api/v1/models/{private}/versions")] == ["v3"]
    # Nor look a version, an alias or the next name up in it, as `stat` and `cat .next` on the mount.
    for path in (f"/api/v1/models/{private}/versions/v3", f"/api/v1/models/{private}/aliases", f"/api/v1/models/{private}/next"):
        for token in (EVE_TOKEN, None):
            assert refusal(web, "GET", path, token=token)[:2] == (403, "EACCES"), (path, token)
        web.ok("GET", path)


def test_compare_and_evaluations_are_the_clis(store, name, tmp_path, webs):
    from test_jobs import EVAL_COMMAND, JobMount, wait_succeeded
    with JobMount(store, tmp_path, eval_command=EVAL_COMMAND).start() as m:
        model, data = name("tiny"), name("qa")
        m.seed(model, data)
        shutil.copy(m.p("models", model, "v1.safetensors"), m.p("models", model, "v2.safetensors"))
        err, job = m.submit(f"model={model} version=v1 dataset={data}\n", control="evaluate")
        assert err == 0, job
        wait_succeeded(m.p(), job)
        web = webs(store)
        # What `modelfs compare --json` prints, aliases and plain names alike.
        os.symlink("v2.safetensors", m.p("models", model, "@production"))
        got = web.ok("GET", f"/api/v1/models/{model}/compare?versions=v1,@production")
        assert got == json.loads(store.run("compare", model, "v1", "@production", "--json").stdout)
        assert [v["name"] for v in got["versions"]] == ["v1", "v2"] and got["versions"][1]["aliases"] == ["@production"]
        metrics = got["versions"][0]["evaluations"][0]["metrics"]
        assert set(metrics) == {"accuracy", "loss", "records"}
        # The evaluations of its versions, as `versions --json` has them.
        evaluations = web.ok("GET", f"/api/v1/models/{model}/evaluations")
        assert [(e["version"], e["file"], e["dataset"], e["job"], e["metrics"]) for e in evaluations] == [("v1", "v1.safetensors", data, job, metrics)]
        cli = {r["name"]: r for r in json.loads(store.run("versions", model, "--json").stdout)}
        assert [{k: e[k] for k in ("dataset", "job", "metrics", "created")} for e in evaluations] == cli["v1"]["evaluations"]

        # An unknown version: 404 with the CLI's message; none named: 400.
        status, code, message = refusal(web, "GET", f"/api/v1/models/{model}/compare?versions=v1,v9")
        assert (status, code) == (404, "ENOENT") and message == cli_message(store, "compare", model, "v1", "v9")
        assert refusal(web, "GET", f"/api/v1/models/{model}/compare")[:2] == (400, "EINVAL")
        assert refusal(web, "GET", f"/api/v1/models/{name('missing')}/evaluations")[:2] == (404, "ENOENT")
        other = name("plain")
        web.ok("POST", "/api/v1/models", {"name": other}, status=201)
        assert web.ok("GET", f"/api/v1/models/{other}/evaluations") == []


def test_a_services_log_from_an_offset(store, name, mounts, webs):
    from test_services import WHOAMI_SERVE, stop_services, submit
    m = mounts(store, "--serve-command", WHOAMI_SERVE)
    try:
        web = webs(store)
        model = name("web")
        web.ok("POST", "/api/v1/models", {"name": model}, status=201)
        put_version(m, model, "v1.pt")
        err, svc = submit(m.path, f"model={model} version=v1")
        assert err == 0, svc
        log = m.p("services", svc, "log")
        wait_for(lambda: b"uid " in open(log, "rb").read(), 60, "the server's first line in its log")
        status, headers, body = web.fetch(f"/api/v1/services/{svc}/log", {"Authorization": f"Bearer {OWNER_TOKEN}"})
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        # What the mount's services/<name>/log holds (the log only grows: a prefix of it now).
        assert open(log, "rb").read().startswith(body) and f"uid {os.getuid()}".encode() in body
        assert int(headers["X-Log-Size"]) >= len(body) > 10
        status, headers, rest = web.fetch(f"/api/v1/services/{svc}/log?offset=5", {"Authorization": f"Bearer {OWNER_TOKEN}"})
        assert status == 200 and rest.startswith(body[5:])
        size = int(headers["X-Log-Size"])
        status, headers, nothing = web.fetch(f"/api/v1/services/{svc}/log?offset={size + 100}", {"Authorization": f"Bearer {OWNER_TOKEN}"})
        assert (status, nothing) == (200, b"") and int(headers["X-Log-Size"]) >= size

        # Its owner's (the mount's file is 0400): not another user's, not nobody's.
        for token in (EVE_TOKEN, None):
            assert refusal(web, "GET", f"/api/v1/services/{svc}/log", token=token)[:2] == (403, "EACCES")
        for bad in ("-1", "x"):
            assert refusal(web, "GET", f"/api/v1/services/{svc}/log?offset={bad}")[:2] == (400, "EINVAL")
        status, code, message = refusal(web, "GET", f"/api/v1/services/{name('nosuch')}/log")
        assert (status, code) == (404, "ENOENT") and message.startswith("no service ")
    finally:
        stop_services(m.path)


def ask(web, method, path, cookie=None, body=None, headers=None):
    """(response, text) of one request, with a browser's cookie."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30)
    c.request(method, path, body, {**({"Cookie": cookie} if cookie else {}), **(headers or {})})
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    return r, data


def page_of(web, cookie):
    r, html = ask(web, "GET", "/", cookie)
    assert r.status == 200, html
    return html


def sign_in(web, token):
    """The session cookie `/login` gives for `token`."""
    r, _ = ask(web, "POST", "/login", body=urlencode({"token": token}), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 303
    cookie = r.getheader("Set-Cookie").split(";")[0]
    assert cookie.startswith("modelfs_session=") and token not in cookie
    return cookie


def test_a_browser_session_is_known_to_every_server_of_the_catalog_and_outlives_a_restart(store, name, webs, tmp_path):
    """Sessions live in the catalog: signed in on one `modelfs web`, the browser's cookie and its
    page's CSRF token work on another server of the same catalog, and on one started after the
    first stopped; signed out on one, the cookie names no one on any."""
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    for d in ("one", "two", "three"):
        os.makedirs(tmp_path / d)
    one, two = webs(store, directory=str(tmp_path / "one")), webs(store, directory=str(tmp_path / "two"))
    cookie = sign_in(one, OWNER_TOKEN)
    # The other server knows the session, and takes the first server's page token for a change.
    assert f"<span>{me}</span>" in page_of(two, cookie)
    csrf = re.search(r'<meta name="csrf-token" content="([0-9a-f]{64})">', page_of(one, cookie)).group(1)
    model = name("sess")
    r, answer = ask(two, "POST", "/api/v1/models", cookie, json.dumps({"name": model}),
                    {"Content-Type": "application/json", "X-CSRF-Token": csrf})
    assert r.status == 201 and json.loads(answer)["owner"]["uid"] == os.getuid(), answer
    # The first server stops; one started after it knows the session too.
    one.stop()
    three = webs(store, directory=str(tmp_path / "three"))
    assert f"<span>{me}</span>" in page_of(three, cookie)
    # Signed out on that one: the cookie names no one on the other either.
    r, _ = ask(three, "POST", "/logout", cookie, urlencode({"csrf": csrf}),
               {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 303
    html = page_of(two, cookie)
    assert ">Sign in<" in html and f"<span>{me}</span>" not in html


def test_a_token_removed_from_the_tokens_file_ends_its_sessions_without_a_restart(store, webs, tmp_path):
    """The server reads its tokens file again when it changes: a token taken out of it is refused
    as a bearer and the browser sessions signed in with it end, while another token's go on; a
    file changed into one that is refused (mode 644) refuses every token (503, naming none) until
    it is fixed."""
    import pwd
    me = pwd.getpwuid(os.getuid()).pw_name
    web = webs(store, directory=str(tmp_path))
    owners, eves = sign_in(web, OWNER_TOKEN), sign_in(web, EVE_TOKEN)
    assert "<span>4242</span>" in page_of(web, eves) and f"<span>{me}</span>" in page_of(web, owners)
    assert web.call("GET", "/api/v1/models", token=EVE_TOKEN)[0] == 200
    # The admin takes eve's line out, as an editor does: a new file renamed over the old.
    with open(web.tokens + ".new", "w") as f:
        f.write(f"{OWNER_TOKEN} {os.getuid()}\n")
    os.chmod(web.tokens + ".new", 0o600)
    os.rename(web.tokens + ".new", web.tokens)
    html = page_of(web, eves)
    assert ">Sign in<" in html and "<span>4242</span>" not in html
    status, code, message = refusal(web, "GET", "/api/v1/models", token=EVE_TOKEN)
    assert status == 401 and "not in this server's tokens file" in message and EVE_TOKEN not in message
    assert f"<span>{me}</span>" in page_of(web, owners)
    assert web.call("GET", "/api/v1/models")[0] == 200
    # Made readable by others: nothing is taken until it is fixed, and nothing says a token.
    os.chmod(web.tokens, 0o644)
    status, code, message = refusal(web, "GET", "/api/v1/models")
    assert status == 503 and "mode 644" in message and OWNER_TOKEN not in message, message
    r, html = ask(web, "GET", "/", owners)
    assert r.status == 503 and OWNER_TOKEN not in html
    os.chmod(web.tokens, 0o600)
    assert f"<span>{me}</span>" in page_of(web, owners)
    assert OWNER_TOKEN not in web.output() and EVE_TOKEN not in web.output()


def test_the_log_of_a_job_from_before_owners_is_the_stores_users(store, webs):
    """A job row without an owner (recorded before owners were) has a log the mount keeps 0400 as
    its own user's: over HTTP too, only that user or root reads it, not anyone who asks."""
    import sqlite3
    web = webs(store)
    with sqlite3.connect(store.db) as db:
        db.execute("INSERT INTO jobs (id, model, version, dataset, status, executor, created) "
                   "VALUES ('before-owners-1', 'm', 'v1', 'qa', 'succeeded', 'local', 0)")
    assert web.fetch("/api/v1/jobs/before-owners-1/log", {"Authorization": f"Bearer {OWNER_TOKEN}"})[0] == 200  # the store's user
    status, code, message = refusal(web, "GET", "/api/v1/jobs/before-owners-1/log", token=EVE_TOKEN)
    assert (status, code) == (403, "EACCES") and "may not read the log" in message, message
    assert refusal(web, "GET", "/api/v1/jobs/before-owners-1/log", token=None)[0] == 401
