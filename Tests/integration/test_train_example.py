"""scripts/train_example.py, the example trainer that modelfs jobs run: plain files in tmp_path,
no mount and no store (none of conftest's fixtures), the trainer started the way the job runner
starts it: no arguments, everything through MODELFS_* environment variables."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

TRAINER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../scripts/train_example.py")
TENSORS = {"w1", "b1", "w2", "b2"}
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+) loss (\S+)")


def helper(*args):
    p = subprocess.run([sys.executable, TRAINER, *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Base weights and a dataset made once by the trainer's own --init and --make-dataset."""
    d = tmp_path_factory.mktemp("train_example")
    helper("--init", str(d / "v1.safetensors"), "--inputs", "128", "--hidden", "8", "--classes", "2", "--seed", "1")
    helper("--make-dataset", str(d / "reviews.jsonl"), "--records", "150", "--seed", "2")
    return d


@pytest.fixture
def inputs(pristine, tmp_path):
    """Fresh copies of the base weights and dataset, and an empty output dir, in tmp_path."""
    base, data, out = tmp_path / "v1.safetensors", tmp_path / "reviews.jsonl", tmp_path / "out"
    shutil.copyfile(pristine / base.name, base)
    shutil.copyfile(pristine / data.name, data)
    out.mkdir()
    return {"base": base, "data": data, "out": out, "tmp": tmp_path}


