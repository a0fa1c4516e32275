#!/usr/bin/env python3
"""Example trainer for modelfs jobs: a tiny bag-of-words text classifier trained with numpy.

modelfs runs this as a job's training command, with NO arguments; everything comes through
environment variables (never through a shell string):

    MODELFS_MODEL_PATH    required  base weights, a .safetensors file (read through the mount)
    MODELFS_DATASET_PATH  required  dataset, a .jsonl file (read through the mount)
    MODELFS_OUTPUT_DIR    required  existing directory; every *.safetensors file left there becomes
                                    a new version of the model once the job succeeds
    MODELFS_PARAMS        optional  path of a JSON object of hyper-parameters (values are strings;
                                    JSON numbers are accepted too); unset or empty: all defaults
    MODELFS_JOB_ID, MODELFS_MODEL, MODELFS_VERSION, MODELFS_DATASET
                          optional  names, used in the log and in the checkpoint's metadata

Hyper-parameters (MODELFS_PARAMS), unknown keys are reported and ignored:

    epochs      "3"     number of passes over the dataset (integer >= 1)
    lr          "0.5"   learning rate of the mini-batch gradient descent (> 0)
    batch_size  "32"    records per gradient step (integer >= 1)
    seed        "0"     seed of the per-epoch shuffle (the run is deterministic for a given seed)
    fail        "0"     "1": exit 2 right after the first epoch, writing nothing (tests of failed jobs)
    sleep       "0"     seconds to sleep after each epoch (tests that cancel a running job)

The model, stored as four float32 tensors in the base file (and in the checkpoint, same names,
shapes and dtype; any other tensor name is an error):

    w1  [inputs, hidden]   b1  [hidden]        hidden = tanh(x @ w1 + b1)
    w2  [hidden, classes]  b2  [classes]       p = softmax(hidden @ w2 + b2),  classes >= 2

The dataset: one JSON object per line, blank lines skipped, extra fields ignored:

    {"text": "a short review, any string", "label": 1}

"label" is an integer class in [0, classes). Featurization is deterministic: the lower-cased text
is split into word tokens (\\w+), each token is hashed (blake2b) into one of `inputs` buckets with
a sign (the hashing trick), and the count vector is L2-normalized.

Training: `epochs` epochs of mini-batch gradient descent on the mean cross-entropy, with hand-written
gradients. After each epoch one line goes to stdout (flushed, so the job log grows live):

    epoch 1/3 loss 0.6931 acc 0.512

(loss and accuracy over the whole dataset with the weights at the end of that epoch). On success
the weights go to MODELFS_OUTPUT_DIR/checkpoint.safetensors (written to a temporary name first,
then renamed, so a killed run never leaves a half-written checkpoint) with string metadata:
base, model, dataset, job, epochs, lr, batch_size, seed, records, loss, trainer.

Exit status: 0 success; 1 missing or invalid input (message on stderr: a missing environment
variable, unreadable or malformed weights, bad tensor names/shapes/dtypes, an empty or malformed
dataset, a bad parameter, a diverged loss); 2 the simulated failure of fail=1.

Two helper modes create inputs without any download (seeded, so deterministic):

    train_example.py --init OUT.safetensors [--inputs 256 --hidden 16 --classes 2 --seed 0]
    train_example.py --make-dataset OUT.jsonl [--records 200 --classes 2 --seed 0]

Quick start without a mount:

    python3 scripts/train_example.py --init /tmp/base.safetensors
    python3 scripts/train_example.py --make-dataset /tmp/data.jsonl
    mkdir -p /tmp/out && echo '{"epochs": "5", "lr": "0.5"}' > /tmp/params.json
    MODELFS_MODEL_PATH=/tmp/base.safetensors MODELFS_DATASET_PATH=/tmp/data.jsonl \\
    MODELFS_OUTPUT_DIR=/tmp/out MODELFS_PARAMS=/tmp/params.json python3 scripts/train_example.py
"""
import argparse
import hashlib
import json
import math
import os
import re
import sys
import time

import numpy as np
from safetensors.numpy import load as st_load, save as st_save

TRAINER = "modelfs-train-example"
CHECKPOINT = "checkpoint.safetensors"
TENSORS = ("w1", "b1", "w2", "b2")
DEFAULTS = {"epochs": "3", "lr": "0.5", "batch_size": "32", "seed": "0", "fail": "0", "sleep": "0"}
TOKEN = re.compile(r"\w+")


class InputError(Exception):
    """A missing or invalid input: reported on stderr, exit 1."""


