"""Aliases through a real mount: `ln -s v3.pt models/X/@production`, `readlink`, reads through
the alias, `ln -sfn` moving it while a reader holds the old target open, `rm`, the refusal to
delete an aliased version, the CLI's `alias set|rm|list`, and a remount keeping them."""
import errno
import json
import os
import subprocess

import pytest

from conftest import is_mounted, make_file, sh, sha256_file

# The registry is the same whatever S3 holds the bytes: on both S3 implementations the suite starts.
pytestmark = pytest.mark.moto


@pytest.fixture
def model(mount, name, tmp_path):
    m = name()
    os.mkdir(mount.p("models", m))
    files = {}
    for v in ["v1", "v2", "v3"]:
        src = make_file(tmp_path / f"{v}.pt", 200_000 + len(files), seed=len(files))
        sh("cp", str(src), mount.p("models", m, f"{v}.pt"))
        files[v] = src
    return m, files


def test_ln_makes_an_alias_and_reads_go_through_it(mount, model):
    m, files = model
    d = mount.p("models", m)
    sh("ln", "-s", "v2.pt", os.path.join(d, "@production"))
    assert os.readlink(os.path.join(d, "@production")) == "v2.pt"
    assert os.path.islink(os.path.join(d, "@production"))
    assert sha256_file(os.path.join(d, "@production")) == sha256_file(files["v2"])
    assert "@production -> v2.pt" in sh("ls", "-l", d).stdout
    aliases = json.loads(mount.store.run("alias", "list", m, "--json").stdout)
    assert [(a["alias"], a["version"]) for a in aliases] == [("@production", "v2")]


def test_ln_sfn_moves_the_alias_while_a_reader_keeps_its_bytes(mount, model):
    m, files = model
    d = mount.p("models", m)
    link = os.path.join(d, "@production")
    sh("ln", "-s", "v1.pt", link)
    with open(link, "rb") as reader:
        head = reader.read(1000)
        sh("ln", "-sfn", "v3.pt", link)
        assert os.readlink(link) == "v3.pt"
        rest = reader.read()
    assert head + rest == files["v1"].read_bytes(), "the open file is still v1"
    assert sha256_file(link) == sha256_file(files["v3"])
    assert sorted(os.listdir(d)) == ["@production", "v1.pt", "v2.pt", "v3.pt"], "no temporary link left"


def test_an_aliased_version_is_not_deleted(mount, model):
    m, _ = model
    d = mount.p("models", m)
    sh("ln", "-s", "v3.pt", os.path.join(d, "@production"))
    with pytest.raises(OSError) as e:
        os.unlink(os.path.join(d, "v3.pt"))
    assert e.value.errno == errno.EBUSY
    p = mount.store.run("version", "rm", m, "v3", check=False)
    assert p.returncode != 0 and "@production" in p.stderr
    sh("rm", os.path.join(d, "@production"))
    assert not os.path.lexists(os.path.join(d, "@production"))
    os.unlink(os.path.join(d, "v3.pt"))
    assert sorted(os.listdir(d)) == ["v1.pt", "v2.pt"]


def test_links_that_are_not_aliases_are_refused(mount, model):
    m, _ = model
    d = mount.p("models", m)
    for target, where in [("v9.pt", d), ("../other/v1.pt", d), ("v1.pt", mount.p("models"))]:
        p = subprocess.run(["ln", "-s", target, os.path.join(where, "@x")], capture_output=True, text=True)
        assert p.returncode != 0, (target, where)
    with pytest.raises(OSError) as e:
        os.link(os.path.join(d, "v1.pt"), os.path.join(d, "@hard"))
    assert e.value.errno == errno.EPERM


def test_the_cli_sets_and_removes_aliases_the_mount_shows(mount, model):
    m, _ = model
    d = mount.p("models", m)
    mount.store.run("alias", "set", m, "staging", "v1")
    assert os.readlink(os.path.join(d, "@staging")) == "v1.pt"
    mount.store.run("alias", "set", m, "@staging", "v2.pt")
    assert os.readlink(os.path.join(d, "@staging")) == "v2.pt"
    mount.store.run("alias", "rm", m, "staging")
    assert not os.path.lexists(os.path.join(d, "@staging"))


def test_aliases_survive_a_remount(mount, model, tmp_path):
    m, files = model
    d = mount.p("models", m)
    sh("ln", "-s", "v1.pt", os.path.join(d, "@production"))
    sh("fusermount3", "-u", mount.path)
    mount.store.run("mount", mount.path)
    assert is_mounted(mount.path)
    assert os.readlink(os.path.join(d, "@production")) == "v1.pt"
    assert sha256_file(os.path.join(d, "@production")) == sha256_file(files["v1"])


def test_racing_movers_and_readers_always_see_one_target(mount, model):
    """Two processes move @production back and forth with `ln -sfn` while a third reads through it:
    every read gets whole bytes of v1 or v2 (never ENOENT, never a mix), and the alias ends on
    one of them, in the catalog and in the mount alike."""
    m, files = model
    d = mount.p("models", m)
    sh("ln", "-s", "v1.pt", os.path.join(d, "@production"))
    movers = [subprocess.Popen(["bash", "-c", f'for i in $(seq 40); do ln -sfn {t} "{d}/@production" || exit 1; done'])
              for t in ("v1.pt", "v2.pt")]
    reader = subprocess.Popen(["bash", "-c", f'for i in $(seq 40); do sha256sum "{d}/@production" || exit 1; done'],
                              stdout=subprocess.PIPE, text=True)
    out, _ = reader.communicate(timeout=300)
    assert [p.wait(timeout=300) for p in movers] == [0, 0]
    assert reader.returncode == 0
    seen = {line.split()[0] for line in out.splitlines()}
    assert seen <= {sha256_file(files["v1"]), sha256_file(files["v2"])} and seen
    target = os.readlink(os.path.join(d, "@production"))
    assert target in ("v1.pt", "v2.pt")
    aliases = json.loads(mount.store.run("alias", "list", m, "--json").stdout)
    assert [(a["alias"], a["version"] + ".pt") for a in aliases] == [("@production", target)]
    assert sorted(n for n in os.listdir(d) if not n.endswith(".pt")) == ["@production"], "no temporary link left behind"
