#!/usr/bin/env bash
# Install the Debian packages the project needs.
# Idempotent: asks dpkg first, and touches apt only when something is missing.
#
#   scripts/deps.sh              everything: the build, the tests (Redis,
#                                Chromium and Node.js for t/80-browser.t), the
#                                demo and the runtime set  (make deps, make test)
#   scripts/deps.sh --build      what scripts/build.sh needs   (Dockerfile, build stage)
#   scripts/deps.sh --runtime    what a server that runs the module needs:
#                                nginx, libjwt0, libhiredis0.14, curl
#                                                              (Dockerfile, final stage)
#
#   scripts/deps.sh --valgrind   valgrind, for make valgrind
#   scripts/deps.sh --fuzz       clang and its libFuzzer runtime, dpkg-dev, and
#                                a deb-src entry for Debian's nginx source
#                                package (make fuzz, make fuzz-regress,
#                                make test-asan-nginx; not make test)
#
#   --check   install nothing: name what is missing and exit 1 if anything is
#             (t/70-examples.t runs "--build --check" and "--runtime --check",
#             so CI exercises the modes the Dockerfile uses)
#   --list    print the set's package names, one a line, and exit
set -euo pipefail

# Building the module against Debian's nginx (see scripts/build.sh).
BUILD_PACKAGES=(
    nginx nginx-dev
    libjwt-dev libhiredis-dev libssl-dev libpcre3-dev zlib1g-dev
    build-essential
)

# Running it: Debian's nginx, the two libraries the .so links beyond what
# nginx itself needs, and curl for the container's HEALTHCHECK.
RUNTIME_PACKAGES=(
    nginx libjwt0 libhiredis0.14 curl
)

# make valgrind; make fuzz (scripts/fuzz.sh builds nginx from the source
# package, whose .orig tarball apt-get source fetches)
VALGRIND_PACKAGES=( valgrind )
FUZZ_PACKAGES=( clang libclang-rt-14-dev dpkg-dev )

# The tests and the demo: perl runs them, redis-server is started by the
# harness, wrk loads it, Chromium (driven by playwright-core from npm) runs
# t/80-browser.t.
TEST_PACKAGES=(
    perl redis-server redis-tools wrk
    chromium ca-certificates
)

usage() {
    echo "usage: $0 [--build | --runtime | --valgrind | --fuzz] [--check | --list]" >&2
    exit 2
}

set_name=all
action=install
for arg in "$@"; do
    case "$arg" in
        --build)   set_name=build ;;
        --runtime) set_name=runtime ;;
        --valgrind) set_name=valgrind ;;
        --fuzz)    set_name=fuzz ;;
        --check)   action=check ;;
        --list)    action=list ;;
        -h|--help) usage ;;
        *)         echo "deps: unknown option $arg" >&2; usage ;;
    esac
done

case "$set_name" in
    build)   PACKAGES=("${BUILD_PACKAGES[@]}") ;;
    runtime) PACKAGES=("${RUNTIME_PACKAGES[@]}") ;;
    valgrind) PACKAGES=("${VALGRIND_PACKAGES[@]}") ;;
    fuzz)    PACKAGES=("${BUILD_PACKAGES[@]}" "${FUZZ_PACKAGES[@]}") ;;
    all)
        PACKAGES=("${BUILD_PACKAGES[@]}" "${RUNTIME_PACKAGES[@]}" "${TEST_PACKAGES[@]}")
        # Node.js and npm for the browser test.  A Node.js that is already
        # there (NodeSource's, say, which brings its own npm and conflicts
        # with Debian's npm package) is kept.
        if ! command -v node > /dev/null 2>&1; then
            PACKAGES+=(nodejs)
        fi
        if ! command -v npm > /dev/null 2>&1; then
            PACKAGES+=(npm)
        fi
        ;;
esac

# de-duplicate, keeping the order
declare -A seen=()
unique=()
for p in "${PACKAGES[@]}"; do
    if [ -z "${seen[$p]:-}" ]; then
        seen[$p]=1
        unique+=("$p")
    fi
done
PACKAGES=("${unique[@]}")

if [ "$action" = list ]; then
    printf '%s\n' "${PACKAGES[@]}"
    exit 0
fi

SUDO_CMD=
if [ "$(id -u)" -ne 0 ]; then
    SUDO_CMD=sudo
fi

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing+=("$p")
    fi
done

if [ "$action" = check ]; then
    if [ ${#missing[@]} -ne 0 ]; then
        echo "deps: missing ($set_name): ${missing[*]}" >&2
        exit 1
    fi
    echo "deps: all $set_name packages are installed: ${PACKAGES[*]}"
    exit 0
fi

# make fuzz builds nginx itself: nginx-dev has the headers only, so the
# whole source comes from Debian's source package, which needs a deb-src
# entry (the same archives as the deb entries)
if [ "$set_name" = fuzz ] && ! apt-cache showsrc nginx 2>/dev/null | grep -q '^Package: nginx'; then
    src_list=/etc/apt/sources.list.d/flashsale-deb-src.sources
    if [ ! -f "$src_list" ]; then
        echo "deps: adding deb-src entries ($src_list) for nginx's source package" >&2
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] && [ "$f" != "$src_list" ] || continue
            sed -n 's/^Types: *deb$/Types: deb-src/; /^Types: deb-src/,/^$/p' "$f"
            echo
        done | ${SUDO_CMD:-} tee "$src_list" > /dev/null
        if [ ! -s "$src_list" ] && [ -f /etc/apt/sources.list ]; then
            grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' \
                | ${SUDO_CMD:-} tee /etc/apt/sources.list.d/flashsale-deb-src.list > /dev/null
            rm -f "$src_list"
        fi
    fi
    ${SUDO_CMD:-} apt-get update -qq
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "deps: installing ${missing[*]}" >&2

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The Debian nginx package starts a system nginx and the redis-server package
# a system redis (where an init system runs); the tests run their own on free
# ports, so these are not needed but are harmless.
