#!/usr/bin/env bash
# libFuzzer harnesses for the module's parsers of outside input (fuzz/).
#
#   scripts/fuzz.sh build            build nginx + the module with clang,
#                                    ASan, UBSan and coverage for libFuzzer in
#                                    build/nginx-src-fuzz, then the harnesses
#                                    in build/fuzz/
#   scripts/fuzz.sh run [NAME...]    build, then run each harness (default:
#                                    all) for FUZZ_SECONDS (default 60) on a
#                                    copy of its seed corpus; a crash stops
#                                    the run and is copied to
#                                    fuzz/regressions/NAME/
#   scripts/fuzz.sh regress          build, then replay fuzz/corpus/* (known
#                                    bugs avoided) and each file of
#                                    fuzz/regressions/* on its own (nothing
#                                    avoided) once: make fuzz-regress
#   scripts/fuzz.sh seeds            regenerate fuzz/corpus/ (fuzz/seeds.pl)
#
# nginx's pools are built with NGX_DEBUG_PALLOC, so every pool allocation is
# its own malloc() and ASan sees an overflow of any of them (with Debian's
# nginx a pool block hides it).  The nginx binary built on the way,
# build/nginx-src-fuzz/objs/nginx, is an ASan nginx too.
#
# Environment: FUZZ_SECONDS (per harness), FUZZ_JOBS (parallel harnesses,
# default 1), FUZZ_ARGS (more libFuzzer flags), CC (default clang),
# FUZZ_AVOID_KNOWN (default 1: "run" steers around the known open bugs,
# see fuzz/README.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build"
SRC_PKG=/usr/share/nginx/src
NGX="$BUILD/nginx-src-fuzz"
OUT="$BUILD/fuzz"
FUZZ="$ROOT/fuzz"
CC=${CC:-clang}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-1}

HARNESSES=(token args redis_reply redis_stream page)

# UBSan recovers at compile time and stops at run time (halt_on_error=1), so
# that fuzz/ubsan.supp can name undefined behaviour of nginx itself that
# every start of nginx runs into
SAN="-fsanitize=address,undefined"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:suppressions=$ROOT/fuzz/ubsan.supp}
CC_OPT="-g -O1 -fno-omit-frame-pointer $SAN -fsanitize=fuzzer-no-link"
CC_OPT="$CC_OPT -DNGX_DEBUG_PALLOC=1 -Wno-unused-but-set-variable"
LD_OPT="$SAN"

die() { echo "fuzz: $*" >&2; exit 1; }

# nginx-dev ships the headers only: the whole source of the same upstream
# version comes from Debian's source package (its .orig tarball; needs a
# deb-src entry, which scripts/deps.sh --fuzz adds).
fetch_nginx() {
    local pkg_version upstream dl tarball
    pkg_version=$(dpkg-query -W -f='${Version}' nginx-dev 2>/dev/null || echo unknown)
    upstream=${pkg_version%%-*}
    if [ -f "$NGX/.copied" ] && [ "$(cat "$NGX/.copied")" = "$upstream" ] \
       && [ -f "$NGX/src/core/nginx.c" ]; then
        return
    fi
    dl="$BUILD/nginx-dl"
    tarball="$dl/nginx_$upstream.orig.tar.gz"
    mkdir -p "$dl"
    if [ ! -f "$tarball" ]; then
        echo "fuzz: fetching the nginx $upstream source package" >&2
        # the orig tarball is all that is needed: a Debian revision whose
        # other files a mirror lacks still brings it
        (cd "$dl" && { apt-get source --download-only -qq "nginx=$pkg_version" \
                       || apt-get source --download-only -qq nginx; } ) >&2 || true
        [ -f "$tarball" ] || die "nginx_$upstream.orig.tar.gz not found: run 'scripts/deps.sh --fuzz' (adds deb-src) and try again"
    fi
    echo "fuzz: unpacking nginx $upstream into $NGX" >&2
    rm -rf "$NGX" "$NGX.tmp"
    mkdir -p "$NGX.tmp"
    tar xzf "$tarball" -C "$NGX.tmp" --strip-components=1
    echo "$upstream" > "$NGX.tmp/.copied"
    mv "$NGX.tmp" "$NGX"
}

