"""Directory listings through the kernel: a directory far larger than one FUSE reply (the kernel
asks for a page of entries at a time, continuing from the offset of the last one it took), read with
`ls`, `find` and Python; names added and removed between pages; a rewind of an open directory."""
import os

from conftest import sh

COUNT = 1_500


def make_models(mount, prefix, count=COUNT):
    names = [f"{prefix}-{i:04d}" for i in range(count)]
    for n in names:
        os.mkdir(mount.p("models", n))
    return names


def ours(names, prefix):
    return [n for n in names if n.startswith(prefix + "-")]


def test_a_directory_of_many_pages_lists_each_name_once(mount, name):
    prefix = name("many")
    made = make_models(mount, prefix)
    models = mount.p("models")

    listed = ours(os.listdir(models), prefix)
    assert sorted(listed) == made and len(set(listed)) == len(listed)
    # `ls -f` reads plain entries, `ls -l` (readdirplus) entries with their attributes, `find` too.
    assert sorted(ours(sh("ls", "-f", models).stdout.split(), prefix)) == made
    long = [line.split()[-1] for line in sh("ls", "-l", models).stdout.splitlines()[1:]]
    assert sorted(ours(long, prefix)) == made
    found = sh("find", models, "-mindepth", "1", "-maxdepth", "1", "-type", "d").stdout.split()
    assert sorted(ours([os.path.basename(f) for f in found], prefix)) == made
    with os.scandir(models) as it:
        not_directories = [e.name for e in it if e.name.startswith(prefix) and not e.is_dir(follow_symlinks=False)]
    assert not_directories == []
    plain = sh("ls", "-f", models).stdout.split()
    assert plain.count(".") == 1 and plain.count("..") == 1


def test_names_changed_between_pages_neither_repeat_nor_hide_the_others(mount, name):
    prefix = name("paged")
    make_models(mount, prefix)
    models = mount.p("models")
    order = ours(os.listdir(models), prefix)
    removed, added = order[-1], f"{prefix}-new"

    # glibc reads 32 KiB of entries per getdents, the kernel asks the mount for 4 KiB per request:
    # after the first entries, most of the directory is still to be read from the mount.
    with os.scandir(models) as it:
        seen = [next(it).name for _ in range(5)]
        os.mkdir(mount.p("models", added))
        os.rmdir(mount.p("models", removed))
        seen += [e.name for e in it]
    seen = ours(seen, prefix)
    assert len(seen) == len(set(seen)), "a name came twice"
    assert set(order) - {removed} <= set(seen), "a name present all along was skipped"

    now = ours(os.listdir(models), prefix)
    assert added in now and removed not in now and len(now) == len(order)


def test_a_rewound_directory_lists_it_as_it_is_now(mount, name):
    prefix = name("rewind")
    make_models(mount, prefix, count=300)
    fd = os.open(mount.p("models"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        # Python lists a descriptor through a duplicate and rewinds it after: the second listing is
        # a read from offset 0 of the same open directory.
        first = ours(os.listdir(fd), prefix)
        os.mkdir(mount.p("models", f"{prefix}-late"))
        os.rmdir(mount.p("models", first[0]))
        second = ours(os.listdir(fd), prefix)
    finally:
        os.close(fd)
    assert len(first) == 300
    assert f"{prefix}-late" in second and first[0] not in second and len(second) == 300
