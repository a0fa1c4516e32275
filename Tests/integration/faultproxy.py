"""A fault-injecting HTTP/1.1 reverse proxy for S3 traffic: test tooling, Python stdlib only.

    proxy = FaultProxy("http://127.0.0.1:8080", seed=7).start()
    env["MODELFS_ENDPOINT"] = proxy.endpoint            # http://127.0.0.1:<free port>
    proxy.configure(rate=0.10, kinds=("500", "503", "reset", "stall", "truncate"), methods=("GET",))
    ...
    proxy.counters()   # {"requests": 412, "faults": {"500": 9, ...}, ...}
    proxy.down("refuse"); ...; proxy.up()
    proxy.stop()

Requests are forwarded byte for byte: request line (method, path with its percent-encoding,
query), every header in its order and spelling (Host, Authorization, x-amz-*) and the body. The
client signs SigV4 for the authority it talks to, which is the proxy's `127.0.0.1:<port>`, and puts
that in its Host header; the proxy passes the Host header on unchanged, and the server (Swift
s3api, like AWS) recomputes the signature from the Host header it receives, so the signature holds
although the TCP connection goes to another port. Nothing is rewritten in either direction.

Each client connection gets its own upstream connection, kept alive across the client's requests
(reopened, and the request resent once, when a reused upstream connection turns out closed).
Request bodies are framed by Content-Length (or chunked); responses by Content-Length, chunked, or
the end of the connection; 1xx interim answers are relayed; HEAD/204/304 answers have no body.

Faults (one per faulted request, chosen from `kinds`):

    "500"       answer 500 InternalError (S3 XML error body); the server never sees the request
    "503"       answer 503 SlowDown (S3 XML error body); the server never sees the request
    "reset"     read the request, then reset the connection (RST) without answering
    "stall"     read the request, then answer nothing for `stall_seconds` (or until the client
                gives up), then close (`stall_then="close"`) or forward it late ("forward")
    "truncate"  forward the request; send the answer's head (with its real Content-Length) and only
                part of its body (`truncate_fraction`; a chunked body is cut the same way), then
                close (FIN); an answer without a body (PUT part, HEAD) is cut inside its head instead
    "truncate_head"  forward the request; send the status line and only part of the headers, then
                close (FIN): the client never sees the blank line, Content-Length, ETag…
    "lost"      forward the request and let the server do it, then reset instead of answering (the
                answer is lost; the client must retry something that already happened)
    "error200"  answer 200 OK with an S3 `<Error>` body (InternalError); the server never sees the
                request. AWS answers a CompleteMultipartUpload that fails after it sent its status
                line this way: the 200 is no success

Which requests are faulted: those whose method is in `methods` (None = all) and for which
`predicate(method, target, headers)` (if given) is true are eligible; of those, a fraction `rate`
is faulted, picked by a `random.Random(seed)`. `schedule="random"`: each eligible request
independently with probability `rate`; `schedule="spread"`: exactly one at a random position in
each run of round(1/rate) eligible requests (so the fraction is exact, not only on average). Kinds
are dealt from a deck shuffled by the same RNG (every kind once per len(kinds) faults). The
sequence of decisions is reproducible for a given seed; under concurrency which request gets which
decision follows arrival order.

Down modes: `down("refuse")` closes the listening socket and resets every open connection (new
connections are refused: ECONNREFUSED); `down("reset")` accepts and resets each connection;
`down("blackhole")` accepts and reads requests but never answers. `up()` restores normal service on
the same port.

Run by hand: `python3 faultproxy.py --target http://127.0.0.1:8080 --rate 0.1 --kinds 500,503,reset`
prints the endpoint, and the counters on Ctrl-C.
"""
import collections
import random
import select
import socket
import struct
import threading
import time
import uuid
from urllib.parse import urlparse
from xml.sax.saxutils import escape

ALL_KINDS = ("500", "503", "reset", "stall", "truncate", "truncate_head", "lost", "error200")
DEFAULT_KINDS = ("500", "503", "reset", "stall", "truncate")
DOWN_MODES = ("refuse", "reset", "blackhole")

_CHUNK = 256 * 1024
_MAX_HEAD = 64 * 1024


class _Closed(Exception):
    """The peer closed the connection (or it broke) where a message was expected."""


