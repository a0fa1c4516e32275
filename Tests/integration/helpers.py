"""What the end-to-end tests share besides fixtures: running tools, making and hashing files,
reading a mount's extended attributes and `.stats`, and `Mount`, one real mount of a store that
the `mounts` fixture (conftest.py) starts and always unmounts. docs/TESTING.md shows how to use them."""
import hashlib
import os
import socket
import signal
import sqlite3
import subprocess
import tempfile
import time

MODELFS = os.environ.get("MODELFS_BIN") or os.path.join(os.path.dirname(__file__), "../../.build/debug/modelfs")


def sh(*cmd, check=True, **kwargs):
    """Runs a shell tool; returns the CompletedProcess (text)."""
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=600, **kwargs)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr}")
    return p


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_file(path, size, seed=0):
    """A file of `size` pseudo-random bytes (fast: repeats a 1 MiB random block with a counter)."""
    block = hashlib.sha256(str(seed).encode()).digest() * (1 << 15)  # 1 MiB
    with open(path, "wb") as f:
        written, i = 0, 0
        while written < size:
            chunk = (i.to_bytes(8, "little") + block)[: min(len(block), size - written)]
            f.write(chunk)
            written += len(chunk)
            i += 1
    return path


def errno_of(fn, *args):
    """The errno `fn(*args)` fails with; 0 if it does not fail."""
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def shared_top(store, prefix):
    """A directory every user can reach (pytest's own temp dirs are private to root) holding the
    store's data dir and a mountpoint others may enter: (top, mountpoint). The caller removes it."""
    top = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(top, 0o711)
    store.data_dir = os.path.join(top, "data")
    mnt = os.path.join(top, "mnt")
    os.makedirs(mnt)
    os.chmod(mnt, 0o755)
    return top, mnt


def xattr(path, name):
    """The value of modelfs's attribute `user.modelfs.<name>` of `path` (OSError if it has none)."""
    return os.getxattr(path, "user.modelfs." + name).decode()


def xattrs(path):
    """Every `user.*` attribute of `path`, by full name, as `getfattr -d` lists them."""
    return {k: os.getxattr(path, k).decode() for k in os.listxattr(path) if k.startswith("user.")}


def free_port():
    """A port of 127.0.0.1 free now (a server started next binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=60, what="condition", poll=0.05):
    """Polls `predicate` until it is true; fails the test saying `what` did not happen."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def settled(read, timeout=30, poll=0.5):
    """`read()` once two reads `poll` apart agree: a counter after the kernel's asynchronous
    readahead and the mount's prefetches (which a reader does not wait for) have landed."""
    last, deadline = read(), time.time() + timeout
    while time.time() < deadline:
        time.sleep(poll)
        now = read()
        if now == last:
            return now
        last = now
    return last


def wait_for_parts(store, at_least, proc, timeout=120):
    """Waits until the store's catalog records `at_least` uploaded parts, while `proc` (the
    import or copy making them) still runs: the moment to interrupt it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} ended before {at_least} part(s) were recorded: {proc.communicate()}")
        try:
            with sqlite3.connect(store.db, timeout=5) as c:
                if c.execute("SELECT count(*) FROM upload_parts").fetchone()[0] >= at_least:
                    return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{at_least} part(s) were not recorded in {timeout} s")


def bucket_state(store, model):
    """Objects and multipart uploads under `model/`, asked of the store itself (not through a proxy)."""
    return store.keys(model + "/"), store.multipart_uploads(model + "/")


def disk_cache_file(mount, sha256, size):
    """The disk cache's data file of the object with these bytes (ModelStore's ObjectIdentity)."""
    digest = hashlib.sha256(f"modelfs-object\0{sha256}\0{size}".encode()).digest()
    ident = int.from_bytes(digest[:8], "big") & ~(1 << 63)
    return os.path.join(mount.data_dir, "cache", "objects", f"{ident:x}.data")


def mounts_at(path):
    """How many mounts /proc/self/mounts lists at `path`."""
    with open("/proc/self/mounts") as f:
        return sum(1 for line in f if line.split()[1] == path)


def is_mounted(path):
    return mounts_at(path) > 0


def mount_pid(out):
    """The mount process's pid in what `modelfs mount` printed."""
    return int(out.split("(pid ")[1].split(",")[0])


def process_ended(pid):
    """Whether process `pid` is gone (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def mount_log(data_dir, lines=40):
    """The last `lines` lines (all, for None) of the mount log in `data_dir`, for a failure's message."""
    try:
        with open(os.path.join(data_dir, "mount.log"), errors="replace") as f:
            text = f.readlines()
    except OSError:
        return "(no mount.log)"
    return "".join(text[-lines:] if lines else text)


