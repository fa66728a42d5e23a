#!/usr/bin/env bash
# Run the demo: a redis-server and an nginx with the flash-sale module in front
# of a small demo store, everything under build/demo.
#
#   scripts/demo.sh start        (make demo)       start both, load the stock,
#                                                  print the URLs
#   scripts/demo.sh stop         (make demo-stop)  stop exactly what start started
#   scripts/demo.sh status                         say what is running
#   scripts/demo.sh redis-stop                     stop only the demo's Redis
#                                                  (its data saved): the retry
#                                                  page and the breaker
#   scripts/demo.sh redis-start                    start it again on its port
#
# Needs build/ngx_http_flashsale_module.so (make build) and Debian's nginx and
# redis-server (make deps).  The front listens on 127.0.0.1:8080, the store on
# 127.0.0.1:8081, Redis on 127.0.0.1:6390 or the next free port
# (REDIS_PORT=... to start the search elsewhere).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN="$ROOT/build/demo"
MODULE="$ROOT/build/ngx_http_flashsale_module.so"
TEMPLATE="$ROOT/examples/demo.conf"
CONF="$RUN/nginx.conf"
KEYS="$RUN/flashsale.keys"
NGINX_PID="$RUN/nginx.pid"
REDIS_PID="$RUN/redis.pid"
REDIS_PORT_FILE="$RUN/redis.port"
REDIS_DUMP="$RUN/dump.rdb"

FRONT_PORT=8080
STORE_PORT=8081

# The drop's SKUs and the stock loaded at start (the product pages agree).
STOCK=(JACKET-OCHRE:3 TOTE-INDIGO:10 MUG-MOSS:25)

# Debian installs nginx in /usr/sbin, which is not on a normal user's PATH.
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
REDIS_CLI=${REDIS_CLI:-$(command -v redis-cli || echo /usr/bin/redis-cli)}

