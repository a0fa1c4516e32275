# Shared by scripts/run, scripts/test and bench/: installs what a fresh Debian 12 machine lacks.
# Idempotent and quick when everything is there.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="/opt/swift/usr/bin:$PATH"

say() { printf '==> %s\n' "$*" >&2; }

# Debian packages the build and the mount need.
BUILD_PACKAGES=(libfuse3-dev fuse3 libsqlite3-dev libcurl4-openssl-dev libssl-dev pkg-config attr)

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
    if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
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
