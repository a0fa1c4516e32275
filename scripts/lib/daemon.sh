# Shared by the test-server scripts (scripts/s3-server, scripts/slurm-server, scripts/moto-server):
# Debian packages installed without starting their services, a state directory that stop may
# remove, free ports, daemons started in their own session with their pid recorded, waiting for
# them to listen, and stopping them by recorded pid. Sourced, never run.
#
# The sourcing script sets, before calling these functions:
#   DAEMON_NAME   its name, for log lines and lock files (e.g. s3-server)
#   MARKER        the file that marks a state directory as one of its own
#   PACKAGES      (array) the Debian packages it needs, for ensure_packages
# and gets STATE (the absolute state directory) and STATE_CREATED from init_state_dir.

LOCK_DIR=${LOCK_DIR:-/tmp} # flock files shared by parallel invocations

log() { printf '%s: %s\n' "$DAEMON_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- packages --

missing_packages() {
    local pkg status
    for pkg in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        [[ $status == installed ]] || printf '%s\n' "$pkg"
    done
}

# apt must not start the distribution's own daemons of these packages: they would grab their
# default ports and keep running. A policy-rc.d that exits 101 forbids that; ours is put in
# place for the install, then the previous state is restored exactly.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
POLICY_OURS=0
policy_rc_install() {
    if [[ -e $POLICY_RC ]]; then
        POLICY_BACKUP=$(mktemp /tmp/policy-rc.d.modelfs.XXXXXX)
        cp -p "$POLICY_RC" "$POLICY_BACKUP"
    fi
    POLICY_OURS=1
    printf '#!/bin/sh\n# temporary, from modelfs scripts/%s\nexit 101\n' "$DAEMON_NAME" >"$POLICY_RC"
    chmod 755 "$POLICY_RC"
}
policy_rc_restore() {
    ((POLICY_OURS)) || return 0
    if [[ -n $POLICY_BACKUP ]]; then
        mv -f "$POLICY_BACKUP" "$POLICY_RC"
    else
        rm -f "$POLICY_RC"
    fi
    POLICY_OURS=0 POLICY_BACKUP=""
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "$@" >&2
}

# Installs PACKAGES that are missing. $1: a note for the log line (e.g. "(takes ~40 s)").
ensure_packages() {
    local missing
    missing=$(missing_packages)
    [[ -z $missing ]] && return 0
    # Serialise parallel first-time installs; re-check once we hold the lock.
    exec 8>"$LOCK_DIR/modelfs-$DAEMON_NAME.install.lock"
    flock 8
    missing=$(missing_packages)
    if [[ -n $missing ]]; then
        [[ $EUID -eq 0 ]] || die "packages missing (${missing//$'\n'/ }) and not root"
        log "installing: ${missing//$'\n'/ }${1:+ $1}"
        policy_rc_install
        # shellcheck disable=SC2086 # one package name per word
        if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || ! apt_install $missing; then
            log "apt-get install failed or no package lists; running apt-get update"
            apt-get update >&2
            # shellcheck disable=SC2086
            apt_install $missing
        fi
        policy_rc_restore
        missing=$(missing_packages)
        [[ -z $missing ]] || die "still missing after install: ${missing//$'\n'/ }"
    fi
    flock -u 8
    exec 8>&-
}

# --------------------------------------------------------------- state dir --

STATE=""          # absolute state directory
STATE_CREATED=0   # did this run create it (so a failed start may remove it)

# Stop and env must only ever act on directories that start created. $2: what to call it.
require_state_dir() {
    [[ -n ${1-} ]] || usage
    [[ -d $1 ]] || die "no such state directory: $1"
    [[ -f $1/$MARKER ]] || die "$1 is not ${2:-a $DAEMON_NAME} state directory (no $MARKER)"
    STATE=$(cd "$1" && pwd -P)
}

# $1: the directory, or empty for a fresh one under /tmp named after $2 (mktemp template).
# $3: what to call it in messages.
init_state_dir() {
    local dir=${1-}
    if [[ -z $dir ]]; then
        dir=$(mktemp -d "$2")
        STATE_CREATED=1
    elif [[ ! -e $dir ]]; then
        mkdir -p "$dir"
        STATE_CREATED=1
    elif [[ ! -f $dir/$MARKER ]] && [[ -n $(ls -A "$dir") ]]; then
        # stop does rm -rf: refuse to adopt a directory holding other things.
        die "$dir exists, is not empty and is not ${3:-a $DAEMON_NAME} state directory"
    fi
    STATE=$(cd "$dir" && pwd -P)
    touch "$STATE/$MARKER"
    mkdir -p "$STATE/log" "$STATE/run"
}

# -------------------------------------------------------------- processes --

# $STATE/run/pids: one "name pid signature" line per process we started. The signature (a
# string in the process's command line) guards against killing an unrelated process that
# reused a pid after ours died.
record_pid() { printf '%s %s %s\n' "$1" "$2" "$3" >>"$STATE/run/pids"; }

is_ours() { # pid signature
    local cmdline
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
    [[ " $cmdline " == *" $2 "* ]]
}

all_alive() {
    local name pid sig
    [[ -f $STATE/run/pids ]] || return 1
    while read -r name pid sig; do
        is_ours "$pid" "$sig" || return 1
    done <"$STATE/run/pids"
}

first_dead() {
    local name pid sig
    while read -r name pid sig; do
        is_ours "$pid" "$sig" || { echo "$name (pid $pid)"; return 0; }
    done <"$STATE/run/pids"
    return 1
}

daemon_alive() { # name
    local name pid sig
    [[ -f $STATE/run/pids ]] || return 1
    while read -r name pid sig; do
        [[ $name == "$1" ]] && is_ours "$pid" "$sig" && return 0
    done <"$STATE/run/pids"
    return 1
}

daemon_pid() { # name
    local name pid sig
    while read -r name pid sig; do
        [[ $name == "$1" ]] && { echo "$pid"; return 0; }
    done <"$STATE/run/pids"
    return 1
}

# Starts "$@" in its own session (so it leads its own process group) with /dev/null as stdin
# and $STATE/log/<name>.<ext> as stdout and stderr, and records its pid. An inherited stdout
# would make `eval "$(script start)"` wait forever; fd 8/9 (our flock fds) are closed so the
# daemon never holds the locks. Environment for the daemon only: `env VAR=… cmd…` as "$@".
# $1 name, $2 signature (see record_pid), $3 log extension (log or out), then the command.
launch() {
    local name=$1 sig=$2 ext=$3 pid
    shift 3
    setsid "$@" </dev/null >"$STATE/log/$name.$ext" 2>&1 8>&- 9>&- &
    pid=$!
    record_pid "$name" "$pid" "$sig"
}

# Signals the recorded processes (their groups: every one was started by setsid), names given
# first in that order, the rest in the file's order; then waits for them to exit, SIGKILL after
# 10 s. Liveness is judged by is_ours, not kill -0: once our shell has exited the daemons are
# children of PID 1, and a zombie waiting to be reaped there still answers kill -0.
stop_processes() { # [name...]
    local pidfile=$STATE/run/pids name n pid sig i
    [[ -f $pidfile ]] || return 0
    local -a procs=() left=() order=("$@")
    local seen=" $* "
    while read -r n _; do
        [[ $seen == *" $n "* ]] && continue
        seen+="$n "
        order+=("$n")
    done <"$pidfile"
    for name in "${order[@]}"; do
        while read -r n pid sig; do
            [[ $n == "$name" ]] || continue
            if is_ours "$pid" "$sig"; then
                procs+=("$pid $sig")
                kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            fi
        done <"$pidfile"
    done
    for ((i = 0; i < 100; i++)); do # up to 10 s for a clean exit
        left=()
        for pid in "${procs[@]}"; do
            is_ours "${pid%% *}" "${pid#* }" && left+=("$pid")
        done
        procs=("${left[@]}")
        ((${#procs[@]})) || break
        sleep 0.1
    done
    for pid in "${procs[@]}"; do
        log "${pid%% *} ignored SIGTERM; killing it"
        kill -KILL -- "-${pid%% *}" 2>/dev/null || kill -KILL "${pid%% *}" 2>/dev/null || true
    done
    rm -f "$pidfile"
}

# Prints the last lines of the logs matching $1 (a glob under $STATE/log, default *.log).
show_logs() {
    local f
    for f in "$STATE"/log/${1:-*.log}; do
        [[ -f $f && -s $f ]] || continue
        log "---- last lines of $f ----"
        tail -n 25 "$f" >&2 || true
    done
}

# ------------------------------------------------------------------ ports --

# $1 distinct free ports on 127.0.0.1 on one line; the first is $2 when that is free. All
# sockets stay bound until every port is chosen, so they cannot repeat. DAEMON_PY: the python.
free_ports() { # count [preferred]
    "${DAEMON_PY:-python3}" - "$1" "${2:-0}" <<'PY'
import socket, sys
count, preferred = int(sys.argv[1]), int(sys.argv[2])
held = []
def grab(port=0):
    s = socket.socket()
    if port:  # like the servers: a TIME_WAIT leftover does not block the preferred port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    held.append(s)
    return s.getsockname()[1]
ports = []
if preferred:
    try:
        ports.append(grab(preferred))
    except OSError:
        pass
while len(ports) < count:
    ports.append(grab())
print(*ports)
PY
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until each port accepts connections. Returns 1 if a recorded process died (e.g. its port
# was taken meanwhile: worth retrying with other ports), 2 on timeout.
wait_ports() { # deadline (bash $SECONDS) port...
    local deadline=$1 port dead
    shift
    for port; do
        until port_open "$port"; do
            if dead=$(first_dead); then
                log "$dead exited during startup"
                return 1
            fi
            ((SECONDS < deadline)) || { log "timed out waiting for port $port"; return 2; }
            sleep 0.1
        done
    done
}
