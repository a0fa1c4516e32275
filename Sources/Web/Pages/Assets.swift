import ModelStore

/// The pages' script and style, served as they are (`/static/app.js`, `/static/app.css`): plain
/// JavaScript that calls the JSON API with the page's CSRF token, no toolchain to build it.
enum Assets {
    static let script = #"""
"use strict";
const $ = (selector, root = document) => root.querySelector(selector);
const csrf = () => $('meta[name="csrf-token"]').content;
const seg = encodeURIComponent;
const mb = (bytes) => (bytes / 1e6).toFixed(1) + " MB";

function show(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

function statusBadge(status) {
  const span = document.createElement("span");
  span.className = "status " + status;
  span.textContent = status;
  return span;
}

// A call of the JSON API as the signed-in user: {ok, status, data, message} (the server's refusal message).
async function api(method, path, body) {
  const headers = {"X-CSRF-Token": csrf()};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {method, headers, credentials: "same-origin",
                                      body: body === undefined ? undefined : JSON.stringify(body)});
  let data = null;
  try { data = await response.json(); } catch (e) { /* not JSON */ }
  const refused = data && data.error ? data.error.message : response.status + " " + response.statusText;
  const hint = response.status === 401 ? " (sign in first)" : "";
  return {ok: response.ok, status: response.status, data, message: response.ok ? "" : refused + hint};
}

// "More" buttons and the search box: fragments of rows from the server, a page at a time.
function setMore(button, response) {
  const next = response.headers.get("X-Next-After");
  button.dataset.after = next ? decodeURIComponent(next) : "";
  button.hidden = !next;
}

function withQuery(url, name, value) {
  return url + (url.includes("?") ? "&" : "?") + name + "=" + encodeURIComponent(value);
}

document.querySelectorAll("button.more").forEach((button) => button.addEventListener("click", async () => {
  const response = await fetch(withQuery(button.dataset.url, "after", button.dataset.after));
  const rows = button.id === "more-models" ? $("#models") : $("#versions");
  rows.insertAdjacentHTML("beforeend", await response.text());
  setMore(button, response);
}));

const search = $("#search");
if (search) {
  let timer = null, asked = 0;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++asked;
      const url = withQuery(search.dataset.url, "search", search.value);
      const response = await fetch(url);
      const text = await response.text();
      if (mine !== asked) return;  // a newer search answered or will
      $("#models").innerHTML = text;
      const more = $("#more-models");
      more.dataset.url = url;
      setMore(more, response);
      const here = new URL(location.href);
      here.searchParams.set("search", search.value);
      history.replaceState(null, "", here);
    }, 200);
  });
}

// A model's page: delete a version (the server's refusal shown), compare the ones ticked.
const versions = $("#versions");
if (versions) {
  const model = $("#versions-table").dataset.model;
  versions.addEventListener("click", async (event) => {
    const button = event.target.closest("button.delete");
    if (!button) return;
    const version = button.dataset.version;
    if (!confirm("Delete " + model + "/" + version + "?")) return;
    const r = await api("DELETE", "/api/v1/models/" + seg(model) + "/versions/" + seg(version));
    if (r.ok) {
      button.closest("tr").remove();
      show($("#message"), "");
    } else {
      show($("#message"), version + " was not deleted: " + r.message);
    }
  });
  $("#compare").addEventListener("click", () => {
    const picked = [...document.querySelectorAll("input.pick:checked")].map((box) => box.value);
    if (picked.length < 2) return show($("#message"), "tick two versions or more to compare them");
    location.href = withQuery($("#compare").dataset.url, "versions", picked.join(","));
  });
}

