#!/usr/bin/env python3
"""Example evaluator for modelfs evaluation jobs: accuracy and loss of the example trainer's
classifier (scripts/train_example.py) on a held-out dataset.

modelfs runs this as a mount's --eval-command, with NO arguments; everything comes through
environment variables:

    MODELFS_MODEL_PATH    required  the version to evaluate, a .safetensors file (read through the mount)
    MODELFS_DATASET_PATH  required  the held-out dataset, a .jsonl file (read through the mount)
    MODELFS_METRICS_FILE  required  where to write the metrics: one JSON object of numbers
    MODELFS_JOB_ID, MODELFS_MODEL, MODELFS_VERSION, MODELFS_DATASET
                          optional  names, used in the log

It writes {"accuracy": A, "loss": L, "records": N} and logs one line:

    evaluated tiny@v2 on qa-test: 80 records, loss 0.2731 accuracy 0.912

A held-out set comes from the trainer's generator with another seed:

    python3 scripts/train_example.py --make-dataset /tmp/qa-test.jsonl --records 80 --seed 1

Exit status: 0 success; 1 missing or invalid input (message on stderr).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_example as t  # noqa: E402  (the same model, featurizer and loss as training)


def main():
    try:
        model_path = t.require_env("MODELFS_MODEL_PATH")
        dataset_path = t.require_env("MODELFS_DATASET_PATH")
        metrics_path = t.require_env("MODELFS_METRICS_FILE")
        w = t.load_weights(model_path)
        inputs = w["w1"].shape[0]
        data = t.load_dataset(dataset_path, t.Featurizer(inputs), w["w2"].shape[1])
        loss, accuracy = t.evaluate(w, data, inputs)
        n = len(data[3])
        metrics = {"accuracy": round(float(accuracy), 6), "loss": round(float(loss), 6), "records": n}
        tmp = metrics_path + ".partial"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(metrics, f)
        os.replace(tmp, metrics_path)
        model = os.environ.get("MODELFS_MODEL", "-")
        version = os.environ.get("MODELFS_VERSION") or os.path.basename(model_path)
        dataset = os.environ.get("MODELFS_DATASET") or os.path.basename(dataset_path)
        t.log(f"evaluated {model}@{version} on {dataset}: {n} records, loss {loss:.4f} accuracy {accuracy:.3f}")
        return 0
    except (t.InputError, OSError) as e:
        print(f"eval_example: error: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
