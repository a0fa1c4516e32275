"""Two nodes racing for one name, through real mounts: two mounts of one bucket and one catalog
(the first mount's SQLite file), each with its own data dir, each driven by `rm`, `mv`, `cp` and
`mkdir` on its own thread (issue 22: rename against unlink, rename against create of the old name,
two nodes renaming one model).

Real mounts cannot hold one node between its read and its write, so these rounds check what must
hold whatever the interleaving: only the errno docs/SEMANTICS.md names, nothing lost, every name listed
reads its own bytes, bucket and catalog agree. The interleavings the races are about are forced in
Tests/ModelFSTests/RaceTests.swift, which fails on the code that had them.
`MODELFS_RACE_ROUNDS=50` for the soak; a few rounds otherwise."""
import errno
import os
import threading

import pytest

from conftest import Store
from helpers import make_file, sha256_file

ROUNDS = int(os.environ.get("MODELFS_RACE_ROUNDS", "3"))


@pytest.fixture
def two_nodes(s3store, mounts, tmp_path):
    """A mount of `s3store` (node one) and a second mount of its bucket and catalog with a data dir of its own."""
    one = mounts(s3store)
    node2 = Store(s3store.kind, str(tmp_path / "node2"), s3store.endpoint, impl=s3store.impl, bucket=s3store.bucket)
    return one, mounts(node2, env=node2.env(MODELFS_CATALOG=s3store.db))


def together(*steps):
    """Runs each step on its own thread, all at once; returns each one's OSError errno (0: done)."""
    results = [None] * len(steps)
    start = threading.Barrier(len(steps))

    def run(i, step):
        start.wait()
        try:
            step()
            results[i] = 0
        except OSError as e:
            results[i] = e.errno

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(steps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def copy(src, dst):
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read())


def check_consistent(node):
    """Every version listed reads back whole with the sha256 its catalog row records, and the
    bucket (this test's own) holds exactly the catalog's objects: nothing lost, nothing left over.
    `node` is node one: its store's CLI runs on the shared catalog."""
    keys = set()
    for model in os.listdir(node.p("models")):
        for version, v in node.store.versions(model).items():
            assert v["status"] == "ready", v
            path = node.p("models", model, v["file"])
            assert sha256_file(path) == v["sha256"], path
            keys.add(v["key"])
    assert {k for k in node.store.keys() if not k.startswith(".")} == keys


def rename_and_remake(node, model, new_name):
    """`mv models/<model> models/<new_name> && mkdir models/<model>` on `node`."""
    return lambda: (os.rename(node.p("models", model), node.p("models", new_name)), os.mkdir(node.p("models", model)))


def model_names(node):
    return set(os.listdir(node.p("models")))


def test_unlink_against_rename_and_create_of_the_name(two_nodes, name, tmp_path):
    one, two = two_nodes
    for round in range(ROUNDS):
        model = name(f"unlink{round}")
        old, new = make_file(tmp_path / "old.pt", 300_000, seed=round), make_file(tmp_path / "new.pt", 200_000, seed=round + 99)
        os.mkdir(one.p("models", model))
        copy(make_file(tmp_path / "keep.pt", 1000, seed=7), one.p("models", model, "keep.pt"))
        copy(old, one.p("models", model, "v1.pt"))
        os.stat(one.p("models", model, "v1.pt"))  # node one's kernel knows v1 now

        def rename_and_create():
            os.rename(two.p("models", model, "v1.pt"), two.p("models", model, "v1-old.pt"))
            copy(new, two.p("models", model, "v1.pt"))

        rm, mv = together(lambda: os.unlink(one.p("models", model, "v1.pt")), rename_and_create)
        assert rm in (0, errno.ENOENT) and mv in (0, errno.ENOENT), (round, rm, mv)
        left = set(os.listdir(two.p("models", model)))
        assert "keep.pt" in left and left <= {"keep.pt", "v1.pt", "v1-old.pt"}, left
        if "v1.pt" in left and mv == 0:
            assert sha256_file(two.p("models", model, "v1.pt")) == sha256_file(new)
        check_consistent(one)


def test_create_against_rename_of_its_model_and_create_of_the_old_name(two_nodes, name, tmp_path):
    one, two = two_nodes
    src = make_file(tmp_path / "v2.pt", 250_000, seed=3)
    for round in range(ROUNDS):
        model = name(f"create{round}")
        os.mkdir(one.p("models", model))
        os.listdir(one.p("models", model))
        cp, mv = together(lambda: copy(src, one.p("models", model, "v2.pt")), rename_and_remake(two, model, model + "-old"))
        assert cp in (0, errno.ENOENT) and mv == 0, (round, cp, mv)
        holders = [m for m in (model, model + "-old") if "v2.pt" in os.listdir(two.p("models", m))]
        assert len(holders) == (1 if cp == 0 else 0), (round, cp, holders)
        check_consistent(one)


def test_two_nodes_renaming_one_model(two_nodes, name, tmp_path):
    one, two = two_nodes
    src = make_file(tmp_path / "v1.pt", 100_000, seed=5)
    for round in range(ROUNDS):
        m, a, b = name(f"ren{round}"), name(f"a{round}"), name(f"b{round}")
        os.mkdir(one.p("models", m))
        copy(src, one.p("models", m, "v1.pt"))
        os.stat(one.p("models", m))
        first, second = together(lambda: os.rename(one.p("models", m), one.p("models", a)), rename_and_remake(two, m, b))
        assert first in (0, errno.ENOENT) and second in (0, errno.ENOENT), (round, first, second)
        names = model_names(two) & {m, a, b}
        # Two models now (the first and the new one), none lost; the first keeps its version.
        assert len(names) == (2 if second == 0 else 1), (round, names)
        with_v1 = [x for x in names if "v1.pt" in os.listdir(two.p("models", x))]
        assert len(with_v1) == 1, (round, names, with_v1)
        check_consistent(one)
