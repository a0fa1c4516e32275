"""Evaluation through the mount: jobs/evaluate runs the mount's --eval-command (the example
evaluator), its metrics land on the version as xattrs, a training job may ask for its checkpoint
to be evaluated, `modelfs compare` and `versions --sort metric:` read them, an alias names the
winner and a job starts from the alias; metrics survive a remount and `recover`."""
import errno
import json
import os
import sys

import pytest

from helpers import sh, xattrs
from test_jobs import EVAL_COMMAND, JobMount, TRAINER, wait_status, wait_succeeded

# The registry is the same whatever S3 holds the bytes: on every S3 implementation the suite starts.
pytestmark = pytest.mark.every_s3


@pytest.fixture
def evaluating(store, tmp_path):
    with JobMount(store, tmp_path, eval_command=EVAL_COMMAND).start() as m:
        yield m


def seed_held_out(m, name):
    held_out = m.inputs / "held-out.jsonl"
    sh(sys.executable, TRAINER, "--make-dataset", str(held_out), "--records", "60", "--seed", "7")
    sh("cp", str(held_out), m.p("datasets", name + ".jsonl"))


def test_train_evaluate_compare_and_alias_the_winner(evaluating, name):
    m = evaluating
    model, dataset, test = name("tiny"), name("qa"), name("test")
    m.seed(model, dataset)
    seed_held_out(m, test)

    # The base, evaluated by hand through the control file.
    err, job = m.submit(f"model={model} version=v1 dataset={test}\n", control="evaluate")
    assert err == 0 and job == f"{model}-v1-eval-1"
    wait_succeeded(m.p(), job)
    log = open(m.p("jobs", job, "log")).read()
    assert "evaluated" in log and "metrics of" in log, log
    spec = json.load(open(m.p("jobs", job, "spec.json")))
    assert spec["kind"] == "evaluate" and spec["dataset"] == test

    v1 = xattrs(m.p("models", model, "v1.safetensors"))
    # (getfattr's text escapes the quotes; the raw value is plain JSON.)
    metrics = json.loads(os.getxattr(m.p("models", model, "v1.safetensors"), "user.modelfs.metrics"))
    assert set(metrics) == {"accuracy", "loss", "records"} and metrics["records"] == 60
    assert float(v1["user.modelfs.metric.accuracy"]) == metrics["accuracy"]
    assert v1["user.modelfs.metrics_dataset"] == test and v1["user.modelfs.metrics_job"] == job

    # Training that asks for its checkpoint to be evaluated on the held-out set.
    sh("bash", "-c", f'echo "model={model} version=v1 dataset={dataset} epochs=6 evaluate={test}" > "{m.p("jobs", "submit")}"')
    train = f"{model}-v1-ft-1"
    wait_succeeded(m.p(), train)
    spec = json.load(open(m.p("jobs", train, "spec.json")))
    assert spec["evaluate"] == test and "evaluate" not in spec["params"], "not a hyper-parameter"
    wait_succeeded(m.p(), train + "-eval")
    v2 = xattrs(m.p("models", model, "v2.safetensors"))
    assert v2["user.modelfs.metrics_dataset"] == test and v2["user.modelfs.metrics_job"] == train + "-eval"
    # Trained on the same kind of data, the classifier does better than its random start.
    assert float(v2["user.modelfs.metric.accuracy"]) > float(v1["user.modelfs.metric.accuracy"])

    # compare: side by side, as a table and as JSON.
    table = m.store.run("compare", model, "v1", "v2.safetensors", env=m.env).stdout
    assert f"accuracy ({test})" in table and "param epochs" in table and train in table, table
    out = json.loads(m.store.run("compare", model, "v1", "v2", "--json", env=m.env).stdout)
    a, b = out["versions"]
    assert a["name"] == "v1" and b["name"] == "v2" and b["lineage"] == {"parentVersion": "v1", "dataset": dataset, "job": train}
    assert b["params"] == {"epochs": "6"} and a.get("params") is None
    assert b["evaluations"][0]["dataset"] == test and b["evaluations"][0]["metrics"]["accuracy"] == float(v2["user.modelfs.metric.accuracy"])

    # versions --sort metric:accuracy --reverse: the best first.
    ranked = json.loads(m.store.run("versions", model, "--sort", "metric:accuracy", "--reverse", "--json", env=m.env).stdout)
    assert [r["name"] for r in ranked] == ["v2", "v1"]
    text = m.store.run("versions", model, "--sort", "metric:accuracy", env=m.env).stdout
    assert text.index("v1.safetensors") < text.index("v2.safetensors") and "accuracy=" in text

    # The winner gets the alias; a job starts from it and its spec names the version it resolved.
    os.symlink("v2.safetensors", m.p("models", model, "@production"))
    err, job = m.submit(f"model={model} version=@production dataset={test}\n", control="evaluate")
    assert err == 0 and job == f"{model}-v2-eval-1", job
    wait_succeeded(m.p(), job)
    assert json.load(open(m.p("jobs", job, "spec.json")))["version"] == "v2"
    assert m.store.run("compare", model, "@production", "v1", "--json", env=m.env).stdout.count('"@production"') == 1

    # Metrics survive a remount.
    before = xattrs(m.p("models", model, "v2.safetensors"))
    m.unmount()
    m.mount()
    after = xattrs(m.p("models", model, "v2.safetensors"))
    assert {k: v for k, v in after.items() if "metric" in k} == {k: v for k, v in before.items() if "metric" in k}


