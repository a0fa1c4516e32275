"""The pages of `modelfs web` (docs/WEB.md) in a real headless Chromium (Debian's, driven by
Playwright), against a store a mount also serves and runs jobs for: signing in (a session cookie,
the token in no page), the model list's stat cards and search as you type, a model's page with
its versions and lineage, the last version's delete refused with its reason, compare of two
evaluated versions, the jobs pages live; and the three quick-start flows (import a model with a
file, add a version with the suggested name and a note, train from v1 on a ready dataset and
watch the job make v3). A screenshot of each page is saved under the pytest temp dir (printed), or under
$MODELFS_SCREENSHOTS when it is set."""
import http.client
import json
import os
import pwd
import re
import sys
import urllib.parse
import uuid

import pytest

from conftest import Store
from helpers import free_port, sh, wait_for
from test_jobs import EVAL_COMMAND, TRAIN_COMMAND, TRAINER, JobMount, wait_succeeded
from test_services import SERVE
from test_web_api import OWNER_TOKEN, Web, cli_message

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # scripts/test installs it; elsewhere the module says what is missing
    if os.environ.get("MODELFS_REQUIRE_BROWSER") == "1":
        raise
    pytest.skip("no playwright (pip install playwright; apt-get install chromium)", allow_module_level=True)

CHROMIUM = os.environ.get("MODELFS_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("MODELFS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        # As root, Chromium's sandbox cannot start; the pages are the project's own.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    where = os.environ.get("MODELFS_SCREENSHOTS") or str(tmp_path_factory.mktemp("screenshots"))
    os.makedirs(where, exist_ok=True)
    print(f"\nscreenshots of the pages: {where}")
    return where


class World:
    """One local store, mounted with the example trainer and evaluator, served over HTTP by that mount
    (`mount --web`):
    `model` has v1 (base weights), v2 trained from it on `dataset`, both evaluated on `held_out`."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.store = Store("local", str(tmp / "data"))
        # The sleep keeps a training job queued or running for a moment, long enough for a page to
        # show it live before it ends.
        self.mount = JobMount(self.store, tmp, train_command=f"sleep 2; {TRAIN_COMMAND}", eval_command=EVAL_COMMAND)
        self.web = None

    def start(self):
        tmp = self.tmp
        # The mount serves the pages and runs the jobs they submit (`mount --web`).
        self.web = Web.__new__(Web)  # a client of the mount's server: no process of its own
        self.web.proc, self.web.port = None, free_port()
        tokens = tmp / "tokens"
        tokens.write_text(f"{OWNER_TOKEN} {os.getuid()}\n")
        os.chmod(tokens, 0o600)
        self.mount.args += ("--web", f"127.0.0.1:{self.web.port}", "--web-tokens", str(tokens), "--serve-command", SERVE)
        self.mount.start()
        wait_for(self.web.up, 60, "the mount's web server")

    def populate(self):
        tmp = self.tmp
        tag = uuid.uuid4().hex[:6]
        self.model, self.dataset, self.held_out = f"tiny-{tag}", f"qa-{tag}", f"held-{tag}"
        self.mount.seed(self.model, self.dataset)
        sh(sys.executable, TRAINER, "--make-dataset", str(tmp / "held.jsonl"), "--records", "60", "--seed", "7")
        sh("cp", str(tmp / "held.jsonl"), self.mount.p("datasets", self.held_out + ".jsonl"))
        self.train = self.submit(f"model={self.model} version=v1 dataset={self.dataset} epochs=3")
        for v in ("v1", "v2"):
            self.submit(f"model={self.model} version={v} dataset={self.held_out}", control="evaluate")

    def submit(self, request, control="submit"):
        err, job = self.mount.submit(request + "\n", control=control)
        assert err == 0, job
        wait_succeeded(self.mount.p(), job)
        return job

    def url(self, path):
        return f"http://127.0.0.1:{self.web.port}{path}"

    def close(self):
        if self.web and self.web.proc:
            self.web.stop()
        self.mount.unmount()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("web-pages"))
    try:
        w.start()
        w.populate()
        yield w
    finally:
        w.close()


@pytest.fixture
def page(browser, world):
    """A new browser (no cookie yet) on the world's server; dialogs (the delete's confirm) accepted."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    p = context.new_page()
    p.on("dialog", lambda dialog: dialog.accept())
    p.set_default_timeout(30_000)
    # Every page runs under its Content-Security-Policy: nothing of it may be refused by it.
    refused = []
    p.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    yield p
    context.close()
    assert not refused, refused


