"""`modelfs mount --metrics ADDR`: Prometheus' text exposition at http://ADDR/metrics, scraped with
urllib while `cp`, `cat` and a refused `rm` go through a real mount. Counters must move by what
those did: one upload ready, the file's bytes read, one EPERM refusal of unlink. Reads go through
the daemon (`--passthrough off`): bytes the kernel reads through passthrough never reach it."""
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from helpers import free_port, make_file, sh, sha256_file

MiB = 1 << 20


def scrape(port):
    """The exposition as {series: value}, e.g. {'modelfs_uploads_total{kind="version",outcome="ready"}': 1.0}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def moved(before, after, series):
    return after.get(series, 0) - before.get(series, 0)


def test_metrics_count_what_the_mount_did(store, mounts, name, tmp_path):
    src = tmp_path / "w.pt"
    make_file(src, 6 * MiB + 123)
    size = src.stat().st_size
    port = free_port()
    m = mounts(store, "--metrics", f"127.0.0.1:{port}", "--passthrough", "off")
    before = scrape(port)

    model_name = name()
    model = m.p("models", model_name)
    sh("mkdir", model)
    sh("cp", str(src), model + "/v1.pt")
    after_cp = scrape(port)
    assert moved(before, after_cp, 'modelfs_uploads_total{kind="version",outcome="ready"}') == 1
    assert after_cp["modelfs_uploads_in_flight"] == 0
    assert moved(before, after_cp, 'modelfs_fuse_requests_total{op="create"}') == 1
    assert moved(before, after_cp, 'modelfs_fuse_requests_total{op="write"}') >= 1
    assert moved(before, after_cp, 'modelfs_fuse_request_seconds_count{op="write"}') >= 1
    assert moved(before, after_cp, "modelfs_catalog_transaction_seconds_count") >= 3  # mkdir, create, ready

    # The last ready version of a model cannot be removed: EPERM, counted once under unlink.
    refused = subprocess.run(["rm", model + "/v1.pt"], capture_output=True, text=True)
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr
    after_rm = scrape(port)
    assert moved(after_cp, after_rm, 'modelfs_fuse_errors_total{op="unlink",errno="EPERM"}') == 1
    m.unmount()

    # A new mount (its counters from zero, no page cache of the file): a cold read, then a scrape.
    m2 = mounts(store, "--metrics", f"127.0.0.1:{port}", "--passthrough", "off", path=tmp_path / "mnt2")
    assert sha256_file(m2.p("models", model_name, "v1.pt")) == sha256_file(src)
    after_cat = scrape(port)
    assert after_cat['modelfs_read_bytes_total{source="object_store"}'] >= size
    assert after_cat['modelfs_fuse_requests_total{op="read"}'] >= 1
    assert after_cat['modelfs_fuse_requests_total{op="open"}'] >= 1
    assert after_cat['modelfs_fuse_request_seconds_count{op="read"}'] == after_cat['modelfs_fuse_requests_total{op="read"}']
    if store.kind == "s3":  # the block cache looked for blocks and did not have them
        assert after_cat['modelfs_cache_lookups_total{cache="memory",result="miss"}'] >= 1

    # Only GET /metrics.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
    assert e.value.code == 404


def test_a_bad_metrics_address_refuses_the_mount(store, mounts, tmp_path):
    m = mounts(store, "--metrics", "localhost:9464", check=False)
    assert m.result.returncode != 0
    assert "--metrics localhost:9464" in m.result.stderr and "IPv4" in m.result.stderr
    # A port another process listens on: the mount says so and does not start.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        m = mounts(store, "--metrics", f"127.0.0.1:{port}", path=tmp_path / "mnt2", check=False)
        assert m.result.returncode != 0
        assert "Address already in use" in m.result.stderr + m.result.stdout