def test_bad_evaluation_requests_and_evaluators_say_why(store, tmp_path, name):
    broken = JobMount(store, tmp_path, eval_command="echo '{\"accuracy\": \"high\"}' > \"$MODELFS_METRICS_FILE\"")
    with broken.start():
        model, dataset = name("tiny"), name("qa")
        broken.seed(model, dataset)
        err, answer = broken.submit(f"model={model} version=v1 dataset={dataset} evaluate={dataset}\n", control="evaluate")
        assert err == errno.EINVAL and "training" in answer, answer
        err, answer = broken.submit(f"model={model} version=v7 dataset={dataset}\n", control="evaluate")
        assert err == errno.ENOENT and "v7" in answer, answer
        err, job = broken.submit(f"model={model} version=v1 dataset={dataset}\n", control="evaluate")
        assert err == 0
        assert wait_status(broken.p(), job, {"succeeded", "failed"}) == "failed"
        assert "metrics not stored" in open(broken.p("jobs", job, "log")).read()
        out = json.loads(broken.store.run("jobs", job, "--json", env=broken.env).stdout)
        assert "not one flat JSON object" in out["error"], out
        assert not any("metric" in k for k in xattrs(broken.p("models", model, "v1.safetensors")))

    # A mount without --eval-command refuses evaluations, and says which flag is missing.
    plain = JobMount(store, tmp_path / "plain")
    os.makedirs(tmp_path / "plain", exist_ok=True)
    with plain.start():
        err, answer = plain.submit(f"model={model} version=v1 dataset={dataset}\n", control="evaluate")
        assert err == errno.EINVAL and "--eval-command" in answer, answer
        err, answer = plain.submit(f"model={model} version=v1 dataset={dataset} evaluate={dataset}\n")
        assert err == errno.EINVAL and "--eval-command" in answer, answer


def test_recover_restores_metrics_owners_modes_and_aliases(evaluating, name, tmp_path, mounts):
    m = evaluating
    model, dataset = name("tiny"), name("qa")
    m.seed(model, dataset)
    err, job = m.submit(f"model={model} version=v1 dataset={dataset}\n", control="evaluate")
    assert err == 0
    wait_succeeded(m.p(), job)
    measured = json.loads(m.store.run("compare", model, "v1", "--json", env=m.env).stdout)["versions"][0]["evaluations"]
    # Owners and modes, and an alias, for recover to bring back too.
    d = m.p("models", model)
    os.chmod(d, 0o750)
    os.chown(d, 4242, 4343)
    os.chmod(os.path.join(d, "v1.safetensors"), 0o440)
    os.chown(m.p("datasets", dataset + ".jsonl"), 4242, -1)
    os.symlink("v1.safetensors", os.path.join(d, "@production"))
    m.unmount()
    # Into a new catalog file beside the bytes (the local store's blobs stay in the data dir).
    fresh = dict(m.env, MODELFS_DB=str(tmp_path / "recovered.db"))
    m.store.run("recover", env=fresh)
    again = json.loads(m.store.run("compare", model, "v1", "--json", env=fresh).stdout)["versions"][0]["evaluations"]
    assert again == measured and again[0]["dataset"] == dataset and again[0]["job"] == job
    row = [r for r in json.loads(m.store.run("models", "--json", env=fresh).stdout) if r["name"] == model][0]
    assert (row["uid"], row["gid"], row["mode"]) == (4242, 4343, "750")
    back = tmp_path / "back"
    os.makedirs(back)
    mounts(m.store, path=back, env=fresh)
    st = os.stat(os.path.join(back, "models", model, "v1.safetensors"))
    assert st.st_mode & 0o777 == 0o640, "its read bits, and its owner's write bit (the note)"
    assert os.stat(os.path.join(back, "datasets", dataset + ".jsonl")).st_uid == 4242
    assert os.readlink(os.path.join(back, "models", model, "@production")) == "v1.safetensors"
