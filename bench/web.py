#!/usr/bin/env python3
"""The store over HTTP at 1,000 models and 1,000 versions of one model (issue 24): what listing
and opening cost `modelfs web`, against the CLI on the same catalog in the same run.

The store is the embedded one (a local directory and SQLite). Its rows are made fast: the schema
and one model by the CLI, then 1,000 models and 1,000 versions of one model (each ready, a few
bytes: listing never reads a version's bytes) inserted into the catalog in one transaction, and a
few versions with real bytes imported by the CLI. Then, against one `modelfs web`:
  - `GET /api/v1/models`: the first page (100), and every page (1,000 models) following `Link`;
  - `GET /api/v1/models/{m}/versions` of the 1,000-version model: the first page and every page;
  - `GET /api/v1/stats`;
  - the HTML pages `/` and `/models/{m}` when the server has them (PAGES below: the hook the
    pages' branch fills);
each as the median wall time of the request on loopback, the server's CPU seconds per request
(/proc/PID/stat of the server, over all the repeats) and the bytes of the answer. The baselines:
`modelfs models --json` and `modelfs versions M --json` on the same catalog (a process each: its
start-up is part of what a script pays)."""
import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from common import free_port  # noqa: E402
MODELFS = os.environ.get("MODELFS_BIN") or os.path.join(ROOT, ".build/release/modelfs")
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TICKS = os.sysconf("SC_CLK_TCK")
BIG = "big-model"
# The HTML pages, measured as the API is (a model list's first page, a model's first page of versions).
PAGES = ["/", f"/models/{BIG}"]


def run(*cmd, env):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {p.stderr}")
    return p


def seed(env, catalog, models, versions):
    """`models` models and a model of `versions` versions, in the catalog the CLI made (a SQLite
    file, or a PostgreSQL URL)."""
    run(MODELFS, "model", "create", BIG, "--type", "text", env=env)
    now = time.time()
    uid, gid = os.getuid(), os.getgid()
    if catalog.startswith("postgresql://"):
        run("psql", catalog, "-q", "-v", "ON_ERROR_STOP=1", "-c", f"""
            INSERT INTO models (name, type, note, created, modified, owner_uid, owner_gid, mode)
              SELECT 'model-' || lpad(i::text, 4, '0'), (ARRAY['text', 'image', 'general'])[i % 3 + 1], '', {now}, {now}, {uid}, {gid}, 493
              FROM generate_series(0, {models - 2}) i;
            INSERT INTO versions (model_id, name, format, object_key, size, sha256, status, note, created, modified, owner_uid, owner_gid, mode)
              SELECT (SELECT id FROM models WHERE name = '{BIG}'), 'v' || i, 'zip', '{BIG}/v' || i || '.zip', 1000 + i,
                     lpad(to_hex(i), 64, '0'), 'ready', 'a note', {now}, {now}, {uid}, {gid}, 292
              FROM generate_series(1, {versions}) i;""", env=env)
        return
    db = sqlite3.connect(catalog)
    with db:
        big = db.execute("SELECT id FROM models WHERE name = ?", (BIG,)).fetchone()[0]
        db.executemany(
            "INSERT INTO models (name, type, note, created, modified, owner_uid, owner_gid, mode) VALUES (?, ?, '', ?, ?, ?, ?, 493)",
            [(f"model-{i:04d}", ("text", "image", "general")[i % 3], now, now, uid, gid) for i in range(models - 1)])
        db.executemany(
            "INSERT INTO versions (model_id, name, format, object_key, size, sha256, status, note, created, modified, owner_uid, owner_gid, mode) "
            "VALUES (?, ?, 'zip', ?, ?, ?, 'ready', 'a note', ?, ?, ?, ?, 292)",
            [(big, f"v{i}", f"{BIG}/v{i}.zip", 1000 + i, f"{i:064x}", now, now, uid, gid) for i in range(1, versions + 1)])
    db.close()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def get(base, path):
    """(status, headers, body) of a GET."""
    try:
        with HTTP.open(base + path, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def next_link(headers):
    link = headers.get("Link")
    return re.fullmatch(r'<([^>]+)>; rel="next"', link).group(1) if link else None


def walk(base, path):
    """Every page from `path`: (rows, pages, bytes)."""
    rows = pages = size = 0
    while path:
        status, headers, body = get(base, path)
        assert status == 200, (path, status, body[:500])
        rows += len(json.loads(body))
        pages += 1
        size += len(body)
        path = next_link(headers)
    return rows, pages, size


def measure(what, body, repeats, pid=None):
    """The median wall time of `body()` (which returns (bytes, note)), the server's CPU per call."""
    body()  # warm: the first answer pays for caches and connections
    before = cpu_seconds(pid) if pid else 0
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        size, note = body()
        times.append(time.perf_counter() - t)
    cpu = (cpu_seconds(pid) - before) / repeats if pid else None
    return {"what": what, "ms": statistics.median(times) * 1000, "cpu_ms": None if cpu is None else cpu * 1000, "bytes": size, "note": note}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="5 repeats")
    ap.add_argument("--postgres", action="store_true", help="the catalog on a PostgreSQL server started here (scripts/pg-server)")
    ap.add_argument("--before", metavar="BIN", help="also time this modelfs's `models --json` and `versions --json` (main's, say)")
    args = ap.parse_args()
    repeats = 5 if args.quick else args.repeats

    top = tempfile.mkdtemp(prefix="modelfs-bench-web-")
    env = dict(os.environ, MODELFS_DATA_DIR=os.path.join(top, "data"))
    env.pop("MODELFS_BUCKET", None)
    env.pop("MODELFS_CATALOG", None)
    pg_state = os.path.join(top, "pg")
    os.chmod(top, 0o755)  # the postgres user enters it (scripts/pg-server runs the server as postgres when root)
    try:
        if args.postgres:
            exports = run(os.path.join(ROOT, "scripts", "pg-server"), "start", pg_state, env=env).stdout
            server_url = re.search(r"MODELFS_TEST_PG_URL=(\S+)", exports).group(1)
            run("psql", server_url, "-q", "-c", "CREATE DATABASE bench_web", env=env)
            env["MODELFS_CATALOG"] = server_url.rsplit("/", 1)[0] + "/bench_web"
        seed(env, env.get("MODELFS_CATALOG") or os.path.join(top, "data", "catalog.db"), args.models, args.versions)
        assert len(json.loads(run(MODELFS, "models", "--json", env=env).stdout)) == args.models
        bench(args, env, top, repeats)
    finally:
        if args.postgres:
            subprocess.run([os.path.join(ROOT, "scripts", "pg-server"), "stop", pg_state], capture_output=True)