build_nginx() {
    command -v "$CC" > /dev/null || die "$CC not found: run 'scripts/deps.sh --fuzz'"
    [ -f "$SRC_PKG/conf_flags" ] || die "$SRC_PKG not found (nginx-dev)"

    fetch_nginx
    local pkg_version
    pkg_version=$(cat "$NGX/.copied")

    # shellcheck disable=SC1091
    source "$SRC_PKG/conf_flags"
    local flags=( "${NGX_CONF_FLAGS[@]}" "--with-cc=$CC"
                  "--add-dynamic-module=$ROOT"
                  "--with-cc-opt=$CC_OPT" "--with-ld-opt=$LD_OPT" )
    local stamp
    stamp=$( { printf '%s\n' "$pkg_version" "$CC" "${flags[@]}"; cat "$ROOT/config"; } \
             | sha256sum | cut -d' ' -f1)
    if [ ! -f "$NGX/.configured" ] || [ "$(cat "$NGX/.configured")" != "$stamp" ] \
       || [ ! -f "$NGX/objs/Makefile" ]; then
        echo "fuzz: configuring $NGX" >&2
        rm -f "$NGX/.configured"
        (cd "$NGX" && ./configure "${flags[@]}" > configure.log 2>&1) || {
            tail -n 30 "$NGX/configure.log" >&2
            die "./configure failed"
        }
        echo "$stamp" > "$NGX/.configured"
    fi

    # A dynamic module defines its own ngx_modules[] (2 entries); the
    # nginx binary's, exported for modules, takes its place, and ASan,
    # registering the module's globals, then poisons the binary's array past
    # 2 entries: a false global-buffer-overflow at the next reload
    # (ngx_cycle_modules()).  That one file goes without global redzones.
    if ! grep -q 'asan-globals=0' "$NGX/objs/Makefile"; then
        sed -i '/^objs\/ngx_http_flashsale_module_modules\.o:/,/^$/ s/\$(CC) -c -fPIC \$(CFLAGS)/$(CC) -c -fPIC $(CFLAGS) -mllvm -asan-globals=0/' \
            "$NGX/objs/Makefile"
        touch "$NGX/objs/ngx_http_flashsale_module_modules.c"
    fi

    (cd "$NGX" && make -j"$(nproc)" -f objs/Makefile > make.log 2>&1) || {
        tail -n 40 "$NGX/make.log" >&2
        die "building nginx failed (see $NGX/make.log)"
    }
}

build_harnesses() {
    mkdir -p "$OUT"

    # main() of nginx renamed: libFuzzer brings its own
    objcopy --redefine-sym main=ngx_fuzz_nginx_main \
        "$NGX/objs/src/core/nginx.o" "$OUT/nginx-nomain.o"

    local core=() f
    while IFS= read -r f; do
        [ "$f" = "$NGX/objs/src/core/nginx.o" ] && continue
        core+=("$f")
    done < <(find "$NGX/objs/src" -name '*.o' | sort)
    core+=("$NGX/objs/ngx_modules.o" "$OUT/nginx-nomain.o")

    local addon=()
    while IFS= read -r f; do
        addon+=("$f")
    done < <(find "$NGX/objs/addon" -name '*.o' | sort)

    # the libraries nginx links with, as its Makefile says, and ours
    local libs
    libs=$(awk '/\$\(LINK\) -o objs\/nginx/,/^$/' "$NGX/objs/Makefile" \
           | grep -o -- '-l[A-Za-z0-9_.-]*' | sort -u | tr '\n' ' ' || true)
    libs="$libs -ljwt -lhiredis -lcrypto -lssl -lpcre -lz -lcrypt -ldl -lpthread"

    local inc=( -I "$NGX/objs" -I "$NGX/src/core" -I "$NGX/src/event"
                -I "$NGX/src/event/modules" -I "$NGX/src/os/unix"
                -I "$NGX/src/http" -I "$NGX/src/http/modules"
                -I "$NGX/src/http/v2" -I "$ROOT/src" -I "$FUZZ" )

    # what a harness stubs out: the answer goes nowhere, the phases stop
    local wrap="-Wl,--wrap=ngx_http_send_header -Wl,--wrap=ngx_http_output_filter"
    wrap="$wrap -Wl,--wrap=ngx_http_discard_request_body"
    wrap="$wrap -Wl,--wrap=ngx_http_finalize_request"
    wrap="$wrap -Wl,--wrap=ngx_http_core_run_phases"
    wrap="$wrap -Wl,--wrap=ngx_http_run_posted_requests"
    wrap="$wrap -Wl,--wrap=ngx_close_connection"
    wrap="$wrap -Wl,--wrap=ngx_event_connect_peer"
    wrap="$wrap -Wl,--wrap=ngx_http_flashsale_redis_send"

    local h src objs o skip
    for h in "${HARNESSES[@]}"; do
        src="$FUZZ/fuzz_$h.c"
        [ -f "$src" ] || die "$src missing"
        # a harness that #includes one of our .c files links without its
        # object (the included file is named in a "fuzz-includes:" line)
        skip=$(sed -n 's/.*fuzz-includes: *//p' "$src" | tr ' ' '\n' | sed 's/\.c$//')
        objs=()
        for o in "${addon[@]}"; do
            case "$o" in
                *_modules.o) continue ;;
            esac
            if [ -n "$skip" ] && printf '%s\n' "$skip" | grep -qx "$(basename "$o" .o)"; then
                continue
            fi
            objs+=("$o")
        done
        if [ ! -x "$OUT/fuzz_$h" ] || [ -n "$(find "$src" "$FUZZ/fuzz_common.h" \
                "$ROOT/src" "$ROOT/ngx_http_flashsale_module.c" "${objs[@]}" \
                -newer "$OUT/fuzz_$h" 2>/dev/null | head -1)" ]; then
            echo "fuzz: building $OUT/fuzz_$h" >&2
            # shellcheck disable=SC2086
            $CC -g -O1 -fno-omit-frame-pointer $SAN -fsanitize=fuzzer \
                -DNGX_DEBUG_PALLOC=1 -Wall -Wno-unused-function \
                "${inc[@]}" -o "$OUT/fuzz_$h" "$src" \
                "${objs[@]}" "${core[@]}" $wrap $libs
        fi
    done
}

