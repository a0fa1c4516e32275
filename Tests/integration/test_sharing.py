"""Owners and sharing with a second and a third user (useradd) on a mount with --allow-other:
what a user may read, change and run is decided by owners and modes (the kernel checks them,
default_permissions); chmod, chown and chgrp follow Unix rules; jobs run as the user who asked;
rsync -a and cp -p into the mount exit 0; owners, modes and aliases survive a remount; the
audit trail says who did what."""
import grp
import json
import os
import pwd
import shutil
import subprocess
import time

import pytest

from helpers import make_file, sh, sha256_file, shared_top

# The registry is the same whatever S3 holds the bytes: on every S3 implementation the suite starts.
pytestmark = pytest.mark.every_s3

TEAM, BOB, EVE = "modelfs-team", "modelfs-bob", "modelfs-eve"
# Every job prints whose it is; NAP=seconds keeps it running (for cancels).
TRAIN = 'echo "uid $(id -u) gid $(id -g)"; if [ -n "$MODELFS_PARAM_NAP" ]; then sleep "$MODELFS_PARAM_NAP"; fi'


def ensure_users():
    subprocess.run(["groupadd", "-f", TEAM], check=True)
    for user, groups in ((BOB, [TEAM]), (EVE, [])):
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-M", "-s", "/bin/sh", *(["-G", ",".join(groups)] if groups else []), user], check=True)
    # A user made earlier (another run racing on /etc/group, a machine set up by hand) may lack the group.
    if BOB not in grp.getgrnam(TEAM).gr_mem:
        subprocess.run(["usermod", "-a", "-G", TEAM, BOB], check=True)
    return pwd.getpwnam(BOB), pwd.getpwnam(EVE), grp.getgrnam(TEAM)


def as_user(user, *argv, check=False):
    """Runs argv as `user` (with their groups), as a shell of theirs would."""
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, check=check)


def assert_ran_as(jobdir, user, timeout=120):
    """Waits for the job to end; it succeeded, and its command said it ran as `user`."""
    deadline = time.time() + timeout
    while open(os.path.join(jobdir, "status")).read().strip() in ("queued", "running") and time.time() < deadline:
        time.sleep(0.2)
    log = open(os.path.join(jobdir, "log")).read()
    assert open(os.path.join(jobdir, "status")).read().strip() == "succeeded", log
    assert f"uid {user.pw_uid} gid {user.pw_gid}" in log, log


def bobs_model(mnt, model, version):
    """Bob makes `model` with one version of 4 KiB from a file everyone may read; its directory and that file."""
    d = os.path.join(mnt, "models", model)
    src = os.path.join(os.path.dirname(mnt), "w" + os.path.splitext(version)[1])
    with open(src, "wb") as f:
        f.write(os.urandom(4096))
    os.chmod(src, 0o644)
    assert as_user(BOB, "mkdir", d).returncode == 0
    assert as_user(BOB, "cp", src, os.path.join(d, version)).returncode == 0
    return d, src


def refused(p, *reasons):
    return p.returncode != 0 and any(r in p.stderr for r in reasons)


