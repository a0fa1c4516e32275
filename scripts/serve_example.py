#!/usr/bin/env python3
"""Example inference server for the example trainer's classifier (scripts/train_example.py):
numpy + safetensors + the standard library, no network beyond its own port.

Configured by environment variables only, as a service command will be (issue 23):

    MODELFS_MODEL_PATH    required  the weights: a .safetensors file, or a directory holding exactly
                                    one (an archive version's view)
    MODELFS_PORT          required  the port to listen on
    MODELFS_HOST          optional  the address to bind; default 127.0.0.1 (a Slurm node's service
                                    gets 0.0.0.0, to be reachable from the mount's host)
    MODELFS_MODEL         optional  the model's name in answers; default: the weights file's stem
    MODELFS_SERVE_EXAMPLE_DELAY
                          optional  seconds to wait before loading (tests watch /health say 503)

The socket is bound first and the weights load in the background, so a caller can tell
"starting" from "dead":

    GET  /health        503 {"status": "loading"} until the weights are loaded, then 200 {"status": "ok"}
    GET  /v1/models     {"object": "list", "data": [{"id": NAME, "object": "model", "created": T,
                         "owned_by": "modelfs", "inputs": I, "classes": C}]}
    POST /v1/classify   {"input": "text" | ["text", ...], "model": NAME (optional)}
                     -> {"object": "list", "model": NAME,
                         "data": [{"object": "classification", "index": 0, "label": 1,
                                   "probabilities": [0.12, 0.88]}, ...]}

"label" is the class the model gives the highest probability; "probabilities" are computed
exactly as training does (the trainer's featurizer and forward pass), one per class. The other
endpoints answer 503 while loading. Errors are OpenAI-style, {"error": {"message", "type",
"code"}}: 400 for bad JSON or a bad "input", 404 for an unknown path or another model's name,
405 for a wrong method, 413 for a body over 1 MiB.

One line per request goes to stderr. SIGTERM (or Ctrl-C) stops it, exit 0; weights that cannot be
loaded stop it with exit 1 and the reason on stderr.

    python3 scripts/train_example.py --init /tmp/tiny.safetensors
    MODELFS_MODEL_PATH=/tmp/tiny.safetensors MODELFS_PORT=8000 python3 scripts/serve_example.py &
    curl -s localhost:8000/v1/classify -d '{"input": ["great fun", "awful and boring"]}'
"""
import glob
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_example as t  # noqa: E402  (the same weights checks, featurizer and forward pass)

MAX_BODY = 1 << 20


def say(msg):
    print(f"serve_example: {msg}", file=sys.stderr, flush=True)


def weights_file(path):
    """The .safetensors file itself, or the only one in a directory."""
    if not os.path.isdir(path):
        return path
    found = sorted(glob.glob(os.path.join(glob.escape(path), "*.safetensors")))
    if len(found) != 1:
        raise t.InputError(f"{path}: expected exactly one *.safetensors file in the directory, found {len(found)}")
    return found[0]


def predict(w, featurize, texts):
    """Class probabilities, one row per text, through the trainer's own sparse rows, densify
    and forward, so serving cannot drift from training."""
    indptr, indices, values = [0], [], []
    for text in texts:
        idx, val = featurize(text)
        indices.extend(idx)
        values.extend(val)
        indptr.append(len(indices))
    rows = (np.array(indptr, dtype=np.int64), np.array(indices, dtype=np.int64),
            np.array(values, dtype=np.float64), None)
    return t.forward(w, t.densify(rows, np.arange(len(texts)), featurize.inputs))[1]