def log(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------- inputs

def require_env(name):
    value = os.environ.get(name, "")
    if not value:
        raise InputError(f"environment variable {name} is not set")
    return value


def parse_params(path):
    """The hyper-parameters, validated, as Python values."""
    raw = {}
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except OSError as e:
            raise InputError(f"MODELFS_PARAMS: cannot read {path}: {e.strerror or e}")
        except (ValueError, UnicodeDecodeError) as e:
            raise InputError(f"MODELFS_PARAMS: {path} is not valid JSON: {e}")
        if not isinstance(raw, dict):
            raise InputError(f"MODELFS_PARAMS: {path} must hold a JSON object, not {type(raw).__name__}")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        print(f"train_example: ignoring unknown parameters: {', '.join(unknown)}", file=sys.stderr, flush=True)
    merged = {**DEFAULTS, **{k: v for k, v in raw.items() if k in DEFAULTS}}

    def number(key, kind, minimum, strict=False):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InputError(f"parameter {key}: expected a {kind.__name__} as a string, got {value!r}")
        try:
            parsed = kind(str(value).strip())
        except ValueError:
            raise InputError(f"parameter {key}: {value!r} is not a valid {kind.__name__}")
        if not math.isfinite(parsed) or parsed < minimum or (strict and parsed == minimum):
            bound = f"> {minimum}" if strict else f">= {minimum}"
            raise InputError(f"parameter {key}: {value!r} must be {bound}")
        return parsed

    params = {
        "epochs": number("epochs", int, 1),
        "lr": number("lr", float, 0.0, strict=True),
        "batch_size": number("batch_size", int, 1),
        "seed": number("seed", int, 0),
        "sleep": number("sleep", float, 0.0),
    }
    fail = str(merged["fail"]).strip()
    if fail not in ("0", "1", ""):
        raise InputError(f"parameter fail: {merged['fail']!r} must be \"0\" or \"1\"")
    params["fail"] = fail == "1"
    return params


def load_weights(path):
    """The four tensors of the base file, checked, as float64 arrays for training."""
    try:
        with open(path, "rb") as f:  # read(), not mmap: works the same through any FUSE mount
            data = f.read()
    except OSError as e:
        raise InputError(f"cannot read weights {path}: {e.strerror or e}")
    try:
        tensors = st_load(data)
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise InputError(f"{path} is not a valid safetensors file: {e}")
    names = set(tensors)
    if names != set(TENSORS):
        missing, extra = sorted(set(TENSORS) - names), sorted(names - set(TENSORS))
        detail = "; ".join(x for x in (missing and f"missing {', '.join(missing)}",
                                       extra and f"unexpected {', '.join(extra)}") if x)
        raise InputError(f"{path}: expected exactly the tensors {', '.join(TENSORS)} ({detail})")
    for name in TENSORS:
        if tensors[name].dtype != np.float32:
            raise InputError(f"{path}: tensor {name} is {tensors[name].dtype}, expected float32")
    w1, b1, w2, b2 = (tensors[n] for n in TENSORS)
    shapes = ", ".join(f"{n} {list(tensors[n].shape)}" for n in TENSORS)
    if w1.ndim != 2 or w2.ndim != 2 or b1.ndim != 1 or b2.ndim != 1:
        raise InputError(f"{path}: bad tensor shapes ({shapes}); expected w1 [inputs, hidden], "
                         "b1 [hidden], w2 [hidden, classes], b2 [classes]")
    inputs, hidden = w1.shape
    if b1.shape != (hidden,) or w2.shape[0] != hidden or b2.shape != (w2.shape[1],):
        raise InputError(f"{path}: bad tensor shapes ({shapes}); expected w1 [inputs, hidden], "
                         "b1 [hidden], w2 [hidden, classes], b2 [classes]")
    if inputs < 1 or hidden < 1 or w2.shape[1] < 2:
        raise InputError(f"{path}: bad tensor shapes ({shapes}); need inputs >= 1, hidden >= 1, classes >= 2")
    for name in TENSORS:
        if not np.all(np.isfinite(tensors[name])):
            raise InputError(f"{path}: tensor {name} holds NaN or infinite values")
    return {n: tensors[n].astype(np.float64) for n in TENSORS}


class Featurizer:
    """The hashing trick: token -> (bucket, sign), memoized; text -> sparse L2-normalized counts."""

    def __init__(self, inputs):
        self.inputs = inputs
        self.cache = {}

    def bucket(self, token):
        hit = self.cache.get(token)
        if hit is None:
            h = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
            hit = self.cache[token] = (h % self.inputs, 1.0 if (h >> 63) & 1 else -1.0)
        return hit

    def __call__(self, text):
        counts = {}
        for token in TOKEN.findall(text.lower()):
            index, sign = self.bucket(token)
            counts[index] = counts.get(index, 0.0) + sign
        counts = {i: v for i, v in counts.items() if v != 0.0}
        norm = math.sqrt(sum(v * v for v in counts.values())) or 1.0
        return list(counts), [v / norm for v in counts.values()]


def load_dataset(path, featurize, classes):
    """The records as CSR-style sparse features plus integer labels."""
    indptr, indices, values, labels = [0], [], [], []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read dataset {path}: {e.strerror or e}")
    with f:
        lineno = 0
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as e:
                    raise InputError(f"dataset {path} line {lineno}: malformed JSON: {e}")
                if not isinstance(record, dict):
                    raise InputError(f"dataset {path} line {lineno}: expected a JSON object, "
                                     f"got {type(record).__name__}")
                text, label = record.get("text"), record.get("label")
                if not isinstance(text, str):
                    raise InputError(f"dataset {path} line {lineno}: field \"text\" must be a string")
                if isinstance(label, bool) or not isinstance(label, int):
                    raise InputError(f"dataset {path} line {lineno}: field \"label\" must be an integer, "
                                     f"got {label!r}")
                if not 0 <= label < classes:
                    raise InputError(f"dataset {path} line {lineno}: label {label} is out of range "
                                     f"[0, {classes}) for a model with {classes} classes")
                idx, val = featurize(text)
                indices.extend(idx)
                values.extend(val)
                indptr.append(len(indices))
                labels.append(label)
        except UnicodeDecodeError as e:
            raise InputError(f"dataset {path} line {lineno + 1}: not valid UTF-8: {e}")
        except OSError as e:
            raise InputError(f"cannot read dataset {path}: {e.strerror or e}")
    if not labels:
        raise InputError(f"dataset {path} is empty: no records")
    return (np.array(indptr, dtype=np.int64), np.array(indices, dtype=np.int64),
            np.array(values, dtype=np.float64), np.array(labels, dtype=np.int64))


def densify(data, rows, inputs):
    """The dense feature matrix of the given record numbers."""
    indptr, indices, values, _ = data
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    x = np.zeros((len(rows), inputs))
    if lengths.sum():
        row_of = np.repeat(np.arange(len(rows)), lengths)
        pos = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
        np.add.at(x, (row_of, indices[pos]), values[pos])
    return x


# ----------------------------------------------------------------------------- the model

def forward(w, x):
    hidden = np.tanh(x @ w["w1"] + w["b1"])
    logits = hidden @ w["w2"] + w["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return hidden, probs


def cross_entropy(probs, y):
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(y)), y], 1e-12))))


