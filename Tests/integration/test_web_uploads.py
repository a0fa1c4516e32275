"""Uploads and jobs over HTTP (docs/WEB.md): a version PUT through the API is the file the mount
and the CLI show; a client cut off mid-body leaves the version `uploading`, resumable with
`Content-Range` from the whole parts the store holds, and ends `ready` with the right sha256 and
no multipart upload left; every refusal with its status and message; a training job submitted to
a mount serving the API (`mount --web`) runs there, its log read over HTTP, and another user may
not cancel it; one submitted to `modelfs web` is recorded for a mount of the store to run."""
import hashlib
import json
import os
import socket
import sys
import time

import pytest

from helpers import free_port, sh, sha256_file, wait_for
from test_web_api import EVE_TOKEN, OWNER_TOKEN, EVE_UID, Web, refusal, webs  # noqa: F401 (webs: the fixture)

MiB = 1 << 20
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAINER = os.path.join(ROOT, "scripts", "train_example.py")


def put(web, path, data, token=OWNER_TOKEN, headers=None):
    """(status, JSON) of a PUT of `data` (urllib sends Content-Length)."""
    return web.call("PUT", path, token=token, raw=data, headers={"Content-Type": "application/octet-stream", **(headers or {})})


def cut_off(web, path, total, data, token=OWNER_TOKEN, headers=""):
    """Announces a body of `total` bytes, sends `data` (fewer), then closes the socket: a client
    killed mid-upload."""
    s = socket.create_connection(("127.0.0.1", web.port))
    s.sendall((f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
               f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n{headers}\r\n").encode())
    s.sendall(data)
    time.sleep(0.5)
    s.close()


def upload_state(web, model, version):
    return web.ok("GET", f"/api/v1/models/{model}/versions/{version}/upload")


def test_an_upload_is_the_version_the_mount_and_the_cli_see(store, name, mounts, webs):
    m = mounts(store)
    web = webs(store)
    model = name("up")
    web.ok("POST", "/api/v1/models", {"name": model, "type": "text"}, status=201)
    data = os.urandom(20 * MiB + 12345)  # three parts of 8 MiB: a multipart upload
    sha = hashlib.sha256(data).hexdigest()
    status, row = put(web, f"/api/v1/models/{model}/versions/v1.safetensors/content?note=from%20the%20page", data)
    assert status == 201, row
    assert (row["file"], row["size"], row["sha256"], row["status"], row["note"], row["owner"]["uid"]) == \
        ("v1.safetensors", len(data), sha, "ready", "from the page", os.getuid())
    # The same version through the mount, the CLI and the API.
    assert sha256_file(m.p("models", model, "v1.safetensors")) == sha
    cli = store.versions(model)["v1"]
    assert (cli["sha256"], cli["size"], cli["status"], cli["note"]) == (sha, len(data), "ready", "from the page")
    assert web.ok("GET", f"/api/v1/models/{model}/versions/v1")["sha256"] == sha
    assert upload_state(web, model, "v1") == {"received": len(data), "size": len(data), "status": "ready"}
    # A name without its format takes ?format=; a small one is a single PUT.
    status, row = put(web, f"/api/v1/models/{model}/versions/v2/content?format=pt", b"tiny")
    assert (status, row["file"], row["sha256"]) == (201, "v2.pt", hashlib.sha256(b"tiny").hexdigest()), row
    assert open(m.p("models", model, "v2.pt"), "rb").read() == b"tiny"
    assert web.ok("GET", f"/api/v1/models/{model}/next") == {"version": "v3"}
    # The audit trail names the user the token is.
    assert ("version.create", os.getuid()) in [(e["action"], e["uid"]) for e in web.ok("GET", f"/api/v1/audit?model={model}")]


@pytest.mark.every_s3
def test_an_upload_cut_off_mid_body_stays_uploading_and_resumes_with_content_range(store, name, mounts, webs):
    web = webs(store)
    model = name("resume")
    web.ok("POST", "/api/v1/models", {"name": model}, status=201)
    data = os.urandom(24 * MiB + 999)
    sha = hashlib.sha256(data).hexdigest()
    path = f"/api/v1/models/{model}/versions/v1.pt/content"
    # 20 MiB of 24: the server has cut parts 1 and 2 (8 MiB each) and keeps them; the rest of
    # what it received is not a whole part and is dropped.
    cut_off(web, path, len(data), data[:20 * MiB])
    wait_for(lambda: upload_state(web, model, "v1")["received"] == 16 * MiB, 60, "the two whole parts stored")
    assert upload_state(web, model, "v1") == {"received": 16 * MiB, "size": len(data), "status": "uploading"}
    assert store.versions(model)["v1"]["status"] == "uploading"  # never ready with half the bytes
    assert len(store.multipart_uploads(model)) == 1

    # Resumed from anywhere else, or as another size: refused, and it stays resumable.
    rest = data[16 * MiB:]
    status, answer = put(web, path, data[8 * MiB:], headers={"Content-Range": f"bytes {8 * MiB}-{len(data) - 1}/{len(data)}"})
    assert status == 409 and f"bytes {16 * MiB}-{len(data) - 1}/{len(data)}" in answer["error"]["message"], answer
    status, _, message = refusal(web, "PUT", path, raw=rest + b"x", headers={"Content-Range": f"bytes {16 * MiB}-{len(data)}/{len(data) + 1}"})
    assert status == 400 and "begun as" in message, message
    status, _, message = refusal(web, "PUT", path, raw=rest, headers={"Content-Range": "bytes 16777216-/*"})
    assert status == 400 and "Content-Range is" in message, message
    # Without Content-Range the name is taken: 409, EEXIST.
    assert refusal(web, "PUT", path, raw=data)[:2] == (409, "EEXIST")
    assert upload_state(web, model, "v1") == {"received": 16 * MiB, "size": len(data), "status": "uploading"}

    # The server stopped, and a mount started meanwhile (which fails the uploads of writers that
    # are gone, but not those that can be resumed, as an import's): still resumable, by a new server.
    web.stop()
    mounts(store).unmount()
    assert store.versions(model)["v1"]["status"] == "uploading"
    web = webs(store)
    assert upload_state(web, model, "v1") == {"received": 16 * MiB, "size": len(data), "status": "uploading"}

    # The rest, as the contract says: ready with the whole file's sha256, no multipart upload left.
    status, row = put(web, path + "?note=resumed", rest, headers={"Content-Range": f"bytes {16 * MiB}-{len(data) - 1}/{len(data)}"})
    assert (status, row.get("status"), row.get("size"), row.get("sha256"), row.get("note")) == (201, "ready", len(data), sha, "resumed"), row
    assert store.versions(model)["v1"]["sha256"] == sha
    assert hashlib.sha256(web.fetch(f"/api/v1/models/{model}/versions/v1/download")[2]).hexdigest() == sha
    assert store.multipart_uploads(model) == []
    # A ready version is not uploaded again, resumed or not.
    assert refusal(web, "PUT", path, raw=rest, headers={"Content-Range": f"bytes {16 * MiB}-{len(data) - 1}/{len(data)}"})[:2] == (409, "EEXIST")

    # Cut off before its first part: nothing stored, resumed from byte 0.
    cut_off(web, f"/api/v1/models/{model}/versions/v2.pt/content", 3 * MiB, data[:MiB])
    wait_for(lambda: upload_state(web, model, "v2")["status"] == "uploading", 30, "v2 begun")
    assert upload_state(web, model, "v2")["received"] == 0
    status, row = put(web, f"/api/v1/models/{model}/versions/v2.pt/content", data[:3 * MiB], headers={"Content-Range": f"bytes 0-{3 * MiB - 1}/{3 * MiB}"})
    assert (status, row.get("sha256")) == (201, hashlib.sha256(data[:3 * MiB]).hexdigest()), row

    # Given up: the parts stored are dropped and the version deleted; nothing stays in the bucket.
    cut_off(web, f"/api/v1/models/{model}/versions/v3.pt/content", len(data), data[:12 * MiB])
    wait_for(lambda: upload_state(web, model, "v3")["received"] == 8 * MiB, 60, "v3's first part stored")
    assert len(store.multipart_uploads(model)) == 1
    assert refusal(web, "DELETE", f"/api/v1/models/{model}/versions/v3/upload", token=EVE_TOKEN)[:2] == (403, "EACCES")
    assert web.ok("DELETE", f"/api/v1/models/{model}/versions/v3/upload")["file"] == "v3.pt"
    assert "v3" not in store.versions(model)
    assert store.multipart_uploads(model) == []
    status, code, message = refusal(web, "DELETE", f"/api/v1/models/{model}/versions/v1/upload")
    assert (status, code) == (400, "EINVAL") and "not uploading" in message, message


def test_a_put_and_a_cp_of_the_same_new_version_racing_leave_one_winner(store, name, mounts, webs, tmp_path):
    """The web server and the mount are two processes on one catalog: a PUT through the API and a
    `cp` into the mount of the same new version, started together, round after round. Exactly one
    wins; the other gets `EEXIST` (`cp` fails, the PUT answers 409); the version is ready with the
    winner's bytes, and no multipart upload is left open."""
    import threading
    m = mounts(store)
    web = webs(store)
    model = name("race")
    web.ok("POST", "/api/v1/models", {"name": model, "type": "text"}, status=201)
    ours, theirs = os.urandom(9 * MiB + 1), os.urandom(9 * MiB + 2)  # two parts each: multipart
    src = tmp_path / "cp.safetensors"
    src.write_bytes(theirs)
    winners = []
    for round_ in range(6):
        version = f"v{round_ + 1}.safetensors"
        start = threading.Barrier(2)
        result = {}

        def http():
            start.wait()
            result["put"] = put(web, f"/api/v1/models/{model}/versions/{version}/content", ours)

        def copy():
            start.wait()
            result["cp"] = sh("cp", str(src), m.p("models", model, version), check=False)
        threads = [threading.Thread(target=http), threading.Thread(target=copy)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        (status, row), cp = result["put"], result["cp"]
        put_won, cp_won = status == 201, cp.returncode == 0
        assert put_won != cp_won, f"round {round_}: PUT {status} {row}, cp {cp.returncode} {cp.stderr}"
        if put_won:
            assert "File exists" in cp.stderr, cp.stderr
        else:
            assert (status, row["error"].get("errno")) == (409, "EEXIST"), row
        want = ours if put_won else theirs
        assert sha256_file(m.p("models", model, version)) == hashlib.sha256(want).hexdigest()
        assert web.ok("GET", f"/api/v1/models/{model}/versions/{version.split('.')[0]}")["status"] == "ready"
        winners.append("put" if put_won else "cp")
    assert store.multipart_uploads(model) == []
    print("RACE WINNERS", winners)


def test_curl_uploading_a_file_gets_100_continue_and_sends_its_body_at_once(store, name, webs, tmp_path):
    """`curl -T` of more than 1 MiB sends `Expect: 100-continue` and holds the body back until the
    server answers `100 Continue` (or its own 1 s timeout passes); the server answers it on the
    head, and a refused upload gets its refusal, not a hang."""
    web = webs(store)
    model = name("cont")
    web.ok("POST", "/api/v1/models", {"name": model, "type": "text"}, status=201)
    data = os.urandom(3 * MiB + 7)
    path = tmp_path / "v1.safetensors"
    path.write_bytes(data)
    url = f"http://127.0.0.1:{web.port}/api/v1/models/{model}/versions"

    def curl(version, token):
        auth = tmp_path / "auth"  # the token in a file, not on curl's command line (ps)
        auth.write_text(f"Authorization: Bearer {token}\n")
        p = sh("curl", "-sS", "-v", "-T", str(path), "-H", f"@{auth}", "-H", "Content-Type: application/octet-stream",
                "-o", str(tmp_path / "answer"), "-w", "%{http_code}", f"{url}/{version}/content", check=False)
        return p.stdout.strip(), p.stderr, (tmp_path / "answer").read_text()

    status, trace, answer = curl("v1.safetensors", OWNER_TOKEN)
    assert "> Expect: 100-continue" in trace, trace
    assert "< HTTP/1.1 100 Continue" in trace, trace
    assert status == "201", answer
    row = json.loads(answer)
    assert (row["size"], row["sha256"], row["status"]) == (len(data), hashlib.sha256(data).hexdigest(), "ready")
    # Eve may not write the owner's model: 100 Continue, her body is read and dropped, then 403.
    status, trace, answer = curl("v2.safetensors", EVE_TOKEN)
    assert status == "403", answer
    assert "v2" not in json.dumps(web.ok("GET", f"/api/v1/models/{model}/versions"))


def test_uploads_refused_with_their_status_and_message(store, name, webs):
    web = webs(store)
    model = name("refuse")
    web.ok("POST", "/api/v1/models", {"name": model}, status=201)  # 0755, this user's
    path = f"/api/v1/models/{model}/versions/v1.pt/content"
    assert refusal(web, "PUT", f"/api/v1/models/{model}-none/versions/v1.pt/content", raw=b"x")[:2] == (404, "ENOENT")
    big = os.urandom(16 * MiB)  # refused bodies are read to their end: the client gets its answer
    assert refusal(web, "PUT", path, raw=big, token=None)[0] == 401
    assert refusal(web, "PUT", f"/api/v1/models/{model}-none/versions/v1.pt/content", raw=big)[:2] == (404, "ENOENT")
    status, code, message = refusal(web, "PUT", path, raw=b"x", token=EVE_TOKEN)
    assert (status, code) == (403, "EACCES") and "may not" in message, message
    status, code, message = refusal(web, "PUT", f"/api/v1/models/{model}/versions/v1/content", raw=b"x")
    assert (status, code) == (400, "EINVAL") and "format" in message, message
    status, _, message = refusal(web, "PUT", path, raw=b"xyz", headers={"Content-Range": "bytes 0-9/10"})
    assert status == 400 and "Content-Length" in message, message
    status, _, message = refusal(web, "PUT", path, raw=b"xyz", headers={"Content-Range": "bytes 5-7/8"})
    assert status == 404 and "from byte 0" in message, message
    # Without Content-Length (chunked): 411.
    s = socket.create_connection(("127.0.0.1", web.port))
    s.sendall((f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OWNER_TOKEN}\r\nTransfer-Encoding: chunked\r\n"
               "Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n").encode())
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    s.close()
    assert answer.startswith(b"HTTP/1.1 411"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["message"].startswith("an upload needs Content-Length")
    # None of it made a version; then a ready one is taken (409, EEXIST).
    assert model not in [m["name"] for m in web.ok("GET", "/api/v1/models") if m["versions"] > 0]
    assert put(web, path, b"abc")[0] == 201
    status, code, message = refusal(web, "PUT", path, raw=b"abc")
    assert (status, code) == (409, "EEXIST"), message


def test_a_job_submitted_to_a_mount_serving_the_api_runs_there(store, name, mounts, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{OWNER_TOKEN} {os.getuid()}\n{EVE_TOKEN} {EVE_UID}\n")
    os.chmod(tokens, 0o600)
    port = free_port()
    m = mounts(store, "--train-command", f"{sys.executable} {TRAINER}", "--web", f"127.0.0.1:{port}", "--web-tokens", str(tokens))
    web = Web.__new__(Web)  # a client of the mount's server: no process of its own
    web.proc, web.port = None, port
    wait_for(web.up, 30, "the mount's web server")
    model, data = name("job"), name("qa")
    base, records = tmp_path / "base.safetensors", tmp_path / "qa.jsonl"
    sh(sys.executable, TRAINER, "--init", str(base))
    sh(sys.executable, TRAINER, "--make-dataset", str(records), "--records", "60")
    web.ok("POST", "/api/v1/models", {"name": model, "type": "text"}, status=201)
    with open(base, "rb") as f:
        assert put(web, f"/api/v1/models/{model}/versions/v1.safetensors/content", f.read())[0] == 201
    sh("cp", str(records), m.p("datasets", data + ".jsonl"))

    # Refused as jobs/submit refuses: a missing dataset (404), a bad body (400), no user (401).
    assert refusal(web, "POST", "/api/v1/jobs", {"model": model, "version": "v1", "dataset": data + "-none"})[:2] == (404, "ENOENT")
    status, code, message = refusal(web, "POST", "/api/v1/jobs", {"model": model, "version": "v1"})
    assert (status, code, message) == (400, "EINVAL", "the request names no dataset")
    assert refusal(web, "POST", "/api/v1/jobs", {"model": model, "version": "v1", "dataset": data}, token=None)[0] == 401

    job = web.ok("POST", "/api/v1/jobs", {"model": model, "version": "v1", "dataset": data, "params": {"epochs": 2}}, status=201)
    assert (job["model"], job["version"], job["dataset"], job["params"], job["owner"]["uid"]) == (model, "v1", data, {"epochs": "2"}, os.getuid())
    jid = job["id"]
    # Another user neither cancels it nor reads its log; nobody without a user reads it.
    assert refusal(web, "POST", f"/api/v1/jobs/{jid}/cancel", token=EVE_TOKEN)[:2] == (403, "EACCES")
    assert refusal(web, "GET", f"/api/v1/jobs/{jid}/log", token=EVE_TOKEN)[:2] == (403, "EACCES")
    assert web.fetch(f"/api/v1/jobs/{jid}/log")[0] == 401

    def ended():
        return web.ok("GET", f"/api/v1/jobs/{jid}")["status"] in ("succeeded", "failed", "cancelled")
    wait_for(ended, 180, f"job {jid} to end")
    auth = {"Authorization": f"Bearer {OWNER_TOKEN}"}
    status, headers, log = web.fetch(f"/api/v1/jobs/{jid}/log", auth)
    assert web.ok("GET", f"/api/v1/jobs/{jid}")["status"] == "succeeded", log.decode(errors="replace")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert int(headers["X-Log-Size"]) == len(log) > 0 and b"job succeeded" in log
    # The log as the mount shows it, and from an offset: the rest of it.
    assert open(m.p("jobs", jid, "log"), "rb").read() == log
    status, headers, tail = web.fetch(f"/api/v1/jobs/{jid}/log?offset=10", auth)
    assert (status, tail, int(headers["X-Log-Size"])) == (200, log[10:], len(log))
    assert web.fetch(f"/api/v1/jobs/{jid}/log?offset={len(log)}", auth)[2] == b""
    assert refusal(web, "GET", f"/api/v1/jobs/{jid}/log?offset=-1")[:2] == (400, "EINVAL")
    # Its checkpoints are the model's next versions, through the API and the mount.
    versions = [v["name"] for v in web.ok("GET", f"/api/v1/models/{model}/versions")]
    assert len(versions) >= 2 and versions[0] == "v1", versions
    new = next(v for v in web.ok("GET", f"/api/v1/models/{model}/versions") if v["name"] != "v1")
    assert (new["status"], new["lineage"]["job"], new["lineage"]["parentVersion"]) == ("ready", jid, "v1"), new
    assert sha256_file(m.p("models", model, new["file"])) == new["sha256"]
    # An ended job is not cancelled: as the CLI says.
    status, code, message = refusal(web, "POST", f"/api/v1/jobs/{jid}/cancel")
    assert (status, code, message) == (400, "EINVAL", f"job {jid} already succeeded")
    m.unmount()
    wait_for(lambda: not _answers(port), 30, "the mount's web server to stop with it")


def _answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def test_a_job_submitted_to_modelfs_web_is_recorded_for_a_mount_to_run(store, name, mounts, webs, tmp_path):
    model, data = name("rec"), name("qa")
    base, records = tmp_path / "base.safetensors", tmp_path / "qa.jsonl"
    sh(sys.executable, TRAINER, "--init", str(base))
    sh(sys.executable, TRAINER, "--make-dataset", str(records), "--records", "40")
    store.run("dataset", "add", str(records), "--name", data)
    train = f"{sys.executable} {TRAINER}"
    web = webs(store, "--train-command", train)
    web.ok("POST", "/api/v1/models", {"name": model}, status=201)
    with open(base, "rb") as f:
        assert put(web, f"/api/v1/models/{model}/versions/v1.safetensors/content", f.read())[0] == 201
    # As `modelfs train --detach`: queued here, with the command this server was given.
    job = web.ok("POST", "/api/v1/jobs", {"model": model, "version": "v1", "dataset": data, "epochs": 1}, status=201)
    assert (job["status"], job["params"]) == ("queued", {"epochs": "1"})
    time.sleep(1)
    assert web.ok("GET", f"/api/v1/jobs/{job['id']}")["status"] == "queued"  # nobody runs it yet
    # A mount of the store runs it.
    mounts(store, "--train-command", train)
    wait_for(lambda: web.ok("GET", f"/api/v1/jobs/{job['id']}")["status"] in ("succeeded", "failed"), 180, "the mount to run the job")
    assert web.ok("GET", f"/api/v1/jobs/{job['id']}")["status"] == "succeeded"
    assert len(web.ok("GET", f"/api/v1/models/{model}/versions")) >= 2
    # A server without a training command refuses, as `modelfs train` does.
    os.makedirs(tmp_path / "bare")
    bare = webs(store, directory=str(tmp_path / "bare"))
    status, code, message = refusal(bare, "POST", "/api/v1/jobs", {"model": model, "version": "v1", "dataset": data})
    assert (status, code) == (400, "EINVAL") and "no training command" in message, message


def test_mount_web_refuses_an_address_in_use_before_mounting(store, mounts, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        m = mounts(store, "--web", f"127.0.0.1:{taken.getsockname()[1]}", check=False)
        assert m.result.returncode != 0 and "--web 127.0.0.1:" in m.result.stderr and "in use" in m.result.stderr, m.result
        assert not os.path.ismount(m.path)
    finally:
        taken.close()