class Model:
    """The loaded weights; `ready` is set once they are usable."""

    def __init__(self, path, name):
        self.path, self.name = path, name
        self.ready = threading.Event()
        self.w = self.featurize = None
        self.created = int(os.stat(path).st_mtime)

    def load(self):
        self.w = t.load_weights(self.path)
        self.featurize = t.Featurizer(self.w["w1"].shape[0])
        self.ready.set()

    def card(self):
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "modelfs",
                "inputs": int(self.w["w1"].shape[0]), "classes": int(self.w["w2"].shape[1])}

    def classify(self, texts):
        probs = predict(self.w, self.featurize, texts)
        return [{"object": "classification", "index": i, "label": int(p.argmax()),
                 "probabilities": [float(x) for x in p]} for i, p in enumerate(probs)]


class ApiError(Exception):
    def __init__(self, status, message, kind="invalid_request_error", code=None):
        super().__init__(message)
        self.status, self.kind, self.code = status, kind, code


def texts_of(body, model):
    """The list of texts a /v1/classify body asks about, or an ApiError saying what is wrong."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON: {e}")
    if not isinstance(request, dict):
        raise ApiError(400, "the body must be a JSON object")
    if request.get("model") not in (None, model.name):
        raise ApiError(404, f"model {request['model']!r} is not served here (this is {model.name!r})",
                       code="model_not_found")
    texts = request.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(x, str) for x in texts):
        raise ApiError(400, '"input" must be a string or a non-empty list of strings')
    return texts


class Handler(BaseHTTPRequestHandler):
    server_version = "modelfs-serve-example"

    def log_message(self, fmt, *args):  # one line per request (and per error) on stderr
        say(f"{self.address_string()} {fmt % args}")

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_api(self, method):
        model = self.server.model
        routes = {"/health": "GET", "/v1/models": "GET", "/v1/classify": "POST"}
        path = self.path.split("?", 1)[0]
        try:
            if path not in routes:
                raise ApiError(404, f"no such endpoint: {path}", code="not_found")
            if method != routes[path]:
                raise ApiError(405, f"{path} takes {routes[path]}, not {method}")
            if not model.ready.is_set():
                if path == "/health":
                    return self.reply(503, {"status": "loading"})
                raise ApiError(503, "the model is still loading", kind="server_error")
            if path == "/health":
                return self.reply(200, {"status": "ok"})
            if path == "/v1/models":
                return self.reply(200, {"object": "list", "data": [model.card()]})
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise ApiError(400, "bad Content-Length")
            if not 0 <= length <= MAX_BODY:
                raise ApiError(413, f"the body must be at most {MAX_BODY} bytes")
            texts = texts_of(self.rfile.read(length), model)
            self.reply(200, {"object": "list", "model": model.name, "data": model.classify(texts)})
        except ApiError as e:
            self.reply(e.status, {"error": {"message": str(e), "type": e.kind, "code": e.code}})

    def do_GET(self):
        self.handle_api("GET")

    def do_POST(self):
        self.handle_api("POST")


def main():
    try:
        path = weights_file(t.require_env("MODELFS_MODEL_PATH"))
        port = int(t.require_env("MODELFS_PORT"))
        host = os.environ.get("MODELFS_HOST") or "127.0.0.1"
        delay = float(os.environ.get("MODELFS_SERVE_EXAMPLE_DELAY") or 0)
        name = os.environ.get("MODELFS_MODEL") or os.path.splitext(os.path.basename(path))[0]
        model = Model(path, name)
        server = ThreadingHTTPServer((host, port), Handler)
    except (t.InputError, OSError, ValueError) as e:
        say(f"error: {e}")
        return 1
    server.model = model
    failure = []

    def load():
        try:
            time.sleep(delay)
            model.load()
            say(f"{name} loaded from {path}, ready on {host}:{port}")
        except Exception as e:  # whatever stops the load stops the server: it can never be ready
            failure.append(e)
            server.shutdown()

    # shutdown() waits for serve_forever() to return, so it cannot run on the thread the signal
    # handler interrupts.
    stop = lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    say(f"listening on {host}:{port}, loading {path}")
    threading.Thread(target=load, daemon=True).start()
    server.serve_forever()
    server.server_close()
    if failure:
        say(f"error: {failure[0]}")
        return 1
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