// "Import model" and "Add version": pick or drop a file, check that its bytes are not a version
// already, upload it with a live progress bar.
const FORMATS = [\#(Formats.version.map { "\"\($0)\"" }.joined(separator: ", "))];
const formatOf = (fileName) => FORMATS.find((f) => fileName.toLowerCase().endsWith("." + f));

async function sameBytes(file, limit) {
  // crypto.subtle exists on https and on loopback only; it digests a whole buffer in memory.
  if (file.size > limit || !(window.crypto && crypto.subtle)) return [];
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const response = await fetch("/api/v1/versions?sha256=" + hex);
  return response.ok ? await response.json() : [];
}

const uploadForm = $("#upload-form");
if (uploadForm) {
  const drop = $("#drop"), fileInput = $("#file"), message = $("#message"), progress = $("#progress");
  const duplicate = $("#duplicate"), button = $("#upload"), limit = Number(uploadForm.dataset.checkLimit);
  let chosen = null, checking = Promise.resolve([]), uploadAnyway = false;
  const pick = (file) => {
    chosen = file;
    uploadAnyway = false;
    button.textContent = "Upload";
    drop.classList.add("chosen");
    progress.textContent = file.name + " · " + mb(file.size);
    show(duplicate, "");
    show(message, formatOf(file.name) ? "" : file.name + " is not a model file (" + FORMATS.join(", ") + ")");
    checking = sameBytes(file, limit).catch(() => []);
  };
  fileInput.addEventListener("change", () => fileInput.files[0] && pick(fileInput.files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files[0]) pick(event.dataTransfer.files[0]);
  });
  const modelInput = $("#model");
  if (modelInput) {
    // An existing model: the version it would get next, and the upload adds it there.
    modelInput.addEventListener("change", async () => {
      const response = await fetch("/api/v1/models/" + seg(modelInput.value.trim()) + "/next");
      $("#version").value = response.ok ? (await response.json()).version : "v1";
    });
  }
  uploadForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    show(message, "");
    if (!chosen) return show(message, "choose a file first");
    const format = formatOf(chosen.name);
    if (!format) return show(message, chosen.name + " is not a model file (" + FORMATS.join(", ") + ")");
    const same = await checking;
    if (same.length && !uploadAnyway) {
      show(duplicate, "These bytes are already " + same.map((v) => v.model + "/" + v.version).join(", ") + ". Upload them anyway?");
      button.textContent = "Upload anyway";
      uploadAnyway = true;
      return;
    }
    const model = uploadForm.dataset.mode === "import" ? modelInput.value.trim() : uploadForm.dataset.model;
    let version = $("#version").value.trim();
    if (!formatOf(version)) version += "." + format;
    if (uploadForm.dataset.mode === "import") {
      const made = await api("POST", "/api/v1/models", {name: model, type: $("#type").value});
      if (!made.ok && made.status !== 409) return show(message, made.message);
    }
    const note = $("#note").value;
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", "/api/v1/models/" + seg(model) + "/versions/" + seg(version) + "/content" + (note ? "?note=" + encodeURIComponent(note) : ""));
    xhr.setRequestHeader("X-CSRF-Token", csrf());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    const bar = $(".progress"), fill = $("#progress-fill"), started = performance.now();
    let events = 0;
    const report = (loaded, total) => {
      const percent = total ? Math.floor(loaded / total * 100) : 100;
      const seconds = Math.max((performance.now() - started) / 1000, 0.001);
      fill.style.width = percent + "%";
      progress.textContent = percent + "% · " + mb(loaded) + " of " + mb(total) + " · " + (loaded / 1e6 / seconds).toFixed(1) + " MB/s";
    };
    bar.hidden = false;
    button.disabled = true;
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      progress.dataset.events = String(++events);
      report(e.loaded, e.total);
    };
    xhr.onload = () => {
      button.disabled = false;
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status === 200 || xhr.status === 201) {
        report(chosen.size, chosen.size);
        progress.textContent = "Uploaded " + model + "/" + (data ? data.file : version) + " · " + progress.textContent;
        const open = document.createElement("a");
        open.href = "/models/" + seg(model);
        open.id = "uploaded";
        open.textContent = "Open " + model;
        progress.append(" ", open);
      } else {
        show(message, (data && data.error ? data.error.message : xhr.status + " " + xhr.statusText) + (xhr.status === 401 ? " (sign in first)" : ""));
      }
    };
    xhr.onerror = () => {
      button.disabled = false;
      show(message, "the upload was cut off: add the version again to resume it");
    };
    xhr.send(chosen);
  });
}