def step(w, x, y, lr):
    """One gradient descent step on the mean cross-entropy of the batch (x, y)."""
    hidden, probs = forward(w, x)
    dlogits = probs
    dlogits[np.arange(len(y)), y] -= 1.0
    dlogits /= len(y)
    dhidden = (dlogits @ w["w2"].T) * (1.0 - hidden * hidden)
    grads = {"w2": hidden.T @ dlogits, "b2": dlogits.sum(axis=0),
             "w1": x.T @ dhidden, "b1": dhidden.sum(axis=0)}
    for name in TENSORS:
        w[name] -= lr * grads[name]


def evaluate(w, data, inputs, chunk=1024):
    labels = data[3]
    loss, correct = 0.0, 0
    for start in range(0, len(labels), chunk):
        rows = np.arange(start, min(start + chunk, len(labels)))
        _, probs = forward(w, densify(data, rows, inputs))
        loss += cross_entropy(probs, labels[rows]) * len(rows)
        correct += int((probs.argmax(axis=1) == labels[rows]).sum())
    return loss / len(labels), correct / len(labels)


def write_safetensors(path, tensors, metadata):
    """tensors as float32, written under a temporary name, fsynced, then renamed into place."""
    blob = st_save({n: np.ascontiguousarray(tensors[n], dtype=np.float32) for n in TENSORS}, metadata=metadata)
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.partial")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ----------------------------------------------------------------------------- modes