class Mount:
    """One real mount of a store at `path` (`modelfs mount PATH ARGS…`, with the store's environment
    or `env`, as `user` when given), driven with the tools users use. The `mounts` fixture makes
    them and unmounts each at the end of the test, whatever happened; `with` unmounts earlier."""

    def __init__(self, store, path, args=(), env=None, user=None, timeout=600):
        self.store, self.path, self.args = store, str(path), tuple(args)
        self.env, self.user, self.timeout = env, user, timeout
        self.pid = None
        self.result = None  # the last `modelfs mount`'s CompletedProcess

    def start(self, *args, check=True):
        """Mounts (with `args` instead of the ones it was made with, when given); with check=False
        a refused mount is the caller's to look at in `result`."""
        if args:
            self.args = args
        argv = ["mount", self.path, *self.args]
        if self.user:
            data_dir = (self.env or self.store.env())["MODELFS_DATA_DIR"]
            self.result = subprocess.run(
                ["runuser", "-u", self.user, "--", "env", f"MODELFS_DATA_DIR={data_dir}", MODELFS, *argv],
                capture_output=True, text=True, timeout=self.timeout)
            if check:
                assert self.result.returncode == 0, self.result.stderr
        else:
            self.result = self.store.run(*argv, env=self.env, timeout=self.timeout, check=check)
        if self.result.returncode == 0:
            assert is_mounted(self.path), self.result
            self.pid = mount_pid(self.result.stdout) if "(pid " in self.result.stdout else None
        return self

    def __fspath__(self):  # os.path.join(m, "models") takes the mount itself
        return self.path

    @property
    def data_dir(self):
        return self.store.data_dir

    def p(self, *parts):
        return os.path.join(self.path, *parts)

    def stats(self):
        """The mount's counters (`.stats`), by name."""
        out = {}
        with open(self.p(".stats")) as f:
            for line in f:
                k, v = line.split(":", 1)
                out[k.strip()] = int(v)
        return out

    def settled(self, key="s3.bytes_fetched", timeout=30):
        """Counter `key` once what the kernel and the mount read ahead has landed."""
        return settled(lambda: self.stats().get(key), timeout)

    def wait_stat(self, key, value, timeout=60):
        """Counter `key` once it is `value`, or what it is after `timeout` seconds."""
        deadline = time.time() + timeout
        while self.stats().get(key) != value and time.time() < deadline:
            time.sleep(0.1)
        return self.stats().get(key)

    def xattr(self, rel, name):
        """Attribute `user.modelfs.<name>` of `rel` (a path in the mount, or an absolute one)."""
        return xattr(self.p(rel), name)

    def log(self, lines=None):
        """What the mount wrote to its log in the data dir (the last `lines` lines)."""
        return mount_log(self.data_dir, lines)

    def unmount(self, wait_exit=True):
        """`fusermount3 -u` (lazily, `-uz`, if the mount is busy), then waits for the mount to go
        and, with `wait_exit`, for its process to end: it writes the last manifests on its way out."""
        if is_mounted(self.path):
            if self.user:
                subprocess.run(["runuser", "-u", self.user, "--", "fusermount3", "-u", self.path], capture_output=True)
            if is_mounted(self.path) and subprocess.run(["fusermount3", "-u", self.path]).returncode != 0:
                subprocess.run(["fusermount3", "-uz", self.path])
        deadline = time.time() + 10
        while is_mounted(self.path) and time.time() < deadline:
            time.sleep(0.05)
        deadline = time.time() + 60
        while wait_exit and self.pid and not process_ended(self.pid) and time.time() < deadline:
            time.sleep(0.05)

    def remount(self, *args):
        """Unmounts and mounts again at the same path (with `args` instead, when given)."""
        self.unmount()
        return self.start(*args)

    def kill(self):
        """kill -9 of the mount process, as a crash would (if it still runs); its dead mount is
        detached (`-uz`)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for(lambda: process_ended(self.pid), 30, f"mount process {self.pid} to end")
        subprocess.run(["fusermount3", "-uz", self.path])

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.unmount()


class Mounts:
    """The `mounts` fixture: makes `Mount`s for one test and unmounts every one at its end."""

    def __init__(self, tmp_path):
        self.tmp_path, self.made = tmp_path, []

    def __call__(self, store, *args, path=None, env=None, user=None, check=True, timeout=600, start=True):
        """`modelfs mount PATH ARGS…` of `store` at `path` (tmp_path/mnt, mnt2, … by default). With
        check=False a refused mount is the caller's to look at (`.result`); with start=False the
        Mount is only made, for a mount started another way (its unmount is still ours)."""
        path = path or self.tmp_path / ("mnt" if not self.made else f"mnt{len(self.made) + 1}")
        m = self.adopt(Mount(store, path, args, env=env, user=user, timeout=timeout))
        return m.start(check=check) if start else m

    def adopt(self, m):
        """Takes a Mount made elsewhere (a `JobMount`) to unmount it at the end; returns it."""
        self.made.append(m)
        return m

    def unmount_all(self):
        for m in reversed(self.made):
            try:
                m.unmount()
            except Exception as e:  # the others are still unmounted
                print(f"unmounting {m.path}: {e}")