class _Reader:
    """Buffered reads from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(_CHUNK)
        if not data:
            raise _Closed()
        self.buf += data

    def read_head(self):
        """The bytes of a message head up to and including the blank line; None on a clean EOF
        before any byte."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head, self.buf = self.buf[: i + 4], self.buf[i + 4:]
                return head
            if len(self.buf) > _MAX_HEAD:
                raise _Closed()
            try:
                self._fill()
            except _Closed:
                if not self.buf:
                    return None
                raise

    def read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[: i + 2], self.buf[i + 2:]
                return line
            if len(self.buf) > _MAX_HEAD:
                raise _Closed()
            self._fill()

    def read_some(self, limit):
        if not self.buf:
            self._fill()
        data, self.buf = self.buf[:limit], self.buf[limit:]
        return data

    def read_to_eof(self):
        """Yields what remains until the peer closes."""
        if self.buf:
            data, self.buf = self.buf, b""
            yield data
        while True:
            data = self.sock.recv(_CHUNK)
            if not data:
                return
            yield data


def _parse_head(head):
    """(start line parts, [(name, value)], {lower name: value}) of a message head."""
    lines = head.decode("latin-1").split("\r\n")
    start = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return start, headers, {n.lower(): v for n, v in headers}


def _body_frames(reader, hmap, to_eof):
    """Yields the raw bytes of a message body framed as `hmap` says (chunked bytes as they are)."""
    if "chunked" in hmap.get("transfer-encoding", "").lower():
        while True:
            size_line = reader.read_line()
            yield size_line
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers up to the blank line
                    line = reader.read_line()
                    yield line
                    if line == b"\r\n":
                        return
            left = size + 2  # the data and its CRLF
            while left:
                data = reader.read_some(min(left, _CHUNK))
                left -= len(data)
                yield data
    elif "content-length" in hmap:
        left = int(hmap["content-length"])
        while left > 0:
            data = reader.read_some(min(left, _CHUNK))
            left -= len(data)
            yield data
    elif to_eof:
        yield from reader.read_to_eof()


