"""Aliases through a real mount: `ln -s v3.pt models/X/@production`, `readlink`, reads through
the alias, `ln -sfn` moving it while a reader holds the old target open, `rm`, the refusal to
delete an aliased version, the CLI's `alias set|rm|list`, and a remount keeping them; links not
named @something refused, an alias naming a zip version's view (the directory from_pretrained
loads), and rsync -a of a directory holding an alias."""
import errno
import json
import os
import subprocess
import zipfile

import pytest

from helpers import make_file, sh, sha256_file

# The registry is the same whatever S3 holds the bytes: on every S3 implementation the suite starts.
pytestmark = pytest.mark.every_s3


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
    mount.remount()
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


def test_only_at_names_are_aliases_and_no_link_hides_a_view(mount, model, tmp_path):
    """Issue 20: `ln -s v1.pt prod` made an alias `alias list` did not show, and a link named `v8`
    hid the view `v8/` of a later `v8.zip` (and was listed twice)."""
    m, _ = model
    d = mount.p("models", m)
    for bad in ("prod", "v8"):
        with pytest.raises(OSError) as e:
            os.symlink("v1.pt", os.path.join(d, bad))
        assert e.value.errno == errno.EINVAL, bad
        p = subprocess.run(["ln", "-sfn", "v1.pt", os.path.join(d, bad)], capture_output=True, text=True)
        assert p.returncode != 0 and "Invalid argument" in p.stderr, (bad, p.stderr)
    archive = tmp_path / "v8.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("config.json", '{"model_type": "bert"}')
    sh("cp", str(archive), os.path.join(d, "v8.zip"))
    assert sorted(os.listdir(d)) == ["v1.pt", "v2.pt", "v3.pt", "v8", "v8.zip"], "v8 once: the view"
    assert os.path.isdir(os.path.join(d, "v8")) and not os.path.islink(os.path.join(d, "v8"))
    assert open(os.path.join(d, "v8", "config.json")).read() == '{"model_type": "bert"}'
    assert json.loads(mount.store.run("alias", "list", m, "--json").stdout) == []


def zip_model(path, config):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", config)
        z.writestr("tokenizer.json", "{}")
        z.writestr("weights/model.safetensors", b"\0" * 4096)
    return path


def test_an_alias_names_a_zip_versions_view_the_directory_from_pretrained_loads(mount, name, tmp_path):
    """Issue 20: `from_pretrained("<mnt>/models/X/@production")` for a zip version: `ln -s v1
    @production` was refused and `@production -> v1.zip` is a file. An alias to `v1` is the view."""
    m = name()
    d = mount.p("models", m)
    os.mkdir(d)
    for v in ("v1", "v2"):
        sh("cp", str(zip_model(tmp_path / f"{v}.zip", '{"v": "%s"}' % v)), os.path.join(d, f"{v}.zip"))
    production = os.path.join(d, "@production")
    os.symlink("v1", production)
    assert os.readlink(production) == "v1" and os.path.isdir(production)
    # What from_pretrained does with a directory: list it, read config.json, open the weights.
    assert sorted(os.listdir(production)) == ["config.json", "tokenizer.json", "weights"]
    assert json.load(open(os.path.join(production, "config.json"))) == {"v": "v1"}
    assert open(os.path.join(production, "weights", "model.safetensors"), "rb").read() == b"\0" * 4096
    # Without -n, ln puts its link inside the directory the alias names: the view takes none.
    p = subprocess.run(["ln", "-sf", "v2", production], capture_output=True, text=True)
    assert p.returncode != 0 and os.readlink(production) == "v1", p.stderr
    sh("ln", "-sfn", "v2", production)
    assert os.readlink(production) == "v2" and json.load(open(os.path.join(production, "config.json"))) == {"v": "v2"}
    # The file, as before, when the link names it.
    os.symlink("v2.zip", os.path.join(d, "@file"))
    assert zipfile.ZipFile(os.path.join(d, "@file")).read("config.json") == b'{"v": "v2"}'
    # The CLI: v1/ names the view; alias list says what each link says; jobs and the CLI take the version.
    mount.store.run("alias", "set", m, "staging", "v1/")
    assert os.readlink(os.path.join(d, "@staging")) == "v1" and os.path.isdir(os.path.join(d, "@staging"))
    rows = json.loads(mount.store.run("alias", "list", m, "--json").stdout)
    assert {(r["alias"], r["version"], r["file"]) for r in rows} == {("@file", "v2", "v2.zip"), ("@production", "v2", "v2"),
                                                                    ("@staging", "v1", "v1")}
    out = tmp_path / "got.zip"
    mount.store.run("download", m, "@production", "-o", str(out))
    assert zipfile.ZipFile(out).read("config.json") == b'{"v": "v2"}'
    # A version that is no archive has no view to name.
    sh("cp", str(make_file(tmp_path / "w.pt", 1000)), os.path.join(d, "v3.pt"))
    with pytest.raises(OSError) as e:
        os.symlink("v3", os.path.join(d, "@weights"))
    assert e.value.errno == errno.EINVAL
    # A remount keeps what each alias names.
    mount.remount()
    assert os.readlink(production) == "v2" and os.path.isdir(production) and os.path.isfile(os.path.join(d, "@file"))


def test_an_alias_of_an_alias_names_what_the_other_names_when_made(mount, model):
    """docs/SEMANTICS.md: resolved once; moving the first does not move the second."""
    m, files = model
    d = mount.p("models", m)
    os.symlink("v1.pt", os.path.join(d, "@production"))
    os.symlink("@production", os.path.join(d, "@previous"))
    assert os.readlink(os.path.join(d, "@previous")) == "v1.pt"
    sh("ln", "-sfn", "v2.pt", os.path.join(d, "@production"))
    assert os.readlink(os.path.join(d, "@previous")) == "v1.pt"
    assert sha256_file(os.path.join(d, "@previous")) == sha256_file(files["v1"])


def test_rsync_of_a_directory_with_an_alias_needs_a_second_pass(mount, name, tmp_path):
    """rsync makes links before the files they name exist, so its one pass cannot make an alias
    (an alias names a version that is there). docs/SEMANTICS.md's workaround: a second pass
    with --ignore-existing makes the alias and leaves the versions alone."""
    src = tmp_path / "src"
    src.mkdir()
    v1, v2 = make_file(src / "v1.pt", 3000, seed=1), make_file(src / "v2.pt", 3000, seed=2)
    os.symlink("v2.pt", src / "@production")
    m = name()
    d = mount.p("models", m)
    os.mkdir(d)
    p = subprocess.run(["rsync", "-a", f"{src}/", f"{d}/"], capture_output=True, text=True)
    assert p.returncode == 23 and "Invalid argument" in p.stderr, p.stderr
    assert sorted(os.listdir(d)) == ["v1.pt", "v2.pt"]
    p = subprocess.run(["rsync", "-a", "--ignore-existing", f"{src}/", f"{d}/"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert os.readlink(os.path.join(d, "@production")) == "v2.pt"
    assert sha256_file(os.path.join(d, "@production")) == sha256_file(v2) and sha256_file(os.path.join(d, "v1.pt")) == sha256_file(v1)