def sign_in(page, world, token=OWNER_TOKEN):
    page.goto(world.url("/login"))
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(world.url("/"))


def shoot(page, shots, name):
    page.screenshot(path=os.path.join(shots, f"web-{name}.png"))


def test_sign_in_gives_an_httponly_session_and_writes_need_its_csrf_token(page, world, shots):
    page.goto(world.url("/login"))
    shoot(page, shots, "login")
    # A wrong token: refused on the page, not echoed.
    page.fill("input[name=token]", "not-a-token-of-this-server")
    page.click("button[type=submit]")
    expect(page.locator("[role=alert]")).to_contain_text("not in this server's tokens file")
    assert "not-a-token-of-this-server" not in page.content()
    sign_in(page, world)
    cookie = next(c for c in page.context.cookies() if c["name"] == "modelfs_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert OWNER_TOKEN not in cookie["value"] and OWNER_TOKEN not in page.content()
    expect(page.locator("header .who span")).to_have_text(pwd.getpwuid(os.getuid()).pw_name)
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert re.fullmatch(r"[0-9a-f]{64}", csrf)
    # The cookie alone does not make a change (another site's form would send it too)…
    refused = page.evaluate("""async () => {
        const r = await fetch('/api/v1/models', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{"name": "csrf-probe"}'});
        return [r.status, (await r.json()).error.message];
    }""")
    assert refused[0] == 403 and "X-CSRF-Token" in refused[1]
    # …the page's token does, as the signed-in user.
    model = f"csrf-{uuid.uuid4().hex[:6]}"
    made = page.evaluate("""async ([name, token]) => {
        const r = await fetch('/api/v1/models', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token},
                                                 body: JSON.stringify({name})});
        return [r.status, await r.json()];
    }""", [model, csrf])
    assert made[0] == 201 and made[1]["owner"]["uid"] == os.getuid()
    # Signed out, the cookie names no one.
    page.click("header .who button")
    assert not [c for c in page.context.cookies() if c["name"] == "modelfs_session" and c["value"]]
    expect(page.locator("header a.who")).to_have_text("Sign in")


def test_behind_a_tls_proxy_the_session_cookie_is_secure(world):
    """A proxy that ends TLS says so (`X-Forwarded-Proto: https`): the cookie is then never sent over plain HTTP."""
    def set_cookie(headers):
        c = http.client.HTTPConnection("127.0.0.1", world.web.port, timeout=30)
        c.request("POST", "/login", urllib.parse.urlencode({"token": OWNER_TOKEN}),
                  {"Content-Type": "application/x-www-form-urlencoded", **headers})
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 303, r.status
        # Pages load only this server's script and style, in no other site's frame.
        assert "script-src 'self'" in r.getheader("Content-Security-Policy") and "frame-ancestors 'none'" in r.getheader("Content-Security-Policy")
        return r.getheader("Set-Cookie")
    plain, tls = set_cookie({}), set_cookie({"X-Forwarded-Proto": "https"})
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Secure" not in plain, plain
    assert "Secure" in tls and "HttpOnly" in tls, tls
    assert OWNER_TOKEN not in plain + tls


def test_the_model_list_pages_and_filters_as_you_type(page, world, shots):
    tag = uuid.uuid4().hex[:6]
    wanted = [f"alpaca-{tag}", f"alpine-{tag}"]
    for n in wanted + [f"bison-{tag}"]:
        world.web.ok("POST", "/api/v1/models", {"name": n, "type": "image"}, status=201)
    # More models than a page holds: the first page only, the rest with "More".
    for i in range(105):
        world.web.ok("POST", "/api/v1/models", {"name": f"bulk-{tag}-{i:03}"}, status=201)
    page.goto(world.url("/"))
    stats = world.web.ok("GET", "/api/v1/stats")
    cards = page.locator(".stats .stat b").all_inner_texts()
    assert cards == [str(stats["models"]), *(str(stats["modelsByType"].get(t, 0)) for t in ("text", "image", "general"))]
    rows = page.locator("#models tr")
    assert rows.count() == 100 and stats["models"] > 100
    shoot(page, shots, "models")

    page.locator("#search").press_sequentially(f"bulk-{tag}", delay=30)
    expect(rows).to_have_count(100)
    expect(rows.first).to_contain_text(f"bulk-{tag}-000")
    page.click("#more-models")
    expect(rows).to_have_count(105)
    expect(page.locator("#more-models")).to_be_hidden()

    # Typing narrows the rows to the matching names, as `modelfs models --search` does.
    page.locator("#search").fill("")
    page.locator("#search").press_sequentially("alp", delay=40)
    expected = [r["name"] for r in world.web.ok("GET", "/api/v1/models?search=alp")]
    assert set(wanted) <= set(expected) and f"bison-{tag}" not in expected
    expect(rows).to_have_count(len(expected))
    assert page.locator("#models tr td:first-child").all_inner_texts() == expected
    expect(page.locator("#more-models")).to_be_hidden()
    assert "search=alp" in page.url
    shoot(page, shots, "search")


def test_a_models_page_shows_its_versions_and_lineage(page, world, shots):
    page.goto(world.url(f"/models/{world.model}"))
    versions = {v["name"]: v for v in world.web.ok("GET", f"/api/v1/models/{world.model}/versions")}
    for name, v in versions.items():
        row = page.locator(f"#version-{name}")
        expect(row).to_contain_text(v["file"])
        expect(row).to_contain_text("ready")
        expect(row).to_contain_text(v["sha256"][:12])
        expect(row).to_contain_text(f"accuracy {v['metrics']['accuracy']:.4g}")
    # Lineage: v1 → v2, the arrow labelled with the dataset and the job that made v2.
    lineage = page.locator("svg#lineage")
    expect(lineage.locator("g.node")).to_have_count(2)
    assert sorted(lineage.locator("g.node text").all_text_contents()) == ["v1", "v2"]
    expect(lineage.locator("path.edge")).to_have_count(1)
    label = lineage.locator("text.edge-label").text_content()
    assert world.dataset in label and world.train in label
    assert versions["v2"]["lineage"] == {"parentVersion": "v1", "dataset": world.dataset, "job": world.train}
    shoot(page, shots, "model")


def test_the_last_versions_delete_is_refused_with_its_reason(page, world, shots):
    model = f"solo-{uuid.uuid4().hex[:6]}"
    world.web.ok("POST", "/api/v1/models", {"name": model}, status=201)
    for v in ("v1", "v2"):
        with open(world.tmp / f"{model}-{v}.pt", "wb") as f:
            f.write(os.urandom(2048))
        sh("cp", str(world.tmp / f"{model}-{v}.pt"), world.mount.p("models", model, f"{v}.pt"))
    page.goto(world.url(f"/models/{model}"))
    # Not signed in: the server's answer says a change needs a user.
    page.click("#version-v2 button.delete")
    expect(page.locator("#message")).to_contain_text("a change needs a user")
    sign_in(page, world)
    page.goto(world.url(f"/models/{model}"))
    page.click("#version-v2 button.delete")
    expect(page.locator("#version-v2")).to_have_count(0)
    page.click("#version-v1 button.delete")
    # The last ready version stays; the page shows the CLI's reason for it.
    reason = cli_message(world.store, "version", "rm", model, "v1")
    expect(page.locator("#message")).to_contain_text(reason)
    assert "last" in reason
    expect(page.locator("#version-v1")).to_have_count(1)
    assert [v["name"] for v in world.web.ok("GET", f"/api/v1/models/{model}/versions")] == ["v1"]
    shoot(page, shots, "delete-refused")


def test_compare_two_evaluated_versions(page, world, shots):
    page.goto(world.url(f"/models/{world.model}"))
    page.check("#version-v1 input.pick")
    page.check("#version-v2 input.pick")
    page.click("#compare")
    page.wait_for_url(re.compile(r".*/compare\?versions=v1%2Cv2$|.*/compare\?versions=v1,v2$"))
    compared = {v["name"]: v for v in json.loads(world.store.run("compare", world.model, "v1", "v2", "--json").stdout)["versions"]}
    table = page.locator("table.compare")
    for metric in ("accuracy", "loss"):
        row = table.locator("tr", has=page.locator(f"th:text-is('{metric} ({world.held_out})')"))
        cells = row.locator("td").all_inner_texts()
        measured = [next(e for e in compared[v]["evaluations"] if e["dataset"] == world.held_out)["metrics"][metric] for v in ("v1", "v2")]
        assert [float(c) for c in cells] == pytest.approx(measured, rel=1e-3)
    assert table.locator("tr", has=page.locator("th:text-is('parent')")).locator("td").all_inner_texts() == ["-", "v1"]
    # The chart: a bar per version for each metric (accuracy, loss, records).
    expect(page.locator("svg.chart rect")).to_have_count(6)
    shoot(page, shots, "compare")


def test_the_jobs_pages_follow_a_job_live(page, world, shots):
    page.goto(world.url("/jobs"))
    row = page.locator(f"#jobs tr[data-job='{world.train}']")
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text("v2")
    shoot(page, shots, "jobs")
    # A new job, watched from its page while it is queued or running, to its end; its log is
    # its owner's, so the page is read signed in.
    sign_in(page, world)
    err, job = world.mount.submit(f"model={world.model} version=v2 dataset={world.dataset} epochs=1\n")
    assert err == 0, job
    page.goto(world.url(f"/jobs/{job}"))
    first = page.locator("#job-status").inner_text()
    assert first in ("queued", "running"), first
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=120_000)
    made = world.web.ok("GET", f"/api/v1/jobs/{job}")["outputs"]
    expect(page.locator("#job-outputs")).to_contain_text(made[0])
    expect(page.locator("#log")).to_contain_text("job succeeded", timeout=30_000)
    shoot(page, shots, "job")