@pytest.fixture
def shared(store, tmp_path, mounts):
    if os.geteuid() != 0:
        pytest.skip("needs root: useradd, and a mount others may use")
    bob, eve, team = ensure_users()
    top, mnt = shared_top(store, "modelfs-share-")
    try:
        with mounts(store, "--allow-other", "--train-command", TRAIN, path=mnt) as m:
            def mount(*extra):
                m.start("--allow-other", "--train-command", TRAIN, *extra)
            yield store, mnt, bob, eve, team, (mount, m.unmount), tmp_path
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_shared_model_is_read_by_its_group_and_changed_by_its_owner_only(shared, name):
    store, mnt, bob, eve, team, (mount, unmount), tmp_path = shared
    model = name("shared")
    src = make_file(tmp_path / "w.safetensors", 256 << 10)
    d = os.path.join(mnt, "models", model)
    os.mkdir(d, 0o750)
    os.chown(d, -1, team.gr_gid)                       # chgrp team
    shutil.copy(src, os.path.join(d, "v1.safetensors"))
    shutil.copy(src, os.path.join(d, "v2.safetensors"))
    os.symlink("v1.safetensors", os.path.join(d, "@production"))
    st = os.stat(d)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, team.gr_gid, 0o750)

    # Bob is in the team: he reads the versions, through the alias too.
    assert as_user(BOB, "sha256sum", os.path.join(d, "v1.safetensors")).stdout.split()[0] == sha256_file(src)
    assert as_user(BOB, "sha256sum", os.path.join(d, "@production")).returncode == 0
    assert as_user(BOB, "ls", d).returncode == 0
    # … and changes nothing of it.
    assert refused(as_user(BOB, "rm", "-f", os.path.join(d, "v2.safetensors")), "Permission denied")
    assert refused(as_user(BOB, "mv", os.path.join(d, "v2.safetensors"), os.path.join(d, "v9.safetensors")), "Permission denied")
    assert refused(as_user(BOB, "ln", "-sfn", "v2.safetensors", os.path.join(d, "@production")), "Permission denied")
    assert refused(as_user(BOB, "rmdir", d), "Permission denied", "Operation not permitted")
    assert refused(as_user(BOB, "mv", d, os.path.join(mnt, "models", model + "-mine")), "Permission denied", "Operation not permitted")
    assert refused(as_user(BOB, "chmod", "0777", d), "Operation not permitted")
    assert refused(as_user(BOB, "chmod", "0400", os.path.join(d, "v1.safetensors")), "Operation not permitted")
    assert os.readlink(os.path.join(d, "@production")) == "v1.safetensors"
    assert sorted(os.listdir(d)) == ["@production", "v1.safetensors", "v2.safetensors"]
    # Eve is not: she cannot even look inside.
    assert refused(as_user(EVE, "ls", d), "Permission denied")
    assert refused(as_user(EVE, "cat", os.path.join(d, "v1.safetensors")), "Permission denied")

    # A version's read bits: the owner takes the group's away, and Bob loses it.
    os.chmod(os.path.join(d, "v2.safetensors"), 0o400)
    assert os.stat(os.path.join(d, "v2.safetensors")).st_mode & 0o777 == 0o600, "and the owner's write bit: its note"
    assert refused(as_user(BOB, "cat", os.path.join(d, "v2.safetensors")), "Permission denied")
    with pytest.raises(PermissionError):
        os.chmod(os.path.join(d, "v1.safetensors"), 0o755)  # never executable

    # Owners and modes survive a remount, and `modelfs models` shows them.
    unmount()
    mount()
    st = os.stat(d)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, team.gr_gid, 0o750)
    assert os.stat(os.path.join(d, "v2.safetensors")).st_mode & 0o777 == 0o600
    assert os.readlink(os.path.join(d, "@production")) == "v1.safetensors"
    row = [m for m in json.loads(store.run("models", "--json").stdout) if m["name"] == model][0]
    assert row["uid"] == 0 and row["gid"] == team.gr_gid and row["mode"] == "750" and row["owner"] == f"root:{TEAM}"

    # The audit trail: who made the model, its versions and alias, and who changed its mode.
    log = json.loads(store.run("log", model, "--json").stdout)
    actions = [e["action"] for e in log]
    assert actions[:1] == ["model.create"] and "alias.set" in actions and "model.chown" in actions and "version.chown" in actions
    assert actions.count("version.create") == 2 and all(e["uid"] == 0 for e in log)


