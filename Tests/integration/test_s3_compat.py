"""Multipart versions on every S3 implementation (the s3api server, moto's and Ceph RGW, each
checking signatures): what the issue's "Done means" asks of them. A 40 MiB import, an interrupted import
finished with --resume (also after a --resume that failed), a 40 MiB cp through the mount: ready,
with no multipart upload left. A CompleteMultipartUpload that S3 carried out but whose answer was
lost ends ready; one answered 200 with an <Error> body ends failed with no object and no upload."""

import pytest

from helpers import bucket_state, make_file, sh, sha256_file, wait_for_parts, xattr
from test_faults import proxy  # noqa: F401 (a fixture)

pytestmark = pytest.mark.every_s3

MiB = 1 << 20
SIZE = 40 * MiB + 3  # five parts of 8 MiB and a short sixth


def is_complete(method, target, headers):
    return method == "POST" and "uploadId=" in target


def via(store, proxy, **extra):
    return store.env(MODELFS_ENDPOINT=proxy.endpoint, **extra)


def test_a_40mib_import_is_ready_and_byte_identical(s3store, name, tmp_path):
    model = name("compat")
    src = make_file(tmp_path / "w.safetensors", SIZE, seed=3)
    s3store.run("import", str(src), "--model", model, "--quiet")
    v = s3store.versions(model)["v1"]
    assert v["status"] == "ready" and v["size"] == SIZE and v["sha256"] == sha256_file(src)
    head = s3store.client().head_object(Bucket=s3store.bucket, Key=f"{model}/v1.safetensors")
    assert head["ETag"].strip('"').endswith("-6"), head["ETag"]  # a multipart object of six parts
    back = tmp_path / "back"
    s3store.run("download", model, "v1", "-o", str(back), "--quiet")
    assert sha256_file(back) == sha256_file(src)
    assert bucket_state(s3store, model) == ([f"{model}/v1.safetensors"], [])


def test_an_interrupted_import_finishes_with_resume_even_after_a_failed_resume(s3store, proxy, name, tmp_path):
    model = name("compat")
    src = make_file(tmp_path / "w.ckpt", SIZE, seed=4)
    proc = s3store.popen("import", str(src), "--model", model, "--quiet")
    try:
        wait_for_parts(s3store, 2, proc)
    finally:
        proc.kill()
        proc.wait()
    assert s3store.versions(model)["v1"]["status"] == "uploading"
    # A resume while object storage is down fails; it must leave something a later resume finishes.
    proxy.down("refuse")
    failed = s3store.run("import", str(src), "--model", model, "--resume", "--quiet", check=False,
                         env=via(s3store, proxy, MODELFS_S3_TIMEOUT="3"))
    assert failed.returncode != 0
    proxy.up()
    s3store.run("import", str(src), "--model", model, "--resume", "--quiet")
    v = s3store.versions(model)["v1"]
    assert v["status"] == "ready" and v["sha256"] == sha256_file(src)
    assert bucket_state(s3store, model) == ([f"{model}/v1.ckpt"], [])


def test_a_40mib_cp_through_the_mount_is_ready(s3store, name, tmp_path, mounts):
    model = name("compat")
    src = make_file(tmp_path / "w.zip", SIZE, seed=5)
    with mounts(s3store, "--cache-dir", "none") as m:
        sh("mkdir", m.p("models", model))
        target = m.p("models", model, "v1.zip")
        sh("cp", str(src), target)
        assert xattr(target, "status") == "ready"
        assert sha256_file(target) == sha256_file(src)
    assert s3store.versions(model)["v1"]["status"] == "ready"
    assert bucket_state(s3store, model) == ([f"{model}/v1.zip"], [])


def test_a_lost_answer_of_a_completion_s3_carried_out_ends_ready(s3store, proxy, name, tmp_path):
    model = name("compat")
    src = make_file(tmp_path / "w.pth", SIZE, seed=6)
    # Every completion's answer is lost (the server did it each time): only asking the bucket tells.
    proxy.configure(rate=1.0, kinds=("lost",), methods=("POST",), predicate=is_complete)
    out = s3store.run("import", str(src), "--model", model, "--quiet", env=via(s3store, proxy), check=False)
    faults = proxy.counters()["faults"].get("lost", 0)
    assert faults >= 1, "no completion was faulted"
    assert out.returncode == 0, out.stderr
    v = s3store.versions(model)["v1"]
    assert v["status"] == "ready" and v["sha256"] == sha256_file(src)
    assert bucket_state(s3store, model) == ([f"{model}/v1.pth"], [])


def test_a_200_answer_with_an_error_body_ends_failed_and_leaves_nothing(s3store, proxy, name, tmp_path):
    model = name("compat")
    src = make_file(tmp_path / "w.pth", SIZE, seed=7)
    proxy.configure(rate=1.0, kinds=("error200",), methods=("POST",), predicate=is_complete)
    out = s3store.run("import", str(src), "--model", model, "--quiet", env=via(s3store, proxy), check=False)
    assert proxy.counters()["faults"].get("error200", 0) >= 1
    assert out.returncode != 0 and "InternalError" in out.stderr, out.stderr
    v = s3store.versions(model)["v1"]
    assert v["status"] == "failed"
    assert bucket_state(s3store, model) == ([], [])