def test_the_services_page_follows_a_service_and_stops_it(page, world, shots):
    """A service of the example server on v2 (its weights held back 2 s): the page follows its log
    and status live to `ready`, shows its endpoint, and its Stop button stops it."""
    name = f"svc-{uuid.uuid4().hex[:6]}"
    world.web.ok("POST", "/api/v1/services", {"model": world.model, "version": "v2", "name": name, "params": {"delay": "2"}}, status=201)
    sign_in(page, world)
    page.goto(world.url("/services"))
    row = page.locator(f'tr[data-service="{name}"]')
    expect(row).to_contain_text(world.model)
    row.locator("button.service-log").click()
    expect(page.locator("#log")).to_contain_text("serve_example: listening on", timeout=60_000)
    expect(row.locator(".service-status")).to_have_text("ready", timeout=60_000)
    page.reload()
    endpoint = world.web.ok("GET", "/api/v1/services")
    endpoint = next(s for s in endpoint if s["name"] == name)["endpoint"]
    expect(row).to_contain_text(endpoint)
    shoot(page, shots, "services")
    row.locator('button.service-action[data-action="stop"]').click()
    expect(row.locator(".service-status")).to_have_text(re.compile("stopping|stopped"), timeout=30_000)
    wait_for(lambda: next(s for s in world.web.ok("GET", "/api/v1/services") if s["name"] == name)["status"] == "stopped", 60,
             "the service to stop")