say() { printf '%s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# The pid in a pidfile, if that process is alive and is the one we started:
# its command line must contain $2 (so a recycled pid is never signalled).
running_pid() {
    local file=$1 mark=$2 pid cmd
    [ -r "$file" ] || return 1
    read -r pid < "$file" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline")
    [[ "$cmd" == *"$mark"* ]] || return 1
    printf '%s\n' "$pid"
}

nginx_pid() { running_pid "$NGINX_PID" "$CONF"; }
redis_pid() {
    local port
    [ -r "$REDIS_PORT_FILE" ] || return 1
    read -r port < "$REDIS_PORT_FILE" || return 1
    running_pid "$REDIS_PID" ":$port"
}

# Something accepts connections on 127.0.0.1:$1.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# 127.0.0.1:$1 answers an HTTP request with a status line.
# shellcheck disable=SC2016  # the inner script expands its own $1
http_answers() {
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3
        read -r line <&3
        [[ "$line" == HTTP/* ]]' _ "$1" 2>/dev/null
}

# One HTTP/1.0 request to the front with bash alone (no curl needed):
# prints the status code, a tab, and the body.   http_request METHOD PATH
http_request() {
    local method=$1 path=$2 code="" line body=""
    exec 3<>"/dev/tcp/127.0.0.1/$FRONT_PORT" || return 1
    printf '%s %s HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n' \
        "$method" "$path" >&3
    read -r -t 5 _ code _ <&3 || true
    while IFS= read -r -t 5 line <&3; do
        [ -n "${line%$'\r'}" ] || break
    done
    IFS= read -r -t 5 -d '' body <&3 || true
    exec 3<&-
    [ -n "$code" ] || return 1
    printf '%s\t%s\n' "$code" "${body%$'\n'}"
}

# Set the stock of every demo SKU through the operators' handler,
# PUT /flashsale_stock?sku=...&qty=... (holds are left as they are).
load_stock() {
    local item sku qty out
    for item in "${STOCK[@]}"; do
        sku=${item%%:*}
        qty=${item##*:}
        out=$(http_request PUT "/flashsale_stock?sku=$sku&qty=$qty") || out=""
        if [ "${out%%$'\t'*}" != 200 ]; then
            die "could not load the stock of $sku through /flashsale_stock: ${out:-no answer}; see build/demo/error.log"
        fi
        say "stock loaded: ${out#*$'\t'}"
    done
}

# Wait up to $1 tenths of a second for the command that follows to succeed.
wait_for() {
    local tries=$1
    shift
    while ! "$@"; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || return 1
        sleep 0.1
    done
}

# The direct children of $1 (nginx's workers), from /proc.
children_of() {
    local stat line ppid
    for stat in /proc/[0-9]*/stat; do
        read -r line < "$stat" 2>/dev/null || continue
        line=${line##*) }              # "pid (comm) state ppid ...": skip comm
        read -r _ ppid _ <<< "$line"
        if [ "$ppid" = "$1" ]; then
            stat=${stat#/proc/}
            printf '%s\n' "${stat%/stat}"
        fi
    done
}

gone() { ! kill -0 "$1" 2>/dev/null; }

# Signal $2 with $3, wait up to $4 seconds, then SIGKILL it (and $5..., pids
# it started) if still there.
stop_pid() {
    local name=$1 pid=$2 sig=$3 secs=$4
    shift 4
    kill "-$sig" "$pid" 2>/dev/null || true
    if ! wait_for $((secs * 10)) gone "$pid"; then
        say "demo: $name (pid $pid) did not stop within ${secs}s; killing it" >&2
        kill -KILL "$pid" "$@" 2>/dev/null || true
        wait_for 20 gone "$pid" || die "$name (pid $pid) survived SIGKILL"
    fi
    say "stopped $name (pid $pid)"
}

# Start redis-server on 127.0.0.1:$1 under build/demo.  It saves nothing by
# itself; "redis-stop" saves its data to build/demo/dump.rdb, which the
# following "redis-start" loads, as a production Redis that persists would.
start_redis() {
    local rport=$1
    "$REDIS_SERVER" --bind 127.0.0.1 --port "$rport" --protected-mode yes \
        --daemonize yes --pidfile "$REDIS_PID" --dir "$RUN" \
        --dbfilename dump.rdb --logfile "$RUN/redis.log" --save "" \
        --appendonly no > /dev/null \
        || die "redis-server did not start; see build/demo/redis.log"
    printf '%s\n' "$rport" > "$REDIS_PORT_FILE"
    wait_for 50 redis_pid > /dev/null \
        || die "redis-server wrote no pidfile within 5 s; see build/demo/redis.log"
    wait_for 50 port_busy "$rport" \
        || die "redis-server is not listening on 127.0.0.1:$rport; see build/demo/redis.log"
    say "started redis-server (pid $(redis_pid)) on 127.0.0.1:$rport"
}

escape_sed() {
    printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'
}

print_urls() {
    local rport=$1 f="http://127.0.0.1:$FRONT_PORT"
    cat <<EOF

The demo is running (nginx with 2 workers on 127.0.0.1:$FRONT_PORT, the store on
127.0.0.1:$STORE_PORT, redis-server on 127.0.0.1:$rport).

  store        $f/              browse freely, no queue
  the drop     $f/drop/         waiting room: 6 admissions a minute, burst 2
  add to cart  the product pages' button: /drop/cart/add?sku=...&qty=...
               reserves stock in Redis for 2 minutes (at most 3 a shopper)
  status       $f/flashsale_status     (a live dashboard in a browser;
               JSON from curl, ?format=prometheus for Prometheus)
  stock        $f/flashsale_stock?sku=JACKET-OCHRE   (loopback only)

Stock loaded: JACKET-OCHRE 3, TOTE-INDIGO 10, MUG-MOSS 25.

In a browser: open /drop/ in a few private windows.  The first three get in,
the next ones wait about 10 s more each and their pages refresh themselves.
Once in, pick the Field Jacket and add 3 to the cart: the store's cart page
shows the reservation nginx made.  In another admitted window the jacket is
now sold out (409, the sold-out page).  Holds run out after 2 minutes and the
jackets are back on sale.

From a terminal (each request without a cookie is a new visitor; a cookie jar
keeps one shopper):
  curl -s -H 'Accept: application/json' $f/drop/
  curl -s -c build/demo/jar -b build/demo/jar -H 'Accept: application/json' \\
       '$f/drop/cart/add?sku=JACKET-OCHRE&qty=1'
  curl -s $f/flashsale_status

When Redis fails:
  scripts/demo.sh redis-stop    add to cart answers 503 with the retry page;
                                when half of the last 10 s of add-to-cart
                                calls failed (3 at least), the breaker opens
                                for 15 s
  scripts/demo.sh redis-start   Redis back with its data; after the 15 s one
                                successful add to cart closes the breaker

Logs: build/demo/access.log (state, ticket, position, reservation of every
      request), build/demo/error.log (breaker changes at warn)
Stop: make demo-stop
EOF
}

start() {
    local npid rpid="" rport user_line out port

    [ -f "$MODULE" ] || die "$MODULE not found: run 'make build' first ('make demo' does)"
    if grep -qa 'libasan\.so' "$MODULE"; then
        die "$MODULE is an AddressSanitizer build, which nginx cannot load without preloading libasan; run 'make build' for a normal one"
    fi
    [ -x "$NGINX" ] || die "nginx not found: run 'make deps' first ('make demo' does)"
    [ -x "$REDIS_SERVER" ] || die "redis-server not found: run 'make deps' first ('make demo' does)"

    if npid=$(nginx_pid); then
        rport=$(cat "$REDIS_PORT_FILE" 2>/dev/null || echo "?")
        say "The demo is already running (nginx pid $npid); 'make demo-stop' stops it."
        if ! redis_pid > /dev/null; then
            say "Its redis-server is stopped: 'scripts/demo.sh redis-start' starts it."
        fi
        print_urls "$rport"
        return 0
    fi

    for port in "$FRONT_PORT" "$STORE_PORT"; do
        if port_busy "$port"; then
            die "127.0.0.1:$port is already in use by another program; stop it and try again"
        fi
    done

    mkdir -p "$RUN/tmp"

    # A fresh random signing key, 48 bytes as base64, readable only by us.
    if [ ! -s "$KEYS" ]; then
        (
            umask 077
            key=$(openssl rand -base64 48 2>/dev/null || head -c 48 /dev/urandom | base64 -w0)
            [ "${#key}" -ge 32 ] || die "could not generate a key"
            printf '%s\n' "$key" > "$KEYS.tmp"
            mv "$KEYS.tmp" "$KEYS"
        )
        say "demo: wrote a new signing key to build/demo/flashsale.keys"
    fi

    # Redis: keep one that is already ours, else the first free port.
    if rpid=$(redis_pid); then
        read -r rport < "$REDIS_PORT_FILE"
    else
        rpid=""
        rport=${REDIS_PORT:-6390}
        local last=$((rport + 20))
        while port_busy "$rport"; do
            rport=$((rport + 1))
            [ "$rport" -le "$last" ] || die "no free port for redis-server in ${REDIS_PORT:-6390}..$last"
        done
    fi

    # Running as root, workers run as nobody; if nobody cannot read the store
    # (a clone under /root, say), run them as root: this nginx listens on
    # loopback only.
    user_line=""
    if [ "$(id -u)" -eq 0 ] \
        && ! runuser -u nobody -- test -r "$ROOT/examples/demo/store/index.html" 2>/dev/null
    then
        user_line="user root;  # demo.sh: nobody cannot read $ROOT"
    fi

    # The template's opening comment explains the placeholders; the copy
    # says where it came from instead.
    {
        printf '# Generated by scripts/demo.sh from examples/demo.conf: edit that file.\n\n'
        sed -e '1,/^load_module/{/^#/d;/^$/d}' \
            -e "s|@MODULE@|$(escape_sed "$MODULE")|g" \
            -e "s|@DEMO_DIR@|$(escape_sed "$RUN")|g" \
            -e "s|@EXAMPLES@|$(escape_sed "$ROOT/examples")|g" \
            -e "s|@REDIS_PORT@|$rport|g" \
            -e "s|@USER@|$(escape_sed "$user_line")|g" \
            "$TEMPLATE"
    } > "$CONF.tmp"
    mv "$CONF.tmp" "$CONF"

    if ! out=$("$NGINX" -t -p "$RUN/" -c "$CONF" -e "$RUN/error.log" 2>&1); then
        printf '%s\n' "$out" >&2
        die "nginx -t failed for build/demo/nginx.conf (rendered from examples/demo.conf)"
    fi

    if [ -z "$rpid" ]; then
        rm -f "$REDIS_DUMP"        # a new demo starts from an empty Redis
        start_redis "$rport"
    fi

    "$NGINX" -p "$RUN/" -c "$CONF" -e "$RUN/error.log" \
        || die "nginx did not start; see build/demo/error.log"
    wait_for 50 nginx_pid > /dev/null \
        || die "nginx wrote no pidfile within 5 s; see build/demo/error.log"
    npid=$(nginx_pid)
    say "started nginx (pid $npid)"

    if ! wait_for 100 http_answers "$FRONT_PORT"; then
        die "nginx (pid $npid) does not answer on 127.0.0.1:$FRONT_PORT after 10 s; see build/demo/error.log"
    fi

    load_stock

    print_urls "$rport"
}

stop() {
    local pid stopped=0

    if pid=$(nginx_pid); then
        # QUIT lets workers finish their requests; the workers are listed
        # first so that a SIGKILL after the timeout reaches them too.
        # shellcheck disable=SC2046
        stop_pid nginx "$pid" QUIT 10 $(children_of "$pid")
        stopped=1
    fi
    rm -f "$NGINX_PID"

    if pid=$(redis_pid); then
        stop_pid redis-server "$pid" TERM 10
        stopped=1
    fi
    rm -f "$REDIS_PID" "$REDIS_PORT_FILE" "$REDIS_DUMP"

    [ "$stopped" -eq 1 ] || say "The demo is not running."
}

# Stop only Redis, keeping its data, to watch the module degrade.
redis_stop() {
    local pid rport

    pid=$(redis_pid) || die "the demo's redis-server is not running"
    read -r rport < "$REDIS_PORT_FILE"

    # SHUTDOWN SAVE writes build/demo/dump.rdb first, so the stock and the
    # holds come back with redis-start
    if [ -x "$REDIS_CLI" ]; then
        "$REDIS_CLI" -h 127.0.0.1 -p "$rport" shutdown save > /dev/null 2>&1 || true
    fi
    if wait_for 50 gone "$pid"; then
        say "stopped redis-server (pid $pid); its data is saved in build/demo/dump.rdb"
    else
        stop_pid redis-server "$pid" TERM 10
    fi
    rm -f "$REDIS_PID"          # the port file stays: nginx is configured for it

    cat <<EOF

Redis is down; nginx keeps running.  As an admitted shopper press "Add to
cart": the answer is the retry page (503, Retry-After: 2), which tries again
by itself every 2 s.  Once at least 3 add-to-cart calls were made in the last
10 s and half of them failed, the breaker opens for 15 s: every admitted
request in /drop/ then gets the retry page from memory, without touching Redis
or the store.  Newcomers still queue; one admitted while it is open (nobody
waiting, say) gets the retry page too.
  curl -s http://127.0.0.1:$FRONT_PORT/flashsale_status      "breaker":{"state":"open",...}
  grep breaker build/demo/error.log
Bring Redis back with: scripts/demo.sh redis-start
EOF
}

redis_start() {
    local rport

    nginx_pid > /dev/null || die "the demo is not running; 'make demo' starts it"
    if redis_pid > /dev/null; then
        say "The demo's redis-server is already running."
        return 0
    fi
    [ -r "$REDIS_PORT_FILE" ] \
        || die "no port recorded in build/demo/redis.port; run 'make demo-stop' then 'make demo'"
    read -r rport < "$REDIS_PORT_FILE"
    if port_busy "$rport"; then
        die "127.0.0.1:$rport is taken by another program"
    fi

    start_redis "$rport"

    cat <<EOF

Redis is back, with the stock and holds it had.  nginx reconnects on the next
request that needs it (a connection that failed waits 0.1 to 2 s before its
next try).  If the breaker is open, it turns half-open after its 15 s: one
admitted request at a time gets through as a probe, the others get the retry
page for a second, and the first add to cart that succeeds closes it.  The
retry page refreshes itself, so a waiting browser tab recovers on its own.
  curl -s http://127.0.0.1:$FRONT_PORT/flashsale_status      "breaker":{"state":"closed",...}
EOF
}

status() {
    local pid rc=0

    if pid=$(nginx_pid); then
        say "nginx: running (pid $pid), http://127.0.0.1:$FRONT_PORT/"
    else
        say "nginx: not running"
        rc=1
    fi

    if pid=$(redis_pid); then
        say "redis-server: running (pid $pid) on 127.0.0.1:$(cat "$REDIS_PORT_FILE")"
    elif [ -r "$REDIS_PORT_FILE" ]; then
        say "redis-server: stopped by 'scripts/demo.sh redis-stop' (port $(cat "$REDIS_PORT_FILE")); 'scripts/demo.sh redis-start' starts it"
        rc=1
    else
        say "redis-server: not running"
        rc=1
    fi

    return "$rc"
}

case "${1:-}" in
    start)        start ;;
    stop)         stop ;;
    status)       status ;;
    redis-stop)   redis_stop ;;
    redis-start)  redis_start ;;
    *)            say "usage: $0 start|stop|status|redis-stop|redis-start" >&2; exit 2 ;;
esac
