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

# libfuse >= 3.17 (FUSE passthrough; Debian 12 has 3.14), built from Debian's own source package
# of sid into $LIBFUSE_PREFIX and linked statically (its SONAME, libfuse3.so.4, is not Debian 12's).
# The sid source list lives in the project (.deps/apt), not in /etc/apt: the system's apt never
# sees sid. The mount keeps using Debian's fusermount3 (fuse3) to mount as a user.
LIBFUSE_DEB_VERSION=3.18.3-1
LIBFUSE_PREFIX="$ROOT/.deps/libfuse"
LIBFUSE_BUILD_PACKAGES=(meson ninja-build liburing-dev libnuma-dev dpkg-dev pkg-config)

# Builds libfuse once (a stamp names the Debian version built); exports PKG_CONFIG_PATH so that
# `swift build` finds its fuse3.pc first. Without it, `swift build` uses Debian's 3.14 (no passthrough).
require_libfuse() {
    # Built, and for this checkout (the .pc names its absolute prefix).
    if [ ! -e "$LIBFUSE_PREFIX/.built" ] || ! grep -qxF "prefix=$LIBFUSE_PREFIX" "$LIBFUSE_PREFIX/lib/pkgconfig/fuse3.pc" 2>/dev/null; then
        build_libfuse || { echo "cannot build libfuse $LIBFUSE_DEB_VERSION from Debian's source package (see above)" >&2; exit 1; }
    fi
    export PKG_CONFIG_PATH="$LIBFUSE_PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    forget_stale_fuse_objects
}

# Swift objects keep the libraries a C module's modulemap named when they were compiled, and
# SwiftPM does not recompile them when the modulemap changes: a build dir from before libfuse was
# built here would still link Debian's libfuse3.so beside the static one. Once per change of
# CFuse/ or of the libfuse built, the modules that import CFuse are compiled afresh.
forget_stale_fuse_objects() {
    local mark dir
    mark="$(cat "$LIBFUSE_PREFIX/.built") $(cat "$ROOT"/CFuse/* | cksum)"
    for dir in "$ROOT"/.build*/*-linux-gnu/debug "$ROOT"/.build*/*-linux-gnu/release; do
        [ -d "$dir" ] || continue
        [ "$(cat "$dir/.modelfs-cfuse" 2>/dev/null)" = "$mark" ] && continue
        # Their objects only: SwiftPM rebuilds what is missing (a removed .build dir it does not).
        find "$dir"/FUSEAdapter.build "$dir"/CLI.build "$dir"/modelfs.build "$dir"/FUSEAdapterTests.build -name '*.o' -delete 2>/dev/null || true
        find "$dir"/ModuleCache -name 'CFuse-*.pcm' -delete 2>/dev/null || true
        echo "$mark" >"$dir/.modelfs-cfuse"
    done
}

build_libfuse() {
    apt_install "${LIBFUSE_BUILD_PACKAGES[@]}" || return 1
    local deps="$ROOT/.deps" sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    local apt="$deps/apt" work="$deps/libfuse-src"
    rm -rf "$work" "$LIBFUSE_PREFIX"
    mkdir -p "$apt/parts" "$apt/lists/partial" "$apt/cache/archives/partial" "$work"
    # deb-src only, from the mirror the system already uses, signed by Debian's archive keys.
    local mirror
    mirror=$(grep -rhoE '^(URIs:|deb) *https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -oE 'https?://[^ ]+' | head -n1)
    printf 'Types: deb-src\nURIs: %s\nSuites: sid\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "${mirror:-http://deb.debian.org/debian}" >"$apt/parts/sid-src.sources"
    local opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt/parts" -o "Dir::State::Lists=$apt/lists"
                -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
    say "fetching Debian's source package of libfuse (fuse3 $LIBFUSE_DEB_VERSION, sid)"
    $sudo apt-get "${opts[@]}" -qq update >&2 || return 1
    # The pinned version, or whatever sid has now if sid moved on (at least 3.17: passthrough).
    if ! (cd "$work" && $sudo apt-get "${opts[@]}" -qq source --download-only "fuse3=$LIBFUSE_DEB_VERSION" >&2); then
        say "fuse3 $LIBFUSE_DEB_VERSION is gone from sid; taking sid's current fuse3"
        (cd "$work" && $sudo apt-get "${opts[@]}" -qq source --download-only fuse3 >&2) || return 1
    fi
    local dsc
    dsc=$(ls "$work"/fuse3_*.dsc | head -n1)
    (cd "$work" && dpkg-source --no-check -x "$(basename "$dsc")" fuse3 >/dev/null) || return 1
    local version
    version=$(sed -n "s/^ *version *: *'\([0-9.]*\)'.*/\1/p" "$work/fuse3/meson.build" | head -n1)
    case "$version" in 3.1[7-9]*|3.[2-9]*|[4-9].*) ;; *) echo "libfuse $version from sid is older than 3.17" >&2; return 1 ;; esac
    say "building libfuse $version (static, into .deps/libfuse)"
    (cd "$work/fuse3" && meson setup build --prefix="$LIBFUSE_PREFIX" --libdir=lib -Ddefault_library=static -Dbuildtype=release \
        -Dutils=false -Dexamples=false -Dtests=false -Duseroot=false -Dinitscriptdir= >&2 \
        && ninja -C build >&2 && ninja -C build install >&2) || return 1
    # A static libfuse needs what it links: liburing and libnuma (its `Requires:`) and its
    # Libs.private, all spelled out in Libs, which is what SwiftPM reads.
    local pc="$LIBFUSE_PREFIX/lib/pkgconfig/fuse3.pc" private
    grep -q '^Requires:.*liburing' "$pc" || { echo "libfuse was built without io_uring (liburing-dev, libnuma-dev?)" >&2; return 1; }
    private=$(sed -n 's/^Libs.private: *//p' "$pc")
    sed -i -e "s|^Libs: \(.*\)|Libs: \1 $private -luring -lnuma|" -e '/^Requires/d' -e '/^Libs.private/d' "$pc"
    # SwiftPM refuses -pthread (it links threads itself); -lpthread stays.
    sed -i -e 's/ -pthread//g' "$pc"
    # A name of its own: other .pc files put -L/usr/lib/x86_64-linux-gnu first on the link line,
    # where Debian's libfuse3.so and libfuse3.a (3.14) would be found for -lfuse3.
    mv "$LIBFUSE_PREFIX/lib/libfuse3.a" "$LIBFUSE_PREFIX/lib/libmodelfs-fuse3.a"
    sed -i -e 's/ -lfuse3 / -lmodelfs-fuse3 /' "$pc"
    grep -q -- '-lmodelfs-fuse3' "$pc" || { echo "unexpected Libs in $pc" >&2; return 1; }
    rm -rf "$work" "$apt"
    echo "$version ($LIBFUSE_DEB_VERSION requested)" >"$LIBFUSE_PREFIX/.built"
}

# Builds modelfs; prints the path of the binary. $1: debug or release.
build_modelfs() {
    local config=${1:-release}
    require_swift
    apt_install "${BUILD_PACKAGES[@]}"
    require_libfuse
    say "building modelfs ($config)"
    (cd "$ROOT" && swift build -c "$config" >&2)
    echo "$ROOT/.build/$config/modelfs"
}
