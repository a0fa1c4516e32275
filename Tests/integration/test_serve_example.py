"""scripts/serve_example.py, the example inference server: plain files in tmp_path, no mount and
no store (none of conftest's fixtures). The weights come from a short real run of the example
trainer, and the expected answers from the trainer's own dataset loader and forward pass, not
from the server's code."""
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

from helpers import free_port, wait_for

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../scripts")
sys.path.insert(0, SCRIPTS)
import train_example as t  # noqa: E402

TEXTS = ["great fun and excellent", "awful boring and broken", "the plot of the movie", "", "GOOD good, bad!"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A trained checkpoint with non-default sizes (a server assuming 256 inputs gets it wrong)."""
    d = tmp_path_factory.mktemp("serve_example")
    t.init_weights(str(d / "base.safetensors"), inputs=96, hidden=6, classes=3, seed=4)
    t.make_dataset(str(d / "data.jsonl"), records=120, classes=3, seed=5)
    (d / "out").mkdir()
    env = {**os.environ, "MODELFS_MODEL_PATH": str(d / "base.safetensors"),
           "MODELFS_DATASET_PATH": str(d / "data.jsonl"), "MODELFS_OUTPUT_DIR": str(d / "out")}
    env.pop("MODELFS_PARAMS", None)
    p = subprocess.run([sys.executable, os.path.join(SCRIPTS, "train_example.py")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return d / "out" / "checkpoint.safetensors"


def expected(path, texts, tmp_path):
    """Probabilities as training and evaluation compute them: the texts as a dataset, through
    load_dataset, densify and forward."""
    w = t.load_weights(str(path))
    data_path = tmp_path / "texts.jsonl"
    data_path.write_text("".join(json.dumps({"text": x, "label": 0}) + "\n" for x in texts))
    data = t.load_dataset(str(data_path), t.Featurizer(w["w1"].shape[0]), w["w2"].shape[1])
    return t.forward(w, t.densify(data, np.arange(len(texts)), w["w1"].shape[0]))[1]


class Server:
    def __init__(self, model_path, delay="0", **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = {k: v for k, v in os.environ.items() if not k.startswith("MODELFS_")}
        full.update({"MODELFS_MODEL_PATH": str(model_path), "MODELFS_PORT": str(self.port),
                     "MODELFS_SERVE_EXAMPLE_DELAY": delay, **env})
        self.proc = subprocess.Popen([sys.executable, os.path.join(SCRIPTS, "serve_example.py")], env=full,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def request(self, path, body=None):
        """(status, decoded JSON) of one request; a body (bytes or an object) makes it a POST."""
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        try:
            with urllib.request.urlopen(self.url + path, data=body, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def first_answer(self):
        """/health's status the first time the server answers at all."""
        answer = []

        def answered():
            assert self.proc.poll() is None, self.proc.communicate()
            try:
                answer.append(self.request("/health")[0])
            except (urllib.error.URLError, ConnectionError):
                return False
            return True
        wait_for(answered, timeout=30, what="the server to listen")
        return answer[0]

    def wait_ready(self):
        self.first_answer()
        wait_for(lambda: self.request("/health")[0] == 200, timeout=30, what="/health to answer 200")

    def stop(self):
        """SIGTERM; (exit status, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the server did not end on SIGTERM: {self.proc.communicate()}")
        return self.proc.returncode, err


@pytest.fixture
def servers():
    """Starts servers; every one still running when the test ends is stopped."""
    started = []

    def start(*args, **kwargs):
        started.append(Server(*args, **kwargs))
        return started[-1]
    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate()


def test_loads_then_classifies_as_the_trainer_does(weights, servers, tmp_path):
    s = servers(weights, delay="2", MODELFS_MODEL="tiny")
    assert s.first_answer() == 503
    assert s.request("/v1/classify", {"input": "x"})[0] == 503  # not before the weights are in
    s.wait_ready()

    status, models = s.request("/v1/models")
    assert status == 200 and models["object"] == "list"
    assert [(m["id"], m["object"], m["classes"], m["inputs"]) for m in models["data"]] == [("tiny", "model", 3, 96)]

    want = expected(weights, TEXTS, tmp_path)
    status, answer = s.request("/v1/classify", {"input": TEXTS, "model": "tiny"})
    assert status == 200 and answer["model"] == "tiny"
    assert [d["index"] for d in answer["data"]] == list(range(len(TEXTS)))
    got = np.array([d["probabilities"] for d in answer["data"]])
    assert got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-12), (got, want)
    assert [d["label"] for d in answer["data"]] == list(want.argmax(axis=1))
    assert len(set(want.argmax(axis=1))) > 1  # a trained model: the labels say something

    status, one = s.request("/v1/classify", {"input": TEXTS[1]})
    assert status == 200 and np.allclose(one["data"][0]["probabilities"], want[1], rtol=0, atol=1e-12)

    code, err = s.stop()
    assert code == 0, err
    lines = [x for x in err.splitlines() if '"GET /' in x or '"POST /' in x]
    assert len(lines) >= 5 and any('"POST /v1/classify HTTP/1.1" 200' in x for x in lines), err


BAD = [(b"{not json", 400), (b"", 400), ([1, 2], 400), ({}, 400), ({"input": []}, 400),
       ({"input": ["a", 3]}, 400), ({"input": {"text": "a"}}, 400), ({"input": "a", "model": "other"}, 404)]


def test_bad_requests(weights, servers):
    s = servers(weights)
    s.wait_ready()
    for body, status in BAD:
        got, answer = s.request("/v1/classify", body)
        assert got == status and answer["error"]["message"], (body, answer)
    assert s.request("/nowhere")[0] == 404 and s.request("/v1/classify")[0] == 405
    assert s.request("/health")[0] == 200  # still serving
    assert s.stop()[0] == 0


def test_directory_and_file_stem(weights, servers):
    s = servers(weights.parent)  # an archive version's view: the one .safetensors inside
    s.wait_ready()
    assert s.request("/v1/models")[1]["data"][0]["id"] == "checkpoint"
    assert s.stop()[0] == 0


def test_sigterm_while_loading_and_bad_weights(weights, servers, tmp_path):
    s = servers(weights, delay="30")
    assert s.first_answer() == 503
    assert s.stop()[0] == 0

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    s = servers(bad)
    s.proc.wait(timeout=30)  # it ends by itself
    code, err = s.stop()
    assert code == 1 and "not a valid safetensors file" in err, err


def test_binds_the_address_in_modelfs_host(weights, servers):
    """MODELFS_HOST (0.0.0.0 for a service on a Slurm node) is where it listens, and only there."""
    s = servers(weights, MODELFS_HOST="127.0.0.2")
    s.url = f"http://127.0.0.2:{s.port}"
    s.wait_ready()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{s.port}/health", timeout=10)
    assert s.stop()[0] == 0