def trainer_env(inputs, params=None, drop=(), **overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFS_")}
    params_path = inputs["tmp"] / "params.json"
    params_path.write_text(json.dumps(params if params is not None else {"epochs": "4", "lr": "0.5"}))
    env.update({
        "MODELFS_MODEL_PATH": str(inputs["base"]),
        "MODELFS_DATASET_PATH": str(inputs["data"]),
        "MODELFS_OUTPUT_DIR": str(inputs["out"]),
        "MODELFS_PARAMS": str(params_path),
        "MODELFS_JOB_ID": "job-42",
        "MODELFS_MODEL": "sentiment",
        "MODELFS_VERSION": "v1",
        "MODELFS_DATASET": "reviews",
    })
    env.update(overrides)
    for name in drop:
        env.pop(name, None)
    return env


def run_trainer(inputs, params=None, drop=(), **overrides):
    return subprocess.run([sys.executable, TRAINER], env=trainer_env(inputs, params, drop, **overrides),
                          capture_output=True, text=True, timeout=60)


def losses(stdout):
    return [float(m.group(3)) for m in map(EPOCH_LINE.match, stdout.splitlines()) if m]


def contents(path):
    """Tensors and metadata of a safetensors file (its bytes are not stable: the header's key
    order varies from one write to the next)."""
    with safe_open(str(path), "np") as f:
        return f.metadata(), {n: f.get_tensor(n) for n in f.keys()}


def same_contents(a, b):
    (meta_a, ta), (meta_b, tb) = contents(a), contents(b)
    return meta_a == meta_b and set(ta) == set(tb) and all(
        ta[n].dtype == tb[n].dtype and np.array_equal(ta[n], tb[n]) for n in ta)


def checkpoints(inputs):
    return sorted(p.name for p in inputs["out"].iterdir() if p.name.endswith(".safetensors"))


def test_trains_and_writes_a_checkpoint(inputs):
    p = run_trainer(inputs, {"epochs": "4", "lr": "0.5", "unused": "x"})
    assert p.returncode == 0, p.stderr
    epochs = [m.groups()[:2] for m in map(EPOCH_LINE.match, p.stdout.splitlines()) if m]
    assert epochs == [(str(i), "4") for i in range(1, 5)], p.stdout
    loss = losses(p.stdout)
    assert all(np.isfinite(loss)) and loss[-1] < loss[0], loss
    assert "unused" in p.stderr  # unknown parameters are reported, not fatal

    assert checkpoints(inputs) == ["checkpoint.safetensors"]
    ckpt_path = inputs["out"] / "checkpoint.safetensors"
    base, ckpt = load_file(str(inputs["base"])), load_file(str(ckpt_path))
    assert set(base) == set(ckpt) == TENSORS
    for name in TENSORS:
        assert ckpt[name].shape == base[name].shape and ckpt[name].dtype == np.float32
    assert any(not np.array_equal(base[n], ckpt[n]) for n in TENSORS)

    with safe_open(str(ckpt_path), "np") as f:
        meta = f.metadata()
    assert meta["base"] == "v1" and meta["dataset"] == "reviews" and meta["epochs"] == "4"
    assert meta["model"] == "sentiment" and meta["job"] == "job-42" and meta["records"] == "150"
    assert float(meta["loss"]) == pytest.approx(loss[-1], abs=1e-4)


def test_training_is_deterministic(inputs):
    ckpt, first = inputs["out"] / "checkpoint.safetensors", inputs["tmp"] / "first.safetensors"
    assert run_trainer(inputs).returncode == 0
    ckpt.rename(first)
    assert run_trainer(inputs).returncode == 0
    assert same_contents(ckpt, first)


def test_helpers_are_seeded(tmp_path):
    for i in (1, 2):
        helper("--init", str(tmp_path / f"w{i}.safetensors"), "--inputs", "64", "--hidden", "4", "--classes", "3")
        helper("--make-dataset", str(tmp_path / f"d{i}.jsonl"), "--records", "20", "--classes", "3")
    assert same_contents(tmp_path / "w1.safetensors", tmp_path / "w2.safetensors")
    assert (tmp_path / "d1.jsonl").read_bytes() == (tmp_path / "d2.jsonl").read_bytes()
    w = load_file(str(tmp_path / "w1.safetensors"))
    assert {n: w[n].shape for n in w} == {"w1": (64, 4), "b1": (4,), "w2": (4, 3), "b2": (3,)}
    records = [json.loads(line) for line in (tmp_path / "d1.jsonl").read_text().splitlines()]
    assert len(records) == 20 and all(isinstance(r["text"], str) and r["label"] in (0, 1, 2) for r in records)


def test_multiclass_with_extra_fields_and_defaults(inputs):
    helper("--init", str(inputs["base"]), "--inputs", "64", "--hidden", "8", "--classes", "3")
    helper("--make-dataset", str(inputs["data"]), "--records", "90", "--classes", "3")
    with open(inputs["data"], "a") as f:
        f.write("\n")  # blank lines are skipped
        f.write(json.dumps({"text": "topic2word1 topic2word3", "label": 2, "source": "x", "score": [1]}) + "\n")
    p = run_trainer(inputs, drop=("MODELFS_PARAMS", "MODELFS_VERSION", "MODELFS_DATASET"))
    assert p.returncode == 0, p.stderr
    assert len(losses(p.stdout)) == 3  # default epochs
    with safe_open(str(inputs["out"] / "checkpoint.safetensors"), "np") as f:
        meta = f.metadata()
    assert meta["base"] == "v1" and meta["dataset"] == "reviews.jsonl" and meta["records"] == "91"


def test_fail_param_exits_2_without_a_checkpoint(inputs):
    p = run_trainer(inputs, {"epochs": "3", "fail": "1"})
    assert p.returncode == 2, p.stderr
    assert len(losses(p.stdout)) == 1  # the first epoch ran and was logged
    assert "fail" in p.stderr
    assert checkpoints(inputs) == [] and list(inputs["out"].iterdir()) == []


@pytest.mark.parametrize("var", ["MODELFS_MODEL_PATH", "MODELFS_DATASET_PATH", "MODELFS_OUTPUT_DIR"])
def test_missing_env_var(inputs, var):
    p = run_trainer(inputs, drop=(var,))
    assert p.returncode != 0
    assert var in p.stderr and "not set" in p.stderr
    assert checkpoints(inputs) == []


def test_malformed_dataset_line(inputs):
    lines = inputs["data"].read_text().splitlines()
    lines.insert(2, '{"text": "good great", "label": 1')  # line 3: truncated JSON
    inputs["data"].write_text("\n".join(lines) + "\n")
    p = run_trainer(inputs)
    assert p.returncode == 1
    assert "line 3" in p.stderr and "malformed JSON" in p.stderr and str(inputs["data"]) in p.stderr
    assert checkpoints(inputs) == []


@pytest.mark.parametrize("line, message", [
    ('{"label": 1}', 'field "text" must be a string'),
    ('{"text": "fine", "label": "1"}', 'field "label" must be an integer'),
    ('{"text": "fine", "label": 7}', "label 7 is out of range"),
    ('[1, 2]', "expected a JSON object"),
])
def test_invalid_records(inputs, line, message):
    with open(inputs["data"], "a") as f:
        f.write(line + "\n")
    p = run_trainer(inputs)
    assert p.returncode == 1 and message in p.stderr and "line 151" in p.stderr, p.stderr


def test_empty_dataset(inputs):
    inputs["data"].write_text("\n\n")
    p = run_trainer(inputs)
    assert p.returncode == 1 and "empty" in p.stderr
    assert checkpoints(inputs) == []


@pytest.mark.parametrize("tensors, message", [
    ({"w1": (128, 8), "b1": (8,), "w2": (9, 2), "b2": (2,)}, "bad tensor shapes"),
    ({"w1": (128, 8), "b1": (8,), "w2": (8, 1), "b2": (1,)}, "classes >= 2"),
    ({"w1": (128, 8), "b1": (8,), "w2": (8, 2)}, "missing b2"),
    ({"w1": (128, 8), "b1": (8,), "w2": (8, 2), "b2": (2,), "extra": (3,)}, "unexpected extra"),
])
def test_bad_weights(inputs, tensors, message):
    save_file({n: np.zeros(s, dtype=np.float32) for n, s in tensors.items()}, str(inputs["base"]))
    p = run_trainer(inputs)
    assert p.returncode == 1 and message in p.stderr, p.stderr
    assert checkpoints(inputs) == []


def test_bad_weights_dtype_and_file(inputs):
    w = load_file(str(inputs["base"]))
    w["b1"] = w["b1"].astype(np.float64)
    save_file(w, str(inputs["base"]))
    p = run_trainer(inputs)
    assert p.returncode == 1 and "expected float32" in p.stderr, p.stderr
    inputs["base"].write_bytes(b"not a safetensors file")
    p = run_trainer(inputs)
    assert p.returncode == 1 and "not a valid safetensors file" in p.stderr, p.stderr


@pytest.mark.parametrize("params, message", [
    ({"epochs": "zero"}, "parameter epochs"),
    ({"epochs": "0"}, "parameter epochs"),
    ({"lr": "-1"}, "parameter lr"),
    ({"lr": "nan"}, "parameter lr"),
    ({"fail": "yes"}, "parameter fail"),
    (["epochs", "3"], "JSON object"),
])
def test_bad_params(inputs, params, message):
    p = run_trainer(inputs, params)
    assert p.returncode == 1 and message in p.stderr, p.stderr


def test_log_is_live_and_a_cancelled_run_leaves_no_checkpoint(inputs):
    """sleep=N: the first epoch line arrives while the trainer still runs (stdout is flushed per
    line); killing it then, as a cancel does, leaves nothing in the output dir."""
    env = trainer_env(inputs, {"epochs": "5", "sleep": "2"})
    proc = subprocess.Popen([sys.executable, TRAINER], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        started = time.monotonic()
        line = proc.stdout.readline()
        while line and not EPOCH_LINE.match(line):
            line = proc.stdout.readline()
        assert EPOCH_LINE.match(line) and line.startswith("epoch 1/5"), line
        assert proc.poll() is None and time.monotonic() - started < 8
        proc.terminate()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode != 0
    assert list(inputs["out"].iterdir()) == []
