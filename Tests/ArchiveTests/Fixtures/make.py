#!/usr/bin/env python3
"""Makes the archive fixtures of Tests/ArchiveTests (and the fuzzers' seed corpus): good archives
of a small Hugging Face-style model directory, and hostile ones. Deterministic: run it again
and the files come out the same."""
import gzip
import io
import os
import struct
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
T = (2024, 5, 17, 12, 30, 10)
FILES = {
    "config.json": b'{"model_type": "bert", "hidden_size": 8}\n',
    "tokenizer.json": b'{"version": "1.0", "vocab": {"a": 0, "b": 1}}\n' * 40,
    "model-00001-of-00002.safetensors": bytes(range(256)) * 64,
    "model-00002-of-00002.safetensors": bytes(reversed(range(256))) * 32,
    "nested/deeper/notes.txt": b"nested member\n" * 100,
}


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def zip_bytes(entries, **kw):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", **kw) as z:
        for name, data, method in entries:
            info = zipfile.ZipInfo(name, T)
            info.compress_type = method
            info.external_attr = (0o100644 << 16) if not name.endswith("/") else (0o040755 << 16) | 0x10
            info.create_system = 3
            z.writestr(info, data)
    return buf.getvalue()


def model_entries():
    out = [("nested/", b"", zipfile.ZIP_STORED)]
    for i, (name, data) in enumerate(FILES.items()):
        out.append((name, data, zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED))
    return out