// "Train": a version and a ready dataset, POST /api/v1/jobs, then the job's page.
const trainForm = $("#train-form");
if (trainForm) {
  trainForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = {};
    for (const pair of $("#params").value.split(/\s+/).filter(Boolean)) {
      const at = pair.indexOf("=");
      if (at < 1) return show($("#message"), "hyper-parameters are key=value: " + pair);
      params[pair.slice(0, at)] = pair.slice(at + 1);
    }
    const dataset = $('input[name="dataset"]:checked');
    if (!dataset) return show($("#message"), "pick a dataset");
    // (trainForm.dataset is its radio buttons named "dataset": a form's controls shadow its properties.)
    const r = await api("POST", "/api/v1/jobs", {model: trainForm.getAttribute("data-model"), version: $("#from").value, dataset: dataset.value, params});
    if (r.ok) location.href = "/jobs/" + seg(r.data.id);
    else show($("#message"), r.message);
  });
}

// A log, followed from the byte it has (…/log?offset=N) until `finished()` and nothing more comes.
function follow(pre, url, finished) {
  let offset = 0, stopped = false;
  const decoder = new TextDecoder();
  const tick = async () => {
    if (stopped) return;
    const response = await fetch(withQuery(url, "offset", offset)).catch(() => null);
    let got = 0;
    if (response && response.ok) {
      const bytes = await response.arrayBuffer();
      got = bytes.byteLength;
      offset += got;
      pre.textContent += decoder.decode(bytes, {stream: true});
      pre.scrollTop = pre.scrollHeight;
    } else if (response && offset === 0) {
      let why = String(response.status);
      try { why = (await response.json()).error.message; } catch (e) { /* not JSON */ }
      pre.dataset.missing = String(response.status);
      pre.textContent = "(no log: " + why + (response.status === 401 ? "; sign in to read it" : "") + ")";
    }
    if (got > 0 || !(await finished())) setTimeout(tick, 1000);
  };
  tick();
  return () => { stopped = true; };
}

const jobSection = $("#job");
if (jobSection) {
  const job = jobSection.dataset.job, model = jobSection.dataset.model;
  let last = null;
  const refresh = async () => {
    const response = await fetch("/api/v1/jobs/" + seg(job));
    if (!response.ok) return true;
    last = await response.json();
    $("#job-status").replaceChildren(statusBadge(last.status));
    $("#job-error").textContent = last.error || "";
    for (const key of ["started", "finished"]) {
      if (last[key]) $("#job-" + key).textContent = last[key].slice(0, 16).replace("T", " ");
    }
    $("#job-outputs").replaceChildren(...last.outputs.flatMap((v) => {
      const a = document.createElement("a");
      a.href = "/models/" + seg(model) + "#version-" + v;
      a.textContent = v;
      return [a, " "];
    }));
    return last.status !== "queued" && last.status !== "running";
  };
  follow($("#log"), $("#log").dataset.url, refresh);
}

// The jobs list: the status of jobs still queued or running, kept current.
const liveJobs = () => [...document.querySelectorAll("#jobs tr.live")];
if (liveJobs().length) {
  const poll = async () => {
    for (const row of liveJobs()) {
      const response = await fetch("/api/v1/jobs/" + seg(row.dataset.job));
      if (!response.ok) continue;
      const j = await response.json();
      row.querySelector(".job-status").replaceChildren(statusBadge(j.status));
      row.querySelector(".job-outputs").textContent = j.outputs.join(" ");
      if (j.status !== "queued" && j.status !== "running") row.classList.remove("live");
    }
    if (liveJobs().length) setTimeout(poll, 2000);
  };
  setTimeout(poll, 2000);
}