run_one() {
    local h=$1 work corpus log
    work="$OUT/work/$h"
    corpus="$work/corpus"
    log="$OUT/fuzz_$h.log"
    mkdir -p "$corpus" "$FUZZ/regressions/$h"
    # the seeds, and what earlier runs found, are the starting corpus
    if [ -d "$FUZZ/corpus/$h" ]; then
        cp -n "$FUZZ/corpus/$h"/* "$corpus"/ 2>/dev/null || true
    fi
    local dict=()
    [ -f "$FUZZ/$h.dict" ] && dict=("-dict=$FUZZ/$h.dict")
    echo "fuzz: $h for ${FUZZ_SECONDS}s ($log)" >&2
    set +e
    # shellcheck disable=SC2086
    (cd "$work" && "$OUT/fuzz_$h" "${dict[@]}" -max_total_time="$FUZZ_SECONDS" \
        -print_final_stats=1 -artifact_prefix="$FUZZ/regressions/$h/" \
        -max_len=20000 -timeout=10 -rss_limit_mb=4096 ${FUZZ_ARGS:-} \
        "$corpus" > "$log" 2>&1)
    local rc=$?
    set -e
    summary "$h" "$log" "$rc"
    return $rc
}

summary() {
    local h=$1 log=$2 rc=$3 execs cov ft corp
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -a -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -a -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    corp=$(grep -a -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    printf 'fuzz: %-13s rc=%s execs=%s cov=%s ft=%s corpus=%s\n' \
        "$h" "$rc" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
        | tee -a "$OUT/summary.txt" >&2
}

# The seed corpus once through each harness (known bugs avoided: seeds are
# not meant to crash), then every file of fuzz/regressions/ on its own,
# with nothing avoided: each one that still crashes is named.
regress() {
    local h f rc=0 files n
    for h in "${HARNESSES[@]}"; do
        if [ -d "$FUZZ/corpus/$h" ]; then
            files=()
            while IFS= read -r f; do files+=("$f"); done \
                < <(find "$FUZZ/corpus/$h" -type f | sort)
            if [ ${#files[@]} -gt 0 ] && ! FLASHSALE_FUZZ_AVOID_KNOWN=1 \
                "$OUT/fuzz_$h" -runs=0 "${files[@]}" > "$OUT/regress_$h.log" 2>&1; then
                echo "fuzz-regress: $h: the seed corpus crashes (see $OUT/regress_$h.log)" >&2
                grep -a 'SUMMARY' "$OUT/regress_$h.log" >&2 || true
                rc=1
            fi
        fi
        n=0
        [ -d "$FUZZ/regressions/$h" ] || continue
        while IFS= read -r f; do
            n=$((n + 1))
            if "$OUT/fuzz_$h" -runs=0 "$f" > "$OUT/regress_one.log" 2>&1; then
                echo "fuzz-regress: $h: ok     ${f#$ROOT/}" >&2
            else
                echo "fuzz-regress: $h: FAILED ${f#$ROOT/}: $(grep -a -m1 'SUMMARY' "$OUT/regress_one.log")" >&2
                rc=1
            fi
        done < <(find "$FUZZ/regressions/$h" -type f ! -name '*.md' | sort)
    done
    return $rc
}

cmd=${1:-run}
shift || true

case "$cmd" in
    build)
        build_nginx
        build_harnesses
        ;;
    seeds)
        perl "$FUZZ/seeds.pl" "$FUZZ/corpus"
        ;;
    run)
        # steer around the known, open bugs (fuzz/README.md): a campaign is
        # for new ones; FUZZ_AVOID_KNOWN=0 turns that off
        export FLASHSALE_FUZZ_AVOID_KNOWN=${FUZZ_AVOID_KNOWN:-1}
        build_nginx
        build_harnesses
        [ -d "$FUZZ/corpus" ] || perl "$FUZZ/seeds.pl" "$FUZZ/corpus"
        list=("$@")
        [ ${#list[@]} -eq 0 ] && list=("${HARNESSES[@]}")
        : > "$OUT/summary.txt"
        rc=0
        if [ "$FUZZ_JOBS" -gt 1 ]; then
            pids=()
            for h in "${list[@]}"; do
                run_one "$h" & pids+=($!)
                while [ "$(jobs -rp | wc -l)" -ge "$FUZZ_JOBS" ]; do sleep 1; done
            done
            for p in "${pids[@]}"; do wait "$p" || rc=1; done
        else
            for h in "${list[@]}"; do run_one "$h" || rc=1; done
        fi
        cat "$OUT/summary.txt"
        [ $rc -eq 0 ] || die "a harness found a crash: see fuzz/regressions/"
        ;;
    regress)
        build_nginx
        build_harnesses
        regress
        ;;
    *)
        die "unknown command $cmd (build, run, regress, seeds)"
        ;;
esac