def tar_bytes(fmt, extra=()):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        d = tarfile.TarInfo("nested")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1715949010
        t.addfile(d)
        for name, data in list(FILES.items()) + list(extra):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1715949010
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main():
    write("model.zip", zip_bytes(model_entries()))
    # zip64 records even for a small archive: the reader must follow them.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", allowZip64=True) as z:
        for name, data, method in model_entries():
            info = zipfile.ZipInfo(name, T)
            info.compress_type = method
            info.external_attr = (0o100644 << 16) if not name.endswith("/") else (0o040755 << 16) | 0x10
            info.create_system = 3
            with z.open(info, "w", force_zip64=True) as f:
                f.write(data)
    write("zip64.zip", buf.getvalue())
    long_name = "long/" + "x" * 150 + "/weights.bin"
    write("model.tar", tar_bytes(tarfile.USTAR_FORMAT))
    write("pax.tar", tar_bytes(tarfile.PAX_FORMAT, [(long_name, b"pax long name\n"), ("ünï/çødé.txt", b"utf-8\n")]))
    write("gnu.tar", tar_bytes(tarfile.GNU_FORMAT, [(long_name, b"gnu long name\n")]))
    # mtime 0 in the gzip header: the same bytes every time.
    write("model.tar.gz", gzip.compress(tar_bytes(tarfile.USTAR_FORMAT), mtime=0))
    # 24 MiB of text (a few KiB compressed) behind a small member: access points every 8 MiB.
    block = b"".join(b"line %04d of the big member\n" % i for i in range(1000))
    lines = block * (24 * 1024 * 1024 // len(block))
    write("big.tar.gz", gzip.compress(tar_bytes(tarfile.USTAR_FORMAT, [("big/text.txt", lines)]), mtime=0))
    whole = gzip.compress(tar_bytes(tarfile.USTAR_FORMAT), mtime=0)
    write("truncated.tar.gz", whole[: len(whole) * 2 // 3])

    # Hostile zips.
    write("traversal.zip", zip_bytes([("../evil.txt", b"x", 0), ("/etc/passwd", b"y", 0), ("ok.txt", b"ok", 0),
                                      ("a/../../b.txt", b"z", 0), ("dup.txt", b"1", 0), ("dup.txt", b"2", 0)]))
    good = zip_bytes(model_entries())
    write("truncated.zip", good[: len(good) // 2])
    write("tail-only.zip", good[-40:])
    # The end record's central directory offset pointed past the file.
    eocd = good.rfind(b"PK\x05\x06")
    bad = bytearray(good)
    struct.pack_into("<I", bad, eocd + 16, len(good) + 1000)
    write("cd-outside.zip", bytes(bad))
    # A member whose local header offset points past the central directory.
    cd = struct.unpack_from("<I", good, eocd + 16)[0]
    second = cd + 46 + sum(struct.unpack_from("<HHH", good, cd + 28))  # config.json's entry
    bad = bytearray(good)
    struct.pack_into("<I", bad, second + 42, len(good) * 4)
    write("member-outside.zip", bytes(bad))
    # A deflated member declared 100 bytes that inflates to 1 MiB (a bomb), and one declared larger than it is.
    bomb = bytearray(zip_bytes([("bomb.bin", b"\0" * (1 << 20), zipfile.ZIP_DEFLATED),
                                ("short.bin", b"s" * 1000, zipfile.ZIP_DEFLATED)]))
    e = bomb.rfind(b"PK\x05\x06")
    c = struct.unpack_from("<I", bomb, e + 16)[0]
    struct.pack_into("<I", bomb, c + 24, 100)
    n = struct.unpack_from("<H", bomb, c + 28)[0] + struct.unpack_from("<H", bomb, c + 30)[0] + struct.unpack_from("<H", bomb, c + 32)[0]
    struct.pack_into("<I", bomb, c + 46 + n + 24, 5000)
    write("bomb.zip", bytes(bomb))
    # Encrypted flag, an unsupported method (bzip2), a symlink.
    odd = bytearray(zip_bytes([("secret.bin", b"s" * 10, 0), ("bz.bin", b"b" * 10, 0), ("link", b"target", 0), ("plain.txt", b"p", 0)]))
    e = odd.rfind(b"PK\x05\x06")
    c = struct.unpack_from("<I", odd, e + 16)[0]
    entries = []
    while odd[c:c + 4] == b"PK\x01\x02":
        entries.append(c)
        c += 46 + sum(struct.unpack_from("<HHH", odd, c + 28))
    struct.pack_into("<H", odd, entries[0] + 8, 1)
    struct.pack_into("<H", odd, entries[1] + 10, 12)
    struct.pack_into("<I", odd, entries[2] + 38, 0o120777 << 16)
    write("odd.zip", bytes(odd))

    # Hostile tars: a symlink, a device, a FIFO, a hard link, traversal, a truncated member.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, kind in [("link", tarfile.SYMTYPE), ("dev", tarfile.CHRTYPE), ("fifo", tarfile.FIFOTYPE), ("hard", tarfile.LNKTYPE)]:
            i = tarfile.TarInfo(name)
            i.type = kind
            i.linkname = "ok.txt" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            t.addfile(i)
        for name in ["../evil.txt", "/abs.txt", "ok.txt"]:
            i = tarfile.TarInfo(name)
            i.size = 2
            t.addfile(i, io.BytesIO(b"ok"))
    write("odd.tar", buf.getvalue())
    whole = tar_bytes(tarfile.USTAR_FORMAT)
    write("truncated.tar", whole[: 512 * 3 + 100])
    write("not-an-archive.bin", b"just some bytes, not a tar header" * 20)
    hostile()


def central_entries(z):
    """Offsets of each central directory entry of the zip bytes `z`."""
    e = z.rfind(b"PK\x05\x06")
    c = struct.unpack_from("<I", z, e + 16)[0]
    out = []
    while z[c:c + 4] == b"PK\x01\x02":
        out.append(c)
        c += 46 + sum(struct.unpack_from("<HHH", z, c + 28))
    return out


def local_data(z, cd):
    """Where the data of the member whose central entry is at `cd` begins."""
    h = struct.unpack_from("<I", z, cd + 42)[0]
    return h + 30 + sum(struct.unpack_from("<HH", z, h + 26))


def hostile():
    """Archives whose bytes lie: each must be refused (EIO) or left out, never served wrong."""
    two = [("a.txt", b"a" * 1000, zipfile.ZIP_STORED), ("b.txt", b"b" * 5000, zipfile.ZIP_DEFLATED), ("c.txt", b"c", 0)]
    good = zip_bytes(two)
    cds = central_entries(good)
    # A bit flipped in a stored member's data, and a deflated member's CRC-32 changed in both headers.
    z = bytearray(good)
    z[local_data(z, cds[0]) + 500] ^= 1
    crc = struct.unpack_from("<I", z, cds[1] + 16)[0] ^ 0x10
    struct.pack_into("<I", z, cds[1] + 16, crc)
    struct.pack_into("<I", z, struct.unpack_from("<I", z, cds[1] + 42)[0] + 14, crc)
    write("bad-crc.zip", bytes(z))
    # The central directory understates a.txt (600 of 1000 bytes) while its local header says 1000.
    z = bytearray(good)
    for f in (20, 24):
        struct.pack_into("<I", z, cds[0] + f, 600)
    write("understated.zip", bytes(z))
    # a.txt said 1000 + 100 bytes everywhere: its data runs into b.txt's local header.
    z = bytearray(good)
    h = struct.unpack_from("<I", z, cds[0] + 42)[0]
    for base in (cds[0] + 20, cds[0] + 24, h + 18, h + 22):
        struct.pack_into("<I", z, base, 1100)
    write("overlap.zip", bytes(z))
    # The local header of a.txt names another file (same length).
    z = bytearray(good)
    h = struct.unpack_from("<I", z, cds[0] + 42)[0]
    z[h + 30:h + 35] = b"x.txt"
    write("local-name.zip", bytes(z))
    # A stub in front whose length the offsets leave out (cat stub archive.zip > sfx).
    write("sfx.zip", b"#!/bin/sh\necho a self-extracting stub\nexit 0\n" + b"\0" * 200 + good)
    # Two copies of one name: the last is what unzip and Python extract; a/../inside.txt stays inside.
    write("dup-last.zip", zip_bytes([("dup.txt", b"first", 0), ("dup.txt", b"second", 0), ("a/../inside.txt", b"in", 0)]))
    # Two names that differ only in bytes that are not UTF-8, the UTF-8 flag set.
    z = bytearray(zip_bytes([("n\xe9a.txt", b"1", 0), ("n\xe9b.txt", b"2", 0), ("ok.txt", b"ok", 0)]))
    for cd in central_entries(bytes(z)):
        h = struct.unpack_from("<I", z, cd + 42)[0]
        n = struct.unpack_from("<H", z, cd + 28)[0]
        for at in (cd + 46, h + 30):
            name = bytes(z[at:at + n]).replace("é".encode(), b"\xff\xfe")
            if len(name) == n:
                z[at:at + n] = name
    write("bad-utf8.zip", bytes(z))

    def tar_of(entries, fmt=tarfile.PAX_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
            for name, data, pax in entries:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o600, 1715949010
                info.pax_headers = pax
                t.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    # `tar -r` appended an update of w.txt; a PAX sparse member (GNU 1.0), stored packed.
    write("dup-last.tar", tar_of([("w.txt", b"stale", {}), ("x/../inside.txt", b"in", {}), ("w.txt", b"fresh", {}),
                                 ("GNUSparseFile.0/sparse.bin", b"1\n1048572\n4\n".ljust(512, b"\0") + b"data", {
                                     "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "sparse.bin",
                                     "GNU.sparse.realsize": "1048576"})]))
    # A tar whose second member is cut by the end of the archive.
    whole = tar_of([("whole.txt", b"w" * 700, {}), ("cut.bin", b"c" * 5000, {})], tarfile.USTAR_FORMAT)
    write("cut-member.tar", whole[:512 * 4 + 1000])
    # Written to a pipe (no seeking back): each member's CRC-32 and sizes follow its data in a
    # data descriptor, and its local header leaves them zero.
    class Pipe(io.RawIOBase):
        def __init__(self):
            self.buf = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.buf += b
            return len(b)

    pipe = Pipe()
    with zipfile.ZipFile(pipe, "w") as z:
        for name, data, method in two:
            info = zipfile.ZipInfo(name, T)
            info.compress_type = method
            with z.open(info, "w") as f:
                f.write(data)
    write("streamed.zip", bytes(pipe.buf))
    # A .tar.gz of two gzip members (as `cat a.gz b.gz`), and one whose trailer's CRC-32 is wrong.
    t = tar_of([("one.txt", b"1" * 3000, {}), ("two.txt", b"2" * 3000, {})], tarfile.USTAR_FORMAT)
    write("multi.tar.gz", gzip.compress(t[:2048], mtime=0) + gzip.compress(t[2048:], mtime=0))
    g = bytearray(gzip.compress(t, mtime=0))
    g[-8] ^= 1
    write("bad-trailer.tar.gz", bytes(g))


if __name__ == "__main__":
    main()
