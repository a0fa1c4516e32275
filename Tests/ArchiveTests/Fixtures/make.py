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


if __name__ == "__main__":
    main()
