#!/usr/bin/env bash
# Build build/ngx_http_flashsale_module.so against the installed nginx's sources.
#
#   scripts/build.sh            normal build (nginx's -W -Wall -Werror, plus -Wextra)
#   SANITIZE=address scripts/build.sh
#                               AddressSanitizer + UndefinedBehaviorSanitizer
#                               build in its own tree (build/nginx-src-asan) ->
#                               build/ngx_http_flashsale_module-asan.so; the .so
#                               needs libasan and libubsan preloaded into nginx:
#                               t/lib/FlashsaleTest.pm does that when
#                               FLASHSALE_ASAN=1 (or SANITIZE=address).
#
# The nginx source tree is copied once from /usr/share/nginx/src (nginx-dev)
# and ./configure is re-run only when the repo's `config`, the flags, or the
# nginx-dev version change (stamp file).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build"
SRC_PKG=/usr/share/nginx/src
MODULE=ngx_http_flashsale_module

if [ ! -f "$SRC_PKG/conf_flags" ]; then
    echo "build: $SRC_PKG not found; run 'make deps' (needs nginx-dev)" >&2
    exit 1
fi

SANITIZE=${SANITIZE:-}
CC_OPT="-Wextra"
LD_OPT=""
SUFFIX=""
case "$SANITIZE" in
    "") ;;
    address)
        # AddressSanitizer + UndefinedBehaviorSanitizer (gcc's runtimes,
        # preloaded into Debian's nginx by t/lib/FlashsaleTest.pm); any
        # undefined behaviour aborts the process instead of going on
        CC_OPT="$CC_OPT -fsanitize=address,undefined"
        CC_OPT="$CC_OPT -fno-sanitize-recover=undefined"
        CC_OPT="$CC_OPT -fno-omit-frame-pointer -O1 -g"
        LD_OPT="-fsanitize=address,undefined"
        SUFFIX="-asan"
        ;;
    *)
        echo "build: SANITIZE=$SANITIZE is not supported (only 'address')" >&2
        exit 1
        ;;
esac

NGX_SRC="$BUILD/nginx-src$SUFFIX"
mkdir -p "$BUILD"

# 1. A private copy of the nginx sources, refreshed when nginx-dev changes.
pkg_version=$(dpkg-query -W -f='${Version}' nginx-dev 2>/dev/null || echo unknown)
if [ ! -f "$NGX_SRC/.copied" ] || [ "$(cat "$NGX_SRC/.copied")" != "$pkg_version" ]; then
    echo "build: copying $SRC_PKG to $NGX_SRC" >&2
    rm -rf "$NGX_SRC" "$NGX_SRC.tmp"
    cp -a "$SRC_PKG" "$NGX_SRC.tmp"
    chmod +x "$NGX_SRC.tmp/configure"
    echo "$pkg_version" > "$NGX_SRC.tmp/.copied"
    mv "$NGX_SRC.tmp" "$NGX_SRC"
fi

# 2. configure, only when something it depends on changed.
# shellcheck disable=SC1091
source "$SRC_PKG/conf_flags"      # sets NGX_CONF_FLAGS=( ... )
FLAGS=( "${NGX_CONF_FLAGS[@]}" "--add-dynamic-module=$ROOT" "--with-cc-opt=$CC_OPT" )
if [ -n "$LD_OPT" ]; then
    FLAGS+=( "--with-ld-opt=$LD_OPT" )
fi

if [ ! -f "$ROOT/config" ]; then
    echo "build: $ROOT/config is missing" >&2
    exit 1
fi

stamp_now=$( { printf '%s\n' "$pkg_version" "${FLAGS[@]}"; cat "$ROOT/config"; } | sha256sum | cut -d' ' -f1)
stamp_file="$NGX_SRC/.configured"
if [ ! -f "$stamp_file" ] || [ "$(cat "$stamp_file")" != "$stamp_now" ] || [ ! -f "$NGX_SRC/objs/Makefile" ]; then
    echo "build: configuring nginx sources" >&2
    rm -f "$stamp_file"
    (cd "$NGX_SRC" && ./configure "${FLAGS[@]}" > "$NGX_SRC/configure.log" 2>&1) || {
        echo "build: ./configure failed; last lines of $NGX_SRC/configure.log:" >&2
        tail -n 30 "$NGX_SRC/configure.log" >&2
        exit 1
    }
    echo "$stamp_now" > "$stamp_file"
fi

# 3. Build the module only.
jobs=$(nproc 2>/dev/null || echo 2)
(cd "$NGX_SRC" && make -j"$jobs" -f objs/Makefile modules)

# a sanitized build never replaces the plain one
cp "$NGX_SRC/objs/$MODULE.so" "$BUILD/$MODULE$SUFFIX.so.tmp"
mv "$BUILD/$MODULE$SUFFIX.so.tmp" "$BUILD/$MODULE$SUFFIX.so"
echo "build: $BUILD/$MODULE$SUFFIX.so" >&2

# UBSan's options for nginx workers (see scripts/san-options.c)
if [ "$SANITIZE" = address ]; then
    gcc -shared -fPIC -O2 -Wall -Werror -o "$BUILD/san-options.so.tmp" \
        "$ROOT/scripts/san-options.c"
    mv "$BUILD/san-options.so.tmp" "$BUILD/san-options.so"
fi