def test_a_user_makes_their_own_model_and_their_job_runs_as_them(shared, name):
    store, mnt, bob, eve, team, _, tmp_path = shared
    model, dataset = name("bobs"), name("data")
    src = make_file(tmp_path / "w.safetensors", 64 << 10)
    os.chmod(tmp_path, 0o755)
    os.chmod(src, 0o644)
    for parent in [tmp_path, *tmp_path.parents]:
        if str(parent) in ("/", "/tmp"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o011)
    d = os.path.join(mnt, "models", model)
    assert as_user(BOB, "mkdir", d).returncode == 0
    assert as_user(BOB, "cp", str(src), os.path.join(d, "v1.safetensors")).returncode == 0
    st = os.stat(os.path.join(d, "v1.safetensors"))
    assert (os.stat(d).st_uid, st.st_uid, st.st_gid) == (bob.pw_uid, bob.pw_uid, bob.pw_gid)
    # rsync -a and cp -p set modes (and, as root, owners) on what they copy: they exit 0.
    p = as_user(BOB, "rsync", "-a", str(src), os.path.join(d, "v2.safetensors"))
    assert p.returncode == 0, p.stderr
    p = as_user(BOB, "cp", "-p", str(src), os.path.join(d, "v3.safetensors"))
    assert p.returncode == 0, p.stderr
    assert subprocess.run(["rsync", "-a", str(src), os.path.join(d, "v4.safetensors")]).returncode == 0
    assert subprocess.run(["install", "-m", "0644", str(src), os.path.join(d, "v5.safetensors")]).returncode == 0
    assert sha256_file(os.path.join(d, "v2.safetensors")) == sha256_file(src)
    # Bob's model is his: Eve may read it (0755 from his umask) but not remove it; root may.
    assert refused(as_user(EVE, "rm", os.path.join(d, "v3.safetensors")), "Permission denied")
    assert refused(as_user(EVE, "rmdir", d), "Permission denied", "Operation not permitted")
    assert refused(as_user(BOB, "chown", EVE, d), "Operation not permitted")  # only root gives away
    os.chown(d, eve.pw_uid, -1)
    assert os.stat(d).st_uid == eve.pw_uid
    os.chown(d, bob.pw_uid, -1)

    # A dataset of his, and a job he submits: it runs under his uid.
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": 0}\n')
    os.chmod(data, 0o644)
    assert as_user(BOB, "cp", str(data), os.path.join(mnt, "datasets", dataset + ".jsonl")).returncode == 0
    submit = os.path.join(mnt, "jobs", "submit")
    p = as_user(BOB, "sh", "-c", f'echo "model={model} version=v1 dataset={dataset}" > {submit}')
    assert p.returncode == 0, p.stderr
    job = f"{model}-v1-ft-1"
    jobdir = os.path.join(mnt, "jobs", job)
    assert os.stat(jobdir).st_uid == bob.pw_uid, "the job's directory shows its owner"
    assert_ran_as(jobdir, bob)
    # Its log is his: Eve cannot read what his command printed.
    assert as_user(BOB, "cat", os.path.join(jobdir, "log")).returncode == 0
    assert refused(as_user(EVE, "cat", os.path.join(jobdir, "log")), "Permission denied")

    # Root's job is root's: Bob cannot cancel it; his own he can.
    root_job = os.path.join(mnt, "jobs", f"{model}-v1-ft-2")
    with open(submit, "w") as f:
        f.write(f"model={model} version=v1 dataset={dataset} nap=30\n")
    bobs_job = os.path.join(mnt, "jobs", f"{model}-v1-ft-3")
    assert as_user(BOB, "sh", "-c", f'echo "model={model} version=v1 dataset={dataset} nap=30" > {submit}').returncode == 0
    assert refused(as_user(BOB, "sh", "-c", f"echo cancel > {root_job}/control"), "Operation not permitted", "Permission denied")
    assert as_user(BOB, "sh", "-c", f"echo cancel > {bobs_job}/control").returncode == 0
    with open(os.path.join(root_job, "control"), "w") as f:
        f.write("cancel\n")
    for j in (root_job, bobs_job):
        deadline = time.time() + 30
        while open(os.path.join(j, "status")).read().strip() in ("queued", "running") and time.time() < deadline:
            time.sleep(0.2)
        assert open(os.path.join(j, "status")).read().strip() == "cancelled"
    jobs = {j["id"]: j for j in json.loads(store.run("jobs", "--json").stdout)}
    assert jobs[job]["owner"] == {"uid": bob.pw_uid, "gid": bob.pw_gid}
    # The trail names Bob for what Bob did.
    log = json.loads(store.run("log", model, "--json").stdout)
    assert any(e["action"] == "model.create" and e["uid"] == bob.pw_uid for e in log)
    assert any(e["action"] == "job.submit" and e["uid"] == bob.pw_uid and e["target"] == job for e in log)