def bench(args, env, top, repeats):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(top, "web.log"), "w")
    server = subprocess.Popen([MODELFS, "web", "--listen", f"127.0.0.1:{port}"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if get(base, "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit(f"modelfs web did not start: {open(log.name).read()}")
            time.sleep(0.1)

        def page(path):
            def body():
                status, _, answer = get(base, path)
                assert status == 200, (path, status)
                return len(answer), f"{len(json.loads(answer))} rows"
            return body

        def pages(path):
            def body():
                rows, n, size = walk(base, path)
                return size, f"{rows} rows in {n} pages"
            return body

        def cli(*cmd, binary=MODELFS):
            def body():
                out = run(binary, *cmd, env=env).stdout
                return len(out), f"{len(json.loads(out))} rows"
            return body

        rows = [
            measure("GET /api/v1/models (first page)", page("/api/v1/models"), repeats, server.pid),
            measure("GET /api/v1/models (all pages, limit=1000)", pages("/api/v1/models?limit=1000"), repeats, server.pid),
            measure("GET /api/v1/models (all pages of 100)", pages("/api/v1/models"), repeats, server.pid),
            measure("modelfs models --json (baseline)", cli("models", "--json"), repeats),
            measure(f"GET …/{BIG}/versions (first page)", page(f"/api/v1/models/{BIG}/versions"), repeats, server.pid),
            measure(f"GET …/{BIG}/versions (all pages of 100)", pages(f"/api/v1/models/{BIG}/versions"), repeats, server.pid),
            measure(f"modelfs versions {BIG} --json (baseline)", cli("versions", BIG, "--json"), repeats),
            measure("GET /api/v1/stats", lambda: (len(get(base, "/api/v1/stats")[2]), "counts"), repeats, server.pid),
        ]
        if args.before:
            rows += [measure("modelfs models --json (--before)", cli("models", "--json", binary=args.before), repeats),
                     measure(f"modelfs versions {BIG} --json (--before)", cli("versions", BIG, "--json", binary=args.before), repeats)]
        for path in PAGES:
            status, _, _ = get(base, path)
            if status != 200:
                rows.append({"what": f"GET {path} (HTML)", "ms": None, "cpu_ms": None, "bytes": None, "note": f"not served here ({status})"})
                continue
            rows.append(measure(f"GET {path} (HTML)", lambda path=path: (len(get(base, path)[2]), "html"), repeats, server.pid))
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    print(f"modelfs web at {args.models} models and a model of {args.versions} versions ({'PostgreSQL' if args.postgres else 'SQLite'}, local store); "
          f"median of {repeats}; server CPU per request from /proc")
    baseline = {"models": rows[3]["ms"], "versions": rows[6]["ms"]}
    print(f"{'what':48} {'ms':>9} {'server CPU ms':>14} {'bytes':>10} {'vs CLI':>7}  rows")
    for r in rows:
        if r["ms"] is None:
            print(f"{r['what']:48} {'-':>9} {'-':>14} {'-':>10} {'-':>7}  {r['note']}")
            continue
        against = baseline["versions"] if "versions" in r["what"] else baseline["models"] if "models" in r["what"] else None
        ratio = f"{r['ms'] / against:.2f}" if against and "baseline" not in r["what"] else "-"
        cpu = f"{r['cpu_ms']:.1f}" if r["cpu_ms"] is not None else "-"
        print(f"{r['what']:48} {r['ms']:9.1f} {cpu:>14} {r['bytes']:>10} {ratio:>7}  {r['note']}")


if __name__ == "__main__":
    main()
