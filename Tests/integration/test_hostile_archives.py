"""Hostile archives through a real --allow-other mount: zips and tars built here with Python's
zipfile/tarfile and raw byte edits, copied in with cp, their members read back with cat, cp and
Python and compared with what Python extracts or refuses. Wrong bytes are never served with exit 0:
where Python says "Bad CRC-32" (or its headers disagree) the mount answers EIO, and the reason is
in user.modelfs.archive_error. Members are readable by whoever may read their version. While one
user reads damaged members over and over, another still reads a good version."""
import errno
import gzip
import hashlib
import io
import os
import signal
import struct
import subprocess
import tarfile
import shutil
import time
import zipfile
import zlib

import pytest

from helpers import sh, shared_top, xattr
import json
from test_sharing import BOB, EVE, as_user, ensure_users

pytestmark = pytest.mark.every_s3

T = (2024, 5, 17, 12, 30, 10)
MOUNT_PIDS = {}  # each hostile mount's process, for its memory


@pytest.fixture
def hostile(store, tmp_path, mounts):
    if os.geteuid() != 0:
        pytest.skip("needs root: useradd, and a mount others may use")
    bob, eve, team = ensure_users()
    top, mnt = shared_top(store, "modelfs-hostile-")
    try:
        with mounts(store, "--allow-other", path=mnt) as m:
            MOUNT_PIDS[mnt] = m.pid
            yield mnt, bob, eve, team, tmp_path, top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def zip_of(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data, method in entries:
            info = zipfile.ZipInfo(name, T)
            info.compress_type = method
            z.writestr(info, data)
    return bytearray(buf.getvalue())


def central(z):
    """Offsets of the central directory entries."""
    c = struct.unpack_from("<I", z, z.rfind(b"PK\x05\x06") + 16)[0]
    out = []
    while z[c:c + 4] == b"PK\x01\x02":
        out.append(c)
        c += 46 + sum(struct.unpack_from("<HHH", z, c + 28))
    return out


def data_at(z, cd):
    h = struct.unpack_from("<I", z, cd + 42)[0]
    return h + 30 + sum(struct.unpack_from("<HH", z, h + 26))


def python_reads(path, member):
    """What Python's zipfile/tarfile extract of `member`, or the exception they raise."""
    try:
        if path.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                return z.read(member)
        with tarfile.open(path) as t:
            return t.extractfile(t.getmember(member)).read()
    except Exception as e:  # noqa: BLE001 - any refusal is the answer here
        return e


def read_errno(path):
    """Bytes read with Python's open().read(), or the errno it fails with."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        return e.errno


A, B = b"a" * 300_000, bytes(range(256)) * 400


def hostile_zips():
    """name -> (bytes, {member: True when Python refuses it})."""
    good = zip_of([("a.txt", A, zipfile.ZIP_STORED), ("b.bin", B, zipfile.ZIP_DEFLATED), ("c.txt", b"c", 0)])
    cds = central(good)
    out = {}
    z = bytearray(good)
    z[data_at(z, cds[0]) + 150_000] ^= 0x01  # one bit of a stored member
    out["flip-stored"] = z
    z = bytearray(good)
    z[data_at(z, cds[1]) + 40] ^= 0x01  # one bit of a deflated member's stream
    out["flip-deflated"] = z
    z = bytearray(good)
    h = struct.unpack_from("<I", z, cds[0] + 42)[0]
    for at in (cds[0] + 20, cds[0] + 24, h + 18, h + 22):  # both headers understate a.txt
        struct.pack_into("<I", z, at, 200_000)
    out["understated"] = z
    z = bytearray(good)
    for at in (cds[0] + 20, cds[0] + 24):  # the central directory alone understates it
        struct.pack_into("<I", z, at, 200_000)
    out["understated-cd"] = z
    z = bytearray(good)
    for at in (cds[0] + 20, cds[0] + 24, h + 18, h + 22):  # a.txt runs over b.bin's local header
        struct.pack_into("<I", z, at, len(A) + 40)
    out["overlap"] = z
    z = bytearray(good)
    z[h + 30:h + 35] = b"x.txt"  # the local header names another file
    out["local-name"] = z
    return out


def test_damaged_zip_members_are_eio_never_wrong_bytes(hostile, name):
    mnt, bob, eve, team, tmp_path, top = hostile
    model = name("hostile")
    d = os.path.join(mnt, "models", model)
    os.mkdir(d)
    cases = hostile_zips()
    for i, (case, data) in enumerate(cases.items()):
        src = tmp_path / f"{case}.zip"
        src.write_bytes(bytes(data))
        sh("cp", str(src), os.path.join(d, f"v{i}.zip"))
    for i, case in enumerate(cases):
        src = str(tmp_path / f"{case}.zip")
        view = os.path.join(d, f"v{i}")
        for member in ("a.txt", "b.bin", "c.txt"):
            want = python_reads(src, member)
            path = os.path.join(view, member)
            got = read_errno(path)
            if isinstance(want, Exception):
                assert got == errno.EIO, f"{case}/{member}: Python says {want!r}, the mount gave {got if isinstance(got, int) else len(got)}"
                cat = subprocess.run(["cat", path], capture_output=True)
                assert cat.returncode != 0 and b"Input/output error" in cat.stderr, f"{case}/{member}"
                assert subprocess.run(["cp", path, str(tmp_path / "out")], capture_output=True).returncode != 0
            else:
                assert got == want, f"{case}/{member}"
        error = xattr(view, "archive_error")
        assert "a.txt" in error or "b.bin" in error, f"{case}: {error}"


def test_a_read_that_reaches_the_end_out_of_order_gets_the_verdict(hostile, name):
    mnt, bob, eve, team, tmp_path, top = hostile
    model = name("order")
    d = os.path.join(mnt, "models", model)
    os.mkdir(d)
    src = tmp_path / "flip.zip"
    src.write_bytes(bytes(hostile_zips()["flip-stored"]))
    sh("cp", str(src), os.path.join(d, "v1.zip"))
    path = os.path.join(d, "v1", "a.txt")
    fd = os.open(path, os.O_RDONLY)
    try:
        # The tail first (as mmap or a loader might), then the rest: the tail's read is the one
        # that reaches the end, and every read after the verdict is refused too.
        with pytest.raises(OSError) as e:
            os.pread(fd, 4096, len(A) - 4096)
        assert e.value.errno == errno.EIO
        with pytest.raises(OSError) as e:
            os.pread(fd, 4096, 0)
        assert e.value.errno == errno.EIO
    finally:
        os.close(fd)
    assert "a.txt: Bad CRC-32" in xattr(os.path.join(d, "v1"), "archive_error")
    # dd, one page at a time backwards, on a fresh copy: never a whole member without an error.
    sh("cp", str(src), os.path.join(d, "v2.zip"))
    dd = subprocess.run(["dd", f"if={os.path.join(d, 'v2', 'a.txt')}", f"of={tmp_path / 'dd'}", "bs=4096"], capture_output=True)
    assert dd.returncode != 0, dd.stderr


def tar_of(entries, fmt=tarfile.PAX_FORMAT, **kw):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, **kw) as t:
        for name, data, pax in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, 1715949010
            info.pax_headers = pax
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_archives_read_as_tar_unzip_and_python_extract_them(hostile, name):
    mnt, bob, eve, team, tmp_path, top = hostile
    model = name("tools")
    d = os.path.join(mnt, "models", model)
    os.mkdir(d)
    good = bytes(zip_of([("a.txt", A, 0), ("b.bin", B, zipfile.ZIP_DEFLATED)]))
    # A self-extracting zip: a stub in front, offsets left as they were (cat stub a.zip > sfx).
    (tmp_path / "sfx.zip").write_bytes(b"#!/bin/sh\necho stub\nexit 0\n" + b"\0" * 1000 + good)
    # Duplicate names: the last copy is what unzip and Python extract; a/../inside.txt stays inside.
    (tmp_path / "dup.zip").write_bytes(bytes(zip_of([("dup.txt", b"first", 0), ("dup.txt", b"second", 0),
                                                     ("a/../inside.txt", b"inside", 0)])))
    # `tar -r` appends an update: tar extracts the last.
    sh("tar", "-cf", str(tmp_path / "app.tar"), "-C", str(tmp_path), "--files-from=/dev/null")
    (tmp_path / "w.txt").write_text("stale\n")
    sh("tar", "-rf", str(tmp_path / "app.tar"), "-C", str(tmp_path), "w.txt")
    (tmp_path / "w.txt").write_text("fresh update\n")
    sh("tar", "-rf", str(tmp_path / "app.tar"), "-C", str(tmp_path), "w.txt")
    # A gzip of two members (cat a.gz b.gz), as gzip -d and tar read it.
    t = tar_of([("one.txt", b"1" * 70_000, {}), ("two.txt", b"2" * 70_000, {})], tarfile.USTAR_FORMAT)
    (tmp_path / "multi.tar.gz").write_bytes(gzip.compress(t[:40_960]) + gzip.compress(t[40_960:]))
    for i, f in enumerate(["sfx.zip", "dup.zip", "app.tar", "multi.tar.gz"]):
        sh("cp", str(tmp_path / f), os.path.join(d, f"v{i}." + f.split(".", 1)[1]))
    with zipfile.ZipFile(tmp_path / "sfx.zip") as z:
        for member in ("a.txt", "b.bin"):
            assert open(os.path.join(d, "v0", member), "rb").read() == z.read(member)
    assert sorted(os.listdir(os.path.join(d, "v1"))) == ["dup.txt", "inside.txt"]
    with zipfile.ZipFile(tmp_path / "dup.zip") as z:
        assert open(os.path.join(d, "v1", "dup.txt"), "rb").read() == z.read("dup.txt") == b"second"
    out = tmp_path / "x"
    out.mkdir()
    sh("tar", "-xf", str(tmp_path / "app.tar"), "-C", str(out))
    assert open(os.path.join(d, "v2", "w.txt")).read() == (out / "w.txt").read_text() == "fresh update\n"
    with tarfile.open(tmp_path / "multi.tar.gz") as tf:
        assert sorted(os.listdir(os.path.join(d, "v3"))) == sorted(tf.getnames()) == ["one.txt", "two.txt"]
        for member in ("one.txt", "two.txt"):
            assert open(os.path.join(d, "v3", member), "rb").read() == tf.extractfile(member).read()
    for v in ("v0", "v3"):
        with pytest.raises(OSError):
            xattr(os.path.join(d, v), "archive_error")
    assert "dup.txt: an earlier copy" in xattr(os.path.join(d, "v1"), "archive_error")
    assert "w.txt: an earlier copy" in xattr(os.path.join(d, "v2"), "archive_error")


def test_damaged_tars_leave_out_or_refuse_with_their_reasons(hostile, name):
    mnt, bob, eve, team, tmp_path, top = hostile
    model = name("tars")
    d = os.path.join(mnt, "models", model)
    os.mkdir(d)
    # Cut by the end of the archive: Python raises "unexpected end of data"; the view leaves it out.
    whole = tar_of([("whole.txt", b"w" * 700, {}), ("cut.bin", b"c" * 500_000, {})], tarfile.USTAR_FORMAT)
    (tmp_path / "cut.tar").write_bytes(whole[:512 * 4 + 200_000])
    # A gzip trailer whose CRC-32 is wrong: gzip and Python refuse the stream; every member is EIO.
    g = bytearray(gzip.compress(tar_of([("one.txt", b"1" * 3000, {}), ("two.txt", b"2" * 3000, {})], tarfile.USTAR_FORMAT)))
    g[-8] ^= 1
    (tmp_path / "trailer.tar.gz").write_bytes(bytes(g))
    # Two names that differ only in bytes that are not UTF-8, and a PAX sparse member (stored packed).
    names = tar_of([("n\udcffa.txt", b"1", {}), ("n\udcfeb.txt", b"2", {}), ("ok.txt", b"ok", {}),
                    ("GNUSparseFile.0/sparse.bin", b"1\n1048572\n4\n".ljust(512, b"\0") + b"data",
                     {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "sparse.bin",
                      "GNU.sparse.realsize": "1048576"})], tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")
    (tmp_path / "names.tar").write_bytes(names)
    for i, f in enumerate(["cut.tar", "trailer.tar.gz", "names.tar"]):
        sh("cp", str(tmp_path / f), os.path.join(d, f"v{i}." + f.split(".", 1)[1]))
    assert isinstance(python_reads(str(tmp_path / "cut.tar"), "cut.bin"), Exception)
    assert os.listdir(os.path.join(d, "v0")) == ["whole.txt"]
    assert "cut.bin: cut short by the end of the archive" in xattr(os.path.join(d, "v0"), "archive_error")
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(bytes(g))
    for member in ("one.txt", "two.txt"):
        assert read_errno(os.path.join(d, "v1", member)) == errno.EIO
    error = xattr(os.path.join(d, "v1"), "archive_error")
    assert "incorrect data check" in error and "left out" not in error, error
    assert sorted(os.listdir(os.path.join(d, "v2"))) == ["ok.txt"]
    error = xattr(os.path.join(d, "v2"), "archive_error")
    assert error.count("not valid UTF-8") == 2 and "sparse.bin: a sparse file" in error, error


def test_members_are_readable_by_whoever_may_read_the_version(hostile, name):
    mnt, bob, eve, team, tmp_path, top = hostile
    model = name("modes")
    d = os.path.join(mnt, "models", model)
    os.mkdir(d, 0o755)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.json", b'{"a": 1}')  # 0600 in the archive
        z.writestr("sub/weights.bin", B)
    (tmp_path / "m.zip").write_bytes(buf.getvalue())
    sh("cp", str(tmp_path / "m.zip"), os.path.join(d, "v1.zip"))
    os.chown(os.path.join(d, "v1.zip"), -1, team.gr_gid)
    os.chmod(os.path.join(d, "v1.zip"), 0o440)
    member = os.path.join(d, "v1", "config.json")
    deadline = time.time() + 30
    while as_user(BOB, "cat", member).returncode != 0 and time.time() < deadline:
        time.sleep(0.5)  # the mount re-reads the version's owner within a second; the kernel's attribute cache too
    p = as_user(BOB, "cat", member)
    assert p.returncode == 0 and p.stdout == '{"a": 1}', p.stderr
    p = as_user(BOB, "sha256sum", os.path.join(d, "v1", "sub", "weights.bin"))
    assert p.returncode == 0 and p.stdout.split()[0] == hashlib.sha256(B).hexdigest(), p.stderr
    st = os.stat(member)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, team.gr_gid, 0o440)
    p = as_user(EVE, "cat", member)
    assert p.returncode != 0 and "Permission denied" in p.stderr, p


def test_the_mount_answers_another_user_while_damaged_members_are_read(hostile, name):
    mnt, bob, eve, team, tmp_path, top = hostile
    model = name("busy")
    d = os.path.join(mnt, "models", model)
    os.mkdir(d, 0o755)
    src = tmp_path / "flip.zip"
    src.write_bytes(bytes(hostile_zips()["flip-deflated"]))
    sh("cp", str(src), os.path.join(d, "v1.zip"))
    os.chmod(os.path.join(d, "v1.zip"), 0o444)
    good = os.path.join(top, "good.bin")  # where bob can read it too
    with open(good, "wb") as f:
        f.write(os.urandom(3 << 20))
    os.chmod(good, 0o644)
    sh("cp", str(good), os.path.join(d, "v2.pt"))
    # Eve reads the damaged members in a loop, from several processes.
    attack = "while :; do cat {0}/a.txt {0}/b.bin >/dev/null 2>&1; done".format(os.path.join(d, "v1"))
    # Each in a process group of its own: killing runuser alone would leave its shell looping.
    attackers = [subprocess.Popen(["runuser", "-u", EVE, "--", "sh", "-c", attack], start_new_session=True)
                 for _ in range(4)]
    try:
        for _ in range(5):
            p = as_user(BOB, "cmp", os.path.join(d, "v2.pt"), good)
            assert p.returncode == 0, p.stderr
            assert read_errno(os.path.join(d, "v1", "b.bin")) == errno.EIO
        assert all(a.poll() is None for a in attackers), "the attack still ran while bob read"
    finally:
        for a in attackers:
            try:
                os.killpg(a.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            a.wait()


def safetensors_bytes(tensors, pad_to=None):
    """A safetensors file of U8 tensors {name: length}, its JSON header padded (in __metadata__) to
    `pad_to` bytes exactly."""
    header, at = {}, 0
    for n, length in tensors.items():
        header[n] = {"dtype": "U8", "shape": [length], "data_offsets": [at, at + length]}
        at += length
    header["__metadata__"] = {"pad": ""}
    raw = json.dumps(header, separators=(",", ":")).encode()
    if pad_to:
        header["__metadata__"]["pad"] = "x" * (pad_to - len(raw))
        raw = json.dumps(header, separators=(",", ":")).encode()
        assert len(raw) == pad_to
    return struct.pack("<Q", len(raw)) + raw + bytes(at)


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_safetensors_headers_at_the_limits(hostile, name):
    mnt, bob, eve, team, tmp_path, top = hostile
    model = name("st")
    d = os.path.join(mnt, "models", model)
    os.mkdir(d)
    exact = safetensors_bytes({"w": 16}, pad_to=65535)
    raw = json.dumps({"w": {"dtype": "U8", "shape": [8], "data_offsets": [-8, 0]}}).encode()
    negative = struct.pack("<Q", len(raw)) + raw + bytes(8)
    for v, data in (("v1", exact), ("v2", negative)):
        (tmp_path / v).write_bytes(data)
        sh("cp", str(tmp_path / v), os.path.join(d, v + ".safetensors"))
    # Exactly 65,535 bytes of JSON fit the kernel's 65,536-byte limit on an xattr's value: shown whole.
    assert xattr(os.path.join(d, "v1.safetensors"), "safetensors_header").encode() == exact[8:8 + 65535]
    # Offsets before the data (into the header) are no tensor.
    assert "non-negative" in xattr(os.path.join(d, "v2.safetensors"), "safetensors_error")
    with pytest.raises(OSError):
        xattr(os.path.join(d, "v2.safetensors"), "tensors")


# What the mount keeps of a parsed header does not depend on where the bytes live: one store (s3api,
# the S3 read path) is enough, and each case costs over a minute in a debug build.
@pytest.mark.parametrize("store", ["s3"], indirect=True)
def test_hostile_safetensors_headers_do_not_stay_in_the_mounts_memory(hostile, name):
    mnt, bob, eve, team, tmp_path, top = hostile
    model = name("big-headers")
    d = os.path.join(mnt, "models", model)
    os.mkdir(d)
    hostile_header = safetensors_bytes({f"t{i:06d}": 1 for i in range(100_000)}, pad_to=10 << 20)
    (tmp_path / "h.safetensors").write_bytes(hostile_header)
    sh("cp", str(tmp_path / "h.safetensors"), os.path.join(d, "v0.safetensors"))
    assert xattr(os.path.join(d, "v0.safetensors"), "tensors") == "100000"
    before = rss_mib(MOUNT_PIDS[mnt])
    for i in range(1, 5):
        sh("cp", str(tmp_path / "h.safetensors"), os.path.join(d, f"v{i}.safetensors"))
        assert xattr(os.path.join(d, f"v{i}.safetensors"), "tensors") == "100000"
    with pytest.raises(OSError):
        xattr(os.path.join(d, "v4.safetensors"), "safetensors_header")  # 10 MiB: no xattr can hold it
    grown = rss_mib(MOUNT_PIDS[mnt]) - before
    assert grown < 150, f"the mount kept {grown:.0f} MiB more after 4 hostile headers"


# Raw tar and zip records, to build what no library writes (sizes on directories, hidden records).
def tar_header(name, size, kind=b"0"):
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % 1715949010
    h[156:157] = kind
    h[257:265] = b"ustar\x0000"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def tar_pad(b):
    return b + b"\0" * (-len(b) % 512)


def pax_header(records, kind=b"x"):
    body = b""
    for k, v in records:
        r = b" %s=%s\n" % (k, v)
        n = len(r) + 1
        while len(str(n)) + len(r) != n:
            n += 1
        body += str(n).encode() + r
    return tar_header(b"PaxHeader", len(body), kind) + tar_pad(body)


def tar_file(name, data):
    return tar_header(name, len(data)) + tar_pad(data)


def zip_local(name, data):
    return struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, 0, 0, 0x58a0, zlib.crc32(data), len(data), len(data), len(name), 0) + name + data


def zip_central(name, data, offset):
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 0x031e, 20, 0, 0, 0, 0x58a0, zlib.crc32(data), len(data), len(data),
                       len(name), 0, 0, 0, 0, 0o100644 << 16, offset) + name


def zip_end(count, size, offset, comment_length):
    return struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, count, count, size, offset, comment_length)


def misread_archives():
    """name -> bytes: archives where a view that reads headers otherwise than GNU tar, unzip and
    Python would show config.json as EVIL, while those tools extract GOOD (or refuse)."""
    end = b"\0" * 1024
    out = {
        # A pax size overrides the header's: tar skips 2048 bytes, past a hidden config.json.
        "paxsize.tar": tar_file(b"config.json", b"GOOD") + pax_header([(b"size", b"2048")]) + tar_header(b"blob", 0)
        + tar_file(b"config.json", b"EVIL") + end,
        # Directories and links have no data whatever their size says: the next header follows.
        "dirsize.tar": tar_file(b"config.json", b"EVIL") + tar_header(b"d/", 1024, b"5") + tar_file(b"config.json", b"GOOD") + end,
        "linksize.tar": tar_file(b"config.json", b"EVIL") + tar_header(b"l", 1024, b"2") + tar_file(b"config.json", b"GOOD") + end,
        "oldslash.tar": tar_file(b"config.json", b"EVIL") + tar_header(b"d/", 1024, b"\0") + tar_file(b"config.json", b"GOOD") + end,
        # A global header naming members: GNU tar and Python apply it differently; refused.
        "globalpath.tar": tar_file(b"config.json", b"EVIL") + pax_header([(b"path", b"config.json")], b"g")
        + tar_file(b"decoy.txt", b"GOOD") + end,
    }
    # The end record unzip and Python read is the last one, here inside another's comment.
    o = bytearray()
    evil_at = len(o)
    o += zip_local(b"config.json", b"EVIL")
    good_at = len(o)
    o += zip_local(b"config.json", b"GOOD")
    cd_evil = zip_central(b"config.json", b"EVIL", evil_at)
    cd_at = len(o)
    o += cd_evil
    cd_good = zip_central(b"config.json", b"GOOD", good_at)
    comment = cd_good + zip_end(1, len(cd_good), len(o) + 22, 0) + b"X"
    o += zip_end(1, len(cd_evil), cd_at, len(comment)) + comment
    out["eocd.zip"] = bytes(o)
    # An end record counting one entry of a directory that holds two: the second is read too.
    o = bytearray()
    first = len(o)
    o += zip_local(b"config.json", b"EVIL")
    second = len(o)
    o += zip_local(b"config.json", b"GOOD")
    cd = zip_central(b"config.json", b"EVIL", first) + zip_central(b"config.json", b"GOOD", second)
    at = len(o)
    o += cd + zip_end(1, len(cd), at, 0)
    out["count.zip"] = bytes(o)
    return out


def test_headers_are_read_where_tar_unzip_and_python_read_them(hostile, name, tmp_path):
    """Archives built so that reading their headers otherwise than GNU tar, unzip and Python do shows
    other bytes under a name: config.json through the view is what those tools extract (GOOD), or
    is left out, or the view is refused with its reason; never EVIL."""
    mnt = hostile[0]
    model = name("misread")
    d = os.path.join(mnt, "models", model)
    os.mkdir(d)
    for i, (what, data) in enumerate(misread_archives().items()):
        (tmp_path / what).write_bytes(data)
        if what.endswith(".tar"):
            out = tmp_path / f"x{i}"
            out.mkdir()
            if subprocess.run(["tar", "-xf", str(tmp_path / what), "-C", str(out)], capture_output=True).returncode == 0:
                assert (out / "config.json").read_bytes() == b"GOOD", what
        else:
            assert python_reads(str(tmp_path / what), "config.json") == b"GOOD", what
        version = f"v{i}." + what.split(".", 1)[1]
        sh("cp", str(tmp_path / what), os.path.join(d, version))
        got = read_errno(os.path.join(d, f"v{i}", "config.json"))
        assert got in (b"GOOD", errno.ENOENT, errno.EIO, errno.ENOTDIR), (what, got)
        if what in ("dirsize.tar", "linksize.tar", "oldslash.tar", "paxsize.tar", "eocd.zip", "count.zip"):
            assert got == b"GOOD", (what, got)
        if what in ("dirsize.tar", "oldslash.tar"):
            assert os.path.isdir(os.path.join(d, f"v{i}", "d")), what  # type NUL and a name ending in /: a directory
    assert "global pax header" in xattr(os.path.join(d, "v4"), "archive_error")


def test_a_path_of_a_million_segments_is_left_out_and_costs_nothing(hostile, name, tmp_path):
    """A 947-byte .tar.gz whose pax path is `a/` 400,000 times: every prefix would be a directory of
    the view (1.6e11 bytes of names); it is left out, the rest is listed, the mount stays small."""
    mnt = hostile[0]
    model = name("deep")
    d = os.path.join(mnt, "models", model)
    os.mkdir(d)
    t = pax_header([(b"path", b"a/" * 400_000 + b"f")]) + tar_file(b"deep", b"x") + tar_file(b"ok.txt", b"ok") + b"\0" * 1024
    (tmp_path / "deep.tar.gz").write_bytes(gzip.compress(t))
    assert (tmp_path / "deep.tar.gz").stat().st_size < 4096
    sh("cp", str(tmp_path / "deep.tar.gz"), os.path.join(d, "v1.tar.gz"))
    assert os.listdir(os.path.join(d, "v1")) == ["ok.txt"]
    assert "a path longer than 4096 bytes" in xattr(os.path.join(d, "v1"), "archive_error")
    rss = int(next(l for l in open(f"/proc/{MOUNT_PIDS[mnt]}/status") if l.startswith("VmHWM")).split()[1])
    assert rss < 1 << 20, f"the mount's peak RSS reached {rss} KiB"