def test_a_versions_owner_annotates_it_and_no_one_else_may(shared, name):
    """Issue 20: the kernel asks for write permission to set a user.* attribute, so on the 0444
    version of an --allow-other mount only root could set its note. Its owner may; anyone else
    gets EACCES; the write bit it shows lets its owner write nothing into it."""
    store, mnt, bob, eve, team, _, tmp_path = shared
    d, src = bobs_model(mnt, name("notes"), "v1.pt")
    v1 = os.path.join(d, "v1.pt")
    p = as_user(BOB, "setfattr", "-n", "user.modelfs.note", "-v", "bob's best", v1)
    assert p.returncode == 0, p.stderr
    assert as_user(EVE, "getfattr", "--only-values", "-n", "user.modelfs.note", v1).stdout == "bob's best"
    assert refused(as_user(EVE, "setfattr", "-n", "user.modelfs.note", "-v", "eve was here", v1), "Permission denied")
    assert as_user(EVE, "test", "-w", v1).returncode != 0
    assert os.getxattr(v1, "user.modelfs.note") == b"bob's best"
    os.setxattr(v1, "user.modelfs.note", b"root's")
    assert as_user(BOB, "getfattr", "--only-values", "-n", "user.modelfs.note", v1).stdout == "root's"
    # Nothing writes a version, its owner neither.
    assert refused(as_user(BOB, "cp", src, v1), "File exists")
    assert refused(as_user(BOB, "sh", "-c", f"echo x >> {v1}"), "Operation not permitted")
    assert refused(as_user(BOB, "truncate", "-s", "0", v1), "Operation not permitted")
    assert refused(as_user(BOB, "python3", "-c", f"import os; os.open({v1!r}, os.O_RDONLY | os.O_TRUNC)"), "File exists")
    assert sha256_file(v1) == sha256_file(src)
    st = os.stat(v1)
    assert (st.st_uid, st.st_mode & 0o777) == (bob.pw_uid, 0o644)


def test_a_slurm_job_runs_as_the_user_who_asked(shared, name):
    """The mount (root) submits another user's job with sbatch --uid/--gid: Slurm runs it as them."""
    store, mnt, bob, eve, team, (mount, unmount), tmp_path = shared
    if not os.environ.get("SLURM_CONF"):
        if os.environ.get("MODELFS_REQUIRE_SLURM") == "1":
            pytest.fail("SLURM_CONF is not set. " + os.environ.get("MODELFS_SLURM_START_ERROR", ""))
        pytest.skip("no Slurm cluster (scripts/test starts one)")
    unmount()
    mount("--executor", "slurm")
    model, dataset = name("bobs"), name("data")
    d, src = bobs_model(mnt, model, "v1.safetensors")
    assert as_user(BOB, "cp", src, os.path.join(mnt, "datasets", dataset + ".csv")).returncode == 0
    submit = os.path.join(mnt, "jobs", "submit")
    p = as_user(BOB, "sh", "-c", f'echo "model={model} version=v1 dataset={dataset}" > {submit}')
    assert p.returncode == 0, p.stderr
    jobdir = os.path.join(mnt, "jobs", f"{model}-v1-ft-1")
    assert_ran_as(jobdir, bob)
    assert json.loads(store.run("jobs", f"{model}-v1-ft-1", "--json").stdout)["executor"] == "slurm"