// Services: stop and restart, and a service's log.
const services = $("#services");
if (services) {
  let stopFollowing = null;
  services.addEventListener("click", async (event) => {
    const action = event.target.closest("button.service-action");
    if (action) {
      const r = await api("POST", "/api/v1/services/" + seg(action.dataset.service) + "/" + action.dataset.action);
      if (r.ok) location.reload();
      else show($("#message"), r.message);
      return;
    }
    const logButton = event.target.closest("button.service-log");
    if (!logButton) return;
    if (stopFollowing) stopFollowing();
    const pre = $("#log"), name = logButton.dataset.service;
    pre.textContent = "";
    pre.hidden = false;
    show($("#service-log-title"), "Log of " + name);
    stopFollowing = follow(pre, "/api/v1/services/" + seg(name) + "/log", async () => {
      const response = await fetch("/api/v1/services");
      const row = response.ok ? (await response.json()).find((s) => s.name === name) : null;
      if (row) services.querySelector('tr[data-service="' + CSS.escape(name) + '"] .service-status').replaceChildren(statusBadge(row.status));
      return !row || row.status === "stopped" || row.status === "failed";
    });
  });
}
"""#

    static let style = """
        :root { --ink: #1d2330; --muted: #667085; --line: #e4e7ec; --accent: #3b6fd4; --bad: #c4321f; --bg: #f7f8fa; }
        * { box-sizing: border-box; }
        [hidden] { display: none !important; }
        body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--ink); background: var(--bg); }
        header { display: flex; align-items: center; gap: 24px; padding: 10px 24px; background: #fff; border-bottom: 1px solid var(--line); }
        header nav { display: flex; gap: 16px; flex: 1; }
        header a { color: var(--ink); text-decoration: none; }
        .brand { font-weight: 700; font-size: 16px; }
        .who { display: flex; gap: 8px; align-items: center; color: var(--muted); }
        main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }
        h1 { font-size: 22px; margin: 8px 0 12px; } h2 { font-size: 16px; margin: 24px 0 8px; }
        a { color: var(--accent); }
        .stats { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin-bottom: 16px; }
        .card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
        .stat { display: flex; flex-direction: column; text-decoration: none; color: var(--ink); }
        .stat b { font-size: 26px; } .stat span { color: var(--muted); } .stat.on { border-color: var(--accent); }
        .bar { display: flex; gap: 8px; align-items: center; }
        #search { flex: 1; padding: 8px 10px; border: 1px solid var(--line); border-radius: 6px; font-size: 14px; }
        .button, button { display: inline-block; padding: 7px 12px; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent);
          color: #fff; font: inherit; font-size: 13px; line-height: 18px; text-decoration: none; cursor: pointer; }
        button.danger { background: #fff; color: var(--bad); border-color: var(--bad); }
        button.more, .who button { background: #fff; color: var(--accent); }
        button:disabled { opacity: .5; cursor: default; }
        table.list { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
        table.list th, table.list td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
        table.list thead th { background: #f2f4f7; font-weight: 600; }
        table.compare tbody th { width: 200px; color: var(--muted); font-weight: 500; }
        table.facts th { text-align: left; color: var(--muted); font-weight: 500; padding-right: 16px; }
        .tag { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #e8eefb; color: var(--accent); vertical-align: middle; }
        .status { font-size: 12px; padding: 1px 8px; border-radius: 10px; background: #eef0f3; }
        .status.ready, .status.succeeded, .status.running { background: #e3f4e8; color: #1f7a3d; }
        .status.uploading, .status.queued, .status.starting { background: #fff4e0; color: #9a6400; }
        .status.failed, .status.cancelled, .status.stopped { background: #fde8e6; color: var(--bad); }
        .error { color: var(--bad); } .warning { color: #9a6400; } .note, .facts { color: var(--muted); }
        .form { display: flex; flex-direction: column; gap: 12px; max-width: 720px; }
        .form label { display: flex; flex-direction: column; gap: 4px; }
        .form input[type=text], .form input[type=password], .form select { padding: 7px 9px; border: 1px solid var(--line); border-radius: 6px; }
        .drop { border: 2px dashed var(--line); border-radius: 8px; padding: 28px; text-align: center; background: #fff; }
        .drop.over, .drop.chosen { border-color: var(--accent); }
        .progress { height: 10px; background: #e4e7ec; border-radius: 5px; overflow: hidden; }
        .progress .fill { height: 100%; width: 0; background: var(--accent); }
        pre.log { background: #10141c; color: #d0d5dd; padding: 12px; border-radius: 6px; max-height: 420px; overflow: auto; white-space: pre-wrap; }
        svg.lineage { background: #fff; border: 1px solid var(--line); border-radius: 8px; }
        svg.lineage .node rect { fill: #e8eefb; stroke: var(--accent); } svg.lineage .node.failed rect { fill: #fde8e6; stroke: var(--bad); }
        svg.lineage .node text { font-size: 13px; } svg.lineage .edge { fill: none; stroke: #98a2b3; stroke-width: 1.5; }
        svg.lineage .edge-label { font-size: 11px; fill: var(--muted); } svg.lineage marker path { fill: #98a2b3; }
        svg.chart { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
        svg.chart text { font-size: 12px; } svg.chart .value { fill: var(--muted); }
        code { font-size: 12px; }
        """
}