def test_a_job_log_is_followed_from_its_offset(page, world):
    page.goto(world.url(f"/jobs/{world.train}"))
    expect(page.locator("#log")).to_contain_text("sign in to read it")
    sign_in(page, world)
    page.goto(world.url(f"/jobs/{world.train}"))
    expect(page.locator("#log")).to_contain_text("epoch 3/3")
    text = page.locator("#log").inner_text()
    assert text.count("job succeeded") == 1, "each byte once: the page asks from the offset it has"


# The quick-start flows.

def pick(page, path):
    page.set_input_files("#file", str(path))


def upload_and_wait(page):
    page.click("#upload")
    expect(page.locator("#uploaded")).to_be_visible(timeout=120_000)
    progress = page.locator("#progress")
    assert re.search(r"100% · .* MB/s", progress.inner_text()), progress.inner_text()
    assert int(progress.get_attribute("data-events") or 0) >= 1, "the progress bar moved with xhr.upload.onprogress"


def test_import_a_model_with_a_file(page, world, shots):
    sign_in(page, world)
    model = f"imported-{uuid.uuid4().hex[:6]}"
    weights = world.tmp / f"{model}.safetensors"
    sh(sys.executable, TRAINER, "--init", str(weights), "--inputs", "4096", "--hidden", "64", "--seed", "3")
    page.goto(world.url("/import"))
    page.fill("#model", model)
    page.select_option("#type", "text")
    pick(page, weights)
    expect(page.locator("#version")).to_have_value("v1")
    upload_and_wait(page)
    shoot(page, shots, "import")
    got = world.web.ok("GET", f"/api/v1/models/{model}/versions/v1")
    assert got["status"] == "ready" and got["file"] == "v1.safetensors" and got["size"] == os.path.getsize(weights)
    assert world.web.ok("GET", f"/api/v1/models/{model}")["type"] == "text"
    wait_for(lambda: os.path.exists(world.mount.p("models", model, "v1.safetensors")), 30, "the version in the mount")
    assert open(world.mount.p("models", model, "v1.safetensors"), "rb").read() == weights.read_bytes()