def _reset(sock):
    """Closes `sock` with a TCP RST rather than a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    _close(sock)


def _close(sock):
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _s3_error(status, reason, code, message, method, resource):
    request_id = uuid.uuid4().hex[:16].upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"x-amz-request-id: {request_id}\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}\r\n"
        "\r\n"
    ).encode()
    return head if method == "HEAD" else head + body


class FaultProxy:
    def __init__(self, target, seed=0, host="127.0.0.1", port=0):
        u = urlparse(target)
        if u.scheme != "http":
            raise ValueError("the proxy speaks plain HTTP to its target")
        self.target = (u.hostname, u.port or 80)
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._listener = None
        self._conns = set()
        self._mode = "up"
        self._up_event = threading.Event()
        self._up_event.set()
        self.rate = 0.0
        self.kinds = DEFAULT_KINDS
        self.methods = None
        self.predicate = None
        self.schedule = "random"
        self.stall_seconds = 12.0
        self.stall_then = "close"
        self.truncate_fraction = None  # None: a random fraction in [0.05, 0.95)
        self._seed(seed)
        self.reset_counters()

    # ------------------------------------------------------------------ control --

    @property
    def endpoint(self):
        return f"http://{self.host}:{self.port}"

    def start(self):
        self._listen()
        return self

    def stop(self):
        self.down("refuse")
        self._up_event.set()  # frees blackholed handlers

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def configure(self, rate=None, kinds=None, methods=None, predicate=None, schedule=None, seed=None,
                  stall_seconds=None, stall_then=None, truncate_fraction=None):
        """Changes what is faulted; arguments left out (None) keep their value. `methods`: a
        collection of methods (e.g. ("GET",) or ("PUT", "POST")), or "all"; `predicate`: a callable
        (method, target, headers dict) -> bool, or False to drop it."""
        with self._lock:
            if rate is not None:
                if not 0 <= rate <= 1:
                    raise ValueError("rate is a fraction in [0, 1]")
                self.rate = float(rate)
                self._spread_pos = None
            if kinds is not None:
                kinds = tuple(kinds)
                unknown = set(kinds) - set(ALL_KINDS)
                if unknown or not kinds:
                    raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {ALL_KINDS}")
                self.kinds = kinds
                self._deck = []
            if methods is not None:
                self.methods = None if methods == "all" else frozenset(m.upper() for m in methods)
            if predicate is not None:
                self.predicate = predicate or None
            if schedule is not None:
                if schedule not in ("random", "spread"):
                    raise ValueError("schedule is 'random' or 'spread'")
                self.schedule = schedule
                self._spread_pos = None
            if stall_seconds is not None:
                self.stall_seconds = float(stall_seconds)
            if stall_then is not None:
                if stall_then not in ("close", "forward"):
                    raise ValueError("stall_then is 'close' or 'forward'")
                self.stall_then = stall_then
            if truncate_fraction is not None:
                self.truncate_fraction = float(truncate_fraction)
            if seed is not None:
                self._seed(seed)
        return self

    def faults_off(self):
        return self.configure(rate=0)

    def down(self, mode="refuse"):
        """Object storage is gone: see the module docstring for the modes."""
        if mode not in DOWN_MODES:
            raise ValueError(f"down mode is one of {DOWN_MODES}")
        with self._lock:
            self._mode = mode
            self._up_event.clear()
            listener, self._listener = (self._listener, None) if mode == "refuse" else (None, self._listener)
            conns = list(self._conns) if mode != "blackhole" else []
        if listener is not None:
            _close(listener)  # shutdown() wakes the accept() and stops the listening
        for s in conns:
            _reset(s)

    def up(self):
        with self._lock:
            self._mode = "up"
            need_listener = self._listener is None
        if need_listener:
            self._listen()
        self._up_event.set()
        return self

    @property
    def mode(self):
        return self._mode

    def counters(self):
        """A snapshot: requests seen (by method), eligible ones, faults by kind (and by method),
        connections accepted and reset while down, body bytes each way, forwarded requests."""
        with self._lock:
            return {
                "requests": self._requests,
                "requests_by_method": dict(self._by_method),
                "eligible": self._eligible,
                "forwarded": self._forwarded,
                "faults": dict(self._faults),
                "faults_total": sum(self._faults.values()),
                "faults_by_method": {k: dict(v) for k, v in self._faults_by_method.items()},
                "fault_details": dict(self._details),
                "connections": self._connections,
                "connections_refused_while_down": self._down_resets,
                "blackholed_requests": self._blackholed,
                "bytes_from_clients": self._bytes_in,
                "bytes_to_clients": self._bytes_out,
                "upstream_reconnects": self._reconnects,
            }

    def events(self):
        """The last faults: (time, method, target, kind, detail)."""
        with self._lock:
            return list(self._events)

    def reset_counters(self):
        with self._lock:
            self._requests = 0
            self._by_method = collections.Counter()
            self._eligible = 0
            self._forwarded = 0
            self._faults = collections.Counter()
            self._faults_by_method = collections.defaultdict(collections.Counter)
            self._details = collections.Counter()
            self._connections = 0
            self._down_resets = 0
            self._blackholed = 0
            self._bytes_in = 0
            self._bytes_out = 0
            self._reconnects = 0
            self._events = collections.deque(maxlen=2000)

    # --------------------------------------------------------------- internals --

    def _seed(self, seed):
        self.seed = seed
        self._rng = random.Random(seed)
        self._deck = []
        self._spread_pos = None
        self._spread_index = 0

    def _listen(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(128)
        self.port = s.getsockname()[1]
        with self._lock:
            self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True, name="faultproxy-accept").start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
                if mode == "reset":
                    self._down_resets += 1
                else:
                    self._connections += 1
                    self._conns.add(client)
            if mode == "reset":
                _reset(client)
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(client,), daemon=True, name="faultproxy-conn").start()

    def _decide(self, method, target, hmap):
        """Counts a request; the fault kind to inject into it, or None."""
        with self._lock:
            self._requests += 1
            self._by_method[method] += 1
            if self.methods is not None and method not in self.methods:
                return None
            if self.predicate is not None and not self.predicate(method, target, hmap):
                return None
            self._eligible += 1
            if self.rate <= 0:
                return None
            if self.schedule == "random":
                hit = self._rng.random() < self.rate
            else:
                period = max(1, round(1 / self.rate))
                if self._spread_pos is None or self._spread_index >= period:
                    self._spread_pos = self._rng.randrange(period)
                    self._spread_index = 0
                hit = self._spread_index == self._spread_pos
                self._spread_index += 1
            if not hit:
                return None
            if not self._deck:
                self._deck = list(self.kinds)
                self._rng.shuffle(self._deck)
            kind = self._deck.pop()
            self._faults[kind] += 1
            self._faults_by_method[method][kind] += 1
            return kind

    def _note(self, method, target, kind, detail):
        with self._lock:
            self._details[f"{kind}:{detail}"] += 1
            self._events.append((time.time(), method, target, kind, detail))

    def _add_bytes(self, inbound=0, outbound=0):
        with self._lock:
            self._bytes_in += inbound
            self._bytes_out += outbound

    def _track(self, sock, add=True):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(sock)

    def _serve(self, client):
        upstream = [None, None, 0]  # socket, reader, requests sent on it
        reader = _Reader(client)
        try:
            while True:
                head = reader.read_head()
                if head is None:
                    return
                if self._mode == "blackhole":
                    with self._lock:
                        self._blackholed += 1
                    self._wait_while_blackholed(client)
                    return
                if self._mode != "up":
                    _reset(client)
                    return
                (method, target, _version), headers, hmap = _parse_head(head)
                method = method.upper()
                body = b"".join(_body_frames(reader, hmap, to_eof=False))
                self._add_bytes(inbound=len(head) + len(body))
                kind = self._decide(method, target, hmap)
                keep = self._handle(client, upstream, method, target, hmap, head, body, kind)
                if not keep or "close" in hmap.get("connection", "").lower():
                    _close(client)
                    return
        except (_Closed, OSError, ValueError):
            _close(client)
        finally:
            self._track(client, add=False)
            if upstream[0] is not None:
                self._track(upstream[0], add=False)
                _close(upstream[0])

    def _wait_while_blackholed(self, client):
        while not self._up_event.is_set():
            r, _, _ = select.select([client], [], [], 0.2)
            if r:
                try:
                    if not client.recv(_CHUNK, socket.MSG_PEEK):
                        break  # the client gave up
                except OSError:
                    break
                time.sleep(0.2)  # more request bytes: still no answer
        _close(client)

    def _handle(self, client, upstream, method, target, hmap, head, body, kind):
        """Answers one request; False when the client connection is finished."""
        resource = urlparse(target).path
        if kind == "500":
            client.sendall(_s3_error(500, "Internal Server Error", "InternalError",
                                     "We encountered an internal error. Please try again.", method, resource))
            self._note(method, target, kind, "answered")
            return True
        if kind == "error200":
            client.sendall(_s3_error(200, "OK", "InternalError", "We encountered an internal error. Please try again.",
                                     method, resource))
            self._note(method, target, kind, "answered")
            return True
        if kind == "503":
            client.sendall(_s3_error(503, "Slow Down", "SlowDown", "Please reduce your request rate.", method, resource))
            self._note(method, target, kind, "answered")
            return True
        if kind == "reset":
            self._note(method, target, kind, "before-answer")
            _reset(client)
            return False
        if kind == "stall":
            started = time.monotonic()
            gave_up = False
            while time.monotonic() - started < self.stall_seconds:
                r, _, _ = select.select([client], [], [], 0.2)
                if r:
                    try:
                        if not client.recv(1, socket.MSG_PEEK):
                            gave_up = True
                            break
                    except OSError:
                        gave_up = True
                        break
                    time.sleep(0.2)  # a pipelined request: still no answer
            held = time.monotonic() - started
            self._note(method, target, kind, f"client-gave-up-after-{held:.0f}s" if gave_up else f"held-{held:.0f}s")
            if gave_up or self.stall_then == "close":
                _close(client)
                return False
            kind = None  # a late answer
        return self._forward(client, upstream, method, target, head, body, kind)

    def _connect_upstream(self, upstream):
        if upstream[0] is not None:
            self._track(upstream[0], add=False)
            _close(upstream[0])
        s = socket.create_connection(self.target, timeout=None)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._track(s)
        upstream[:] = [s, _Reader(s), 0]

    def _forward(self, client, upstream, method, target, head, body, kind):
        # Send; a reused upstream connection may have been closed by the server meanwhile: then
        # reconnect and send again (the server did not answer, so it did not take the request).
        for attempt in (0, 1):
            if upstream[0] is None:
                try:
                    self._connect_upstream(upstream)
                except OSError:
                    _reset(client)  # the server is not there: as if the connection failed
                    return False
            reused = upstream[2] > 0
            try:
                upstream[0].sendall(head + body)
                upstream[2] += 1
                rhead = upstream[1].read_head()
                if rhead is None:
                    raise _Closed()
                break
            except (_Closed, OSError):
                self._track(upstream[0], add=False)
                _close(upstream[0])
                upstream[0] = None
                if not reused or attempt:
                    _reset(client)
                    return False
                with self._lock:
                    self._reconnects += 1
        with self._lock:
            self._forwarded += 1

        ureader = upstream[1]
        while True:
            (_, status, *_), _, rmap = _parse_head(rhead)
            status = int(status)
            if 100 <= status < 200 and status != 101:
                if kind is None:
                    client.sendall(rhead)
                rhead = ureader.read_head()
                if rhead is None:
                    raise _Closed()
                continue
            break
        no_body = method == "HEAD" or status in (204, 304)
        framed = "content-length" in rmap or "chunked" in rmap.get("transfer-encoding", "").lower()
        to_eof = not no_body and not framed
        upstream_done = to_eof or "close" in rmap.get("connection", "").lower()
        frames = iter(()) if no_body else _body_frames(ureader, rmap, to_eof=to_eof)

        if kind == "lost":
            for _ in frames:
                pass
            self._note(method, target, kind, f"server-answered-{status}")
            if upstream_done:
                self._drop_upstream(upstream)
            _reset(client)
            return False

        if kind in ("truncate", "truncate_head"):
            fraction = self.truncate_fraction
            if fraction is None:
                with self._lock:
                    fraction = self._rng.uniform(0.05, 0.95)
            length = int(rmap.get("content-length", "0") or 0)
            chunked = "chunked" in rmap.get("transfer-encoding", "").lower()
            if kind == "truncate" and not no_body and length > 0:
                keep = max(0, min(length - 1, int(length * fraction)))
                client.sendall(rhead)
                sent = 0
                for data in frames:
                    take = data[: keep - sent]
                    if take:
                        client.sendall(take)
                        sent += len(take)
                    if sent >= keep:
                        break
                self._add_bytes(outbound=sent)
                self._note(method, target, kind, "body")
            elif kind == "truncate" and not no_body and chunked:
                raw = b"".join(frames)  # a small answer (CompleteMultipartUpload, a listing)
                keep = max(0, min(len(raw) - 1, int(len(raw) * fraction)))
                client.sendall(rhead + raw[:keep])
                self._note(method, target, kind, "chunked-body")
            else:
                # Cut inside the head, past the status line: the client has a status and some of
                # the headers, then the connection ends.
                for _ in frames:
                    pass
                status_end = rhead.find(b"\r\n") + 2
                cut = status_end + int((len(rhead) - 4 - status_end) * min(fraction, 0.95))
                client.sendall(rhead[:cut])
                self._note(method, target, kind, "head")
            # Unread answer bytes are left upstream: that connection cannot be reused.
            self._drop_upstream(upstream)
            _close(client)
            return False

        client.sendall(rhead)
        sent = 0
        for data in frames:
            client.sendall(data)
            sent += len(data)
        self._add_bytes(outbound=len(rhead) + sent)
        if upstream_done:
            self._drop_upstream(upstream)
        return not to_eof

    def _drop_upstream(self, upstream):
        if upstream[0] is not None:
            self._track(upstream[0], add=False)
            _close(upstream[0])
        upstream[:] = [None, None, 0]


def main():
    import argparse
    import signal

    ap = argparse.ArgumentParser(description="A fault-injecting reverse proxy for S3 traffic.")
    ap.add_argument("--target", required=True, help="the real endpoint, e.g. http://127.0.0.1:8080")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--kinds", default=",".join(DEFAULT_KINDS))
    ap.add_argument("--methods", default="all", help="e.g. GET or PUT,POST")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--schedule", choices=("random", "spread"), default="random")
    ap.add_argument("--stall-seconds", type=float, default=12.0)
    args = ap.parse_args()
    proxy = FaultProxy(args.target, seed=args.seed, port=args.port).start()
    proxy.configure(rate=args.rate, kinds=args.kinds.split(","), schedule=args.schedule,
                    methods="all" if args.methods == "all" else args.methods.split(","),
                    stall_seconds=args.stall_seconds)
    print(proxy.endpoint, flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    print(proxy.counters())
    proxy.stop()


if __name__ == "__main__":
    main()
