# Shared by scripts/run, scripts/test and bench/: installs what a fresh Debian 12 machine lacks.
# Idempotent and quick when everything is there.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="/opt/swift/usr/bin:$PATH"

say() { printf '==> %s\n' "$*" >&2; }

# Debian packages the build and the mount need (libpq-dev: the build links libpq, pkg-config libpq;
# libdeflate-dev: the CRC-32 of archive members, 4x zlib's).
BUILD_PACKAGES=(libfuse3-dev fuse3 libsqlite3-dev libcurl4-openssl-dev libssl-dev libpq-dev zlib1g-dev libdeflate-dev pkg-config attr)

apt_install() {
    local missing=() pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        [ "$status" = installed ] || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    # apt must not start the services it installs (postgresql-15 would start Debian's own cluster
    # on port 5432): a policy-rc.d that exits 101 forbids that. Removed afterwards if it is ours.
    local policy=/usr/sbin/policy-rc.d ours=0 rc=0
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\n# temporary, from modelfs scripts/lib.sh\nexit 101\n' | $sudo tee $policy >/dev/null
        $sudo chmod 755 $policy
        ours=1
    fi
    if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
    fi
    [ $ours -eq 0 ] || $sudo rm -f $policy
    return $rc
}

require_swift() {
    command -v swift >/dev/null || { echo "Swift 6 is needed (expected at /opt/swift/usr/bin/swift)" >&2; exit 1; }
}

# Builds modelfs; prints the path of the binary. $1: debug or release.
build_modelfs() {
    local config=${1:-release}
    require_swift
    apt_install "${BUILD_PACKAGES[@]}"
    say "building modelfs ($config)"
    (cd "$ROOT" && swift build -c "$config" >&2)
    echo "$ROOT/.build/$config/modelfs"
}