def train():
    model_path = require_env("MODELFS_MODEL_PATH")
    dataset_path = require_env("MODELFS_DATASET_PATH")
    output_dir = require_env("MODELFS_OUTPUT_DIR")
    if not os.path.isdir(output_dir):
        raise InputError(f"MODELFS_OUTPUT_DIR {output_dir} is not an existing directory")
    params = parse_params(os.environ.get("MODELFS_PARAMS", ""))
    job = os.environ.get("MODELFS_JOB_ID", "")
    model = os.environ.get("MODELFS_MODEL", "")
    base = os.environ.get("MODELFS_VERSION") or os.path.splitext(os.path.basename(model_path))[0]
    dataset = os.environ.get("MODELFS_DATASET") or os.path.basename(dataset_path)

    w = load_weights(model_path)
    inputs, hidden = w["w1"].shape
    classes = w["w2"].shape[1]
    data = load_dataset(dataset_path, Featurizer(inputs), classes)
    labels = data[3]
    n, epochs, lr, batch = len(labels), params["epochs"], params["lr"], params["batch_size"]
    log(f"job {job or '-'}: training {model or '-'}@{base} on {dataset}: {n} records, "
        f"inputs {inputs} hidden {hidden} classes {classes}, epochs {epochs} lr {lr:g} batch {batch}")

    rng = np.random.default_rng(params["seed"])
    loss = float("nan")
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            step(w, densify(data, rows, inputs), labels[rows], lr)
        loss, acc = evaluate(w, data, inputs)
        log(f"epoch {epoch}/{epochs} loss {loss:.4f} acc {acc:.3f}")
        if not math.isfinite(loss) or not all(np.all(np.isfinite(w[t])) for t in TENSORS):
            raise InputError(f"training diverged at epoch {epoch} (loss {loss}); try a smaller lr")
        if params["fail"]:
            print(f"train_example: simulated failure after epoch {epoch} (parameter fail=1)",
                  file=sys.stderr, flush=True)
            return 2
        if params["sleep"]:
            time.sleep(params["sleep"])

    metadata = {"trainer": TRAINER, "base": base, "model": model, "dataset": dataset, "job": job,
                "epochs": str(epochs), "lr": repr(lr), "batch_size": str(batch),
                "seed": str(params["seed"]), "records": str(n), "loss": f"{loss:.6f}"}
    out = os.path.join(output_dir, CHECKPOINT)
    try:
        write_safetensors(out, w, metadata)
    except OSError as e:
        raise InputError(f"cannot write {out}: {e.strerror or e}")
    log(f"wrote {out} (loss {loss:.4f})")
    return 0


def init_weights(out, inputs, hidden, classes, seed):
    rng = np.random.default_rng(seed)
    w = {"w1": rng.normal(0.0, 1.0 / math.sqrt(inputs), (inputs, hidden)),
         "b1": np.zeros(hidden),
         "w2": rng.normal(0.0, 1.0 / math.sqrt(hidden), (hidden, classes)),
         "b2": np.zeros(classes)}
    write_safetensors(out, w, {"trainer": TRAINER, "inputs": str(inputs), "hidden": str(hidden),
                               "classes": str(classes), "seed": str(seed)})
    log(f"wrote {out}: w1 [{inputs}, {hidden}] b1 [{hidden}] w2 [{hidden}, {classes}] b2 [{classes}]")


def make_dataset(out, records, classes, seed):
    """Synthetic short texts: each class has its own topic words, mixed with shared filler words."""
    rng = np.random.default_rng(seed)
    topics = [[f"topic{c}word{i}" for i in range(12)] for c in range(classes)]
    if classes == 2:
        topics = [["bad", "awful", "boring", "slow", "broken", "terrible", "dull", "poor",
                   "noisy", "ugly", "weak", "worst"],
                  ["good", "great", "fun", "fast", "solid", "excellent", "bright", "fine",
                   "quiet", "lovely", "strong", "best"]]
    filler = ["the", "a", "it", "was", "and", "this", "movie", "book", "really", "quite", "very",
              "plot", "story", "of", "with", "but", "i", "found", "overall", "some"]
    tmp = f"{out}.partial"
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(records):
            label = int(rng.integers(classes))
            words = list(rng.choice(filler, size=int(rng.integers(4, 9))))
            words += list(rng.choice(topics[label], size=int(rng.integers(2, 5))))
            rng.shuffle(words)
            f.write(json.dumps({"id": i, "text": " ".join(words), "label": label}) + "\n")
    os.replace(tmp, out)
    log(f"wrote {out}: {records} records, {classes} classes")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Example modelfs trainer. With no arguments: train, configured by MODELFS_* "
                    "environment variables (see the module docstring).")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--init", metavar="OUT.safetensors", help="write fresh random base weights")
    mode.add_argument("--make-dataset", metavar="OUT.jsonl", help="write a synthetic labelled dataset")
    parser.add_argument("--inputs", type=int, default=256, help="--init: hashed input features (256)")
    parser.add_argument("--hidden", type=int, default=16, help="--init: hidden units (16)")
    parser.add_argument("--classes", type=int, default=2, help="--init, --make-dataset: classes (2)")
    parser.add_argument("--records", type=int, default=200, help="--make-dataset: records (200)")
    parser.add_argument("--seed", type=int, default=0, help="--init, --make-dataset: random seed (0)")
    args = parser.parse_args(argv)
    try:
        if args.init or args.make_dataset:
            if args.inputs < 1 or args.hidden < 1 or args.classes < 2 or args.records < 1:
                parser.error("need --inputs >= 1, --hidden >= 1, --classes >= 2, --records >= 1")
            if args.init:
                init_weights(args.init, args.inputs, args.hidden, args.classes, args.seed)
            else:
                make_dataset(args.make_dataset, args.records, args.classes, args.seed)
            return 0
        return train()
    except InputError as e:
        print(f"train_example: error: {e}", file=sys.stderr, flush=True)
        return 1
    except OSError as e:
        print(f"train_example: error: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