def test_access_w_ok_follows_the_modes_for_other_users(shared, name):
    """On an --allow-other mount the kernel answers access(2) from owners and modes
    (default_permissions): an archive view and its members carry no write bit, so `test -w` says
    no to their owner too; a ready version shows its owner's write bit (for its note), so its owner
    gets yes there and the write itself is refused; others get no; the owner may write the model
    directory, others not."""
    store, mnt, bob, eve, team, _, tmp_path = shared
    model = name("access")
    src = os.path.join(os.path.dirname(mnt), "a.zip")
    import zipfile
    with zipfile.ZipFile(src, "w") as z:
        info = zipfile.ZipInfo("config.json")
        info.external_attr = 0o644 << 16  # what `zip` records; writestr's default 0600 is another matter
        z.writestr(info, "{}")
    os.chmod(src, 0o644)
    d = os.path.join(mnt, "models", model)
    assert as_user(BOB, "mkdir", d).returncode == 0
    assert as_user(BOB, "cp", src, os.path.join(d, "v1.zip")).returncode == 0
    check = "import os, sys; print(os.access(sys.argv[1], int(sys.argv[2])))"
    def access(user, p, mode):
        return as_user(user, "python3", "-c", check, os.path.join(d, p), str(mode), check=True).stdout.strip() == "True"
    for p in ("v1", "v1/config.json"):
        assert not access(BOB, p, os.W_OK) and access(BOB, p, os.R_OK), p
        assert as_user(BOB, "test", "-w", os.path.join(d, p)).returncode == 1, p
    for p in ("v1.zip", "v1", "v1/config.json"):
        assert not access(EVE, p, os.W_OK) and access(EVE, p, os.R_OK), p
    assert access(BOB, "v1.zip", os.W_OK), "the owner's write bit, kept for the note"
    refused = as_user(BOB, "sh", "-c", f"echo x >> {os.path.join(d, 'v1.zip')}")
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr, refused
    assert access(BOB, "", os.W_OK) and not access(EVE, "", os.W_OK)
    assert as_user(BOB, "test", "-w", d).returncode == 0 and as_user(EVE, "test", "-w", d).returncode == 1


def test_the_audit_trail_names_who_changed_a_note_or_a_type_and_whose_upload_failed(shared, name):
    """`modelfs log`: Bob's note and type on his model, root's note on Bob's version, and Bob's copy
    that died half-way (his writer killed) are each one line naming who."""
    store, mnt, bob, eve, team, _, tmp_path = shared
    model = name("audited")
    d = os.path.join(mnt, "models", model)
    assert as_user(BOB, "mkdir", d).returncode == 0
    assert as_user(BOB, "setfattr", "-n", "user.modelfs.note", "-v", "base model", d).returncode == 0
    assert as_user(BOB, "setfattr", "-n", "user.modelfs.type", "-v", "text", d).returncode == 0
    assert as_user(BOB, "sh", "-c", f"echo weights > {d}/v1.pt").returncode == 0
    sh("setfattr", "-n", "user.modelfs.note", "-v", "checked by root", os.path.join(d, "v1.pt"))
    # Bob's copy dies half-way (SIGKILL): the version fails, and the trail says it was his.
    killed = as_user(BOB, "python3", "-c", f"import os; f = open({os.path.join(d, 'v2.pt')!r}, 'wb'); f.write(b'x' * 4096); "
                                           "f.flush(); os.kill(os.getpid(), 9)")
    assert killed.returncode != 0
    deadline = time.time() + 30
    while time.time() < deadline and os.getxattr(os.path.join(d, "v2.pt"), "user.modelfs.status") != b"failed":
        time.sleep(0.1)
    log = json.loads(store.run("log", model, "--json").stdout)
    lines = {e["action"]: e for e in log if e["action"] in ("model.note", "model.type", "version.note", "version.fail")}
    assert set(lines) == {"model.note", "model.type", "version.note", "version.fail"}, log
    assert lines["model.note"]["uid"] == bob.pw_uid and "base model" in lines["model.note"]["detail"]
    assert lines["model.type"]["uid"] == bob.pw_uid and lines["model.type"]["detail"] == "general → text"
    assert lines["version.note"]["uid"] == 0 and lines["version.note"]["target"] == "v1.pt"
    assert lines["version.fail"]["uid"] == bob.pw_uid and lines["version.fail"]["target"] == "v2.pt"
    assert "killed" in lines["version.fail"]["detail"], lines["version.fail"]
    text = store.run("log", model).stdout
    assert BOB in text and "version.fail" in text and "model.note" in text