def test_add_a_version_with_the_suggested_name_and_a_note(page, world, shots):
    sign_in(page, world)
    model = f"added-{uuid.uuid4().hex[:6]}"
    world.web.ok("POST", "/api/v1/models", {"name": model}, status=201)
    first = world.tmp / f"{model}-1.safetensors"
    sh(sys.executable, TRAINER, "--init", str(first), "--seed", "4")
    sh("cp", str(first), world.mount.p("models", model, "v1.safetensors"))
    page.goto(world.url(f"/models/{model}/add"))
    expect(page.locator("#version")).to_have_value(world.web.ok("GET", f"/api/v1/models/{model}/next")["version"])
    assert page.locator("#version").input_value() == "v2"
    # The same bytes as v1: the page says so before sending them.
    pick(page, first)
    page.click("#upload")
    expect(page.locator("#duplicate")).to_contain_text(f"{model}/v1")
    second = world.tmp / f"{model}-2.safetensors"
    sh(sys.executable, TRAINER, "--init", str(second), "--seed", "5")
    pick(page, second)
    page.fill("#note", "a second start")
    upload_and_wait(page)
    shoot(page, shots, "add-version")
    got = world.web.ok("GET", f"/api/v1/models/{model}/versions/v2")
    assert (got["status"], got["note"], got["size"]) == ("ready", "a second start", os.path.getsize(second))
    page.click("#uploaded")
    expect(page.locator("#version-v2")).to_contain_text("a second start")


def test_train_from_v1_on_a_ready_dataset_and_watch_v3_appear(page, world, shots):
    sign_in(page, world)
    model = f"trained-{uuid.uuid4().hex[:6]}"
    world.web.ok("POST", "/api/v1/models", {"name": model}, status=201)
    base = world.tmp / f"{model}.safetensors"
    sh(sys.executable, TRAINER, "--init", str(base), "--seed", "6")
    for v in ("v1", "v2"):
        sh("cp", str(base), world.mount.p("models", model, f"{v}.safetensors"))
    page.goto(world.url(f"/models/{model}/train"))
    page.select_option("#from", "v1")
    dataset = page.locator("#train-form tr", has=page.locator(f"text={world.dataset}.jsonl"))
    facts = next(d for d in world.web.ok("GET", "/api/v1/datasets") if d["name"] == world.dataset)
    expect(dataset).to_contain_text(str(facts["records"]))
    dataset.locator("input[type=radio]").check()
    page.fill("#params", "epochs=2")
    shoot(page, shots, "train")
    page.click("#train-form button[type=submit]")
    expect(page.locator("#message")).to_be_hidden()
    page.wait_for_url(re.compile(r".*/jobs/.+"))
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=180_000)
    expect(page.locator("#job-outputs")).to_contain_text("v3")
    job = page.url.rsplit("/", 1)[1]
    assert world.web.ok("GET", f"/api/v1/jobs/{job}")["params"] == {"epochs": "2"}
    page.goto(world.url(f"/models/{model}"))
    expect(page.locator("#version-v3")).to_contain_text("ready")
    assert world.web.ok("GET", f"/api/v1/models/{model}/versions/v3")["lineage"]["parentVersion"] == "v1"


def test_names_and_notes_are_shown_as_text_never_as_markup(page, world):
    model = f"note-{uuid.uuid4().hex[:6]}"
    note = '<img src=x onerror="window.injected = 1"><script>window.injected = 2</script> & more'
    world.web.ok("POST", "/api/v1/models", {"name": model, "note": note}, status=201)
    page.goto(world.url(f"/models/{model}"))
    expect(page.locator("p.note")).to_have_text(note)
    page.goto(world.url(f"/?search={model}"))
    expect(page.locator("#models tr")).to_have_count(1)
    expect(page.locator("#models tr td").last).to_have_text(note)
    assert page.evaluate("window.injected") is None
    assert page.locator("main img, main script").count() == 0


def test_a_model_of_many_versions_shows_a_page_of_them_at_a_time(page, world):
    model = f"many-{uuid.uuid4().hex[:6]}"
    world.web.ok("POST", "/api/v1/models", {"name": model}, status=201)
    for i in range(1, 106):
        with open(world.mount.p("models", model, f"v{i}.pt"), "wb") as f:
            f.write(i.to_bytes(2, "big") * 8)
    page.goto(world.url(f"/models/{model}"))
    rows = page.locator("#versions tr")
    expect(rows).to_have_count(100)
    page.click("#more-versions")
    expect(rows).to_have_count(105)
    expect(page.locator("#more-versions")).to_be_hidden()
    # Each version once, in the API's order.
    listed = [v["name"] for v in world.web.ok("GET", f"/api/v1/models/{model}/versions?limit=1000")]
    assert [r.get_attribute("data-version") for r in rows.all()] == listed
