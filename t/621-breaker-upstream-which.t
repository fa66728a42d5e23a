# watch=upstream: which upstream answers count for the request's zone.
#
# - a logged subrequest (log_subrequest on, auth_request to a 204) does not
#   report its own upstream in place of the main request's: the store's
#   502s open the breaker (it used to stay closed, window_failures 0);
# - an error_page = fallback to another upstream that answers 200 does not
#   hide the first upstream's 502 (it used to count as a success);
# - a try that proxy_next_upstream made good on another peer is no
#   failure ($upstream_status "502, 200");
# - the latency is every try's: a slow first upstream, or a slow peer that
#   proxy_next_upstream retried on a fast one, counts as slow;
# - a request that tried no upstream (a cache hit, a request body that
#   could not be read) gives no verdict: it does not close a half-open
#   breaker on a dead store.
# (Found by attacking the module after the internal-redirect change.)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;
use ReserveTest;
use BreakerTest;
use FakeUpstream;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->start_redis;
my $slow = FakeUpstream->new(status => 404, delay => 0.6, dir => $t->dir);
my $slow502 = FakeUpstream->new(status => 502, delay => 0.6, dir => $t->dir);

my $conf = <<'EOF';
flashsale_zone sub:1m;
flashsale_zone fb:1m;
flashsale_zone nu:1m;
flashsale_zone sl:1m;
flashsale_zone rt:1m;
flashsale_zone nv:1m;
flashsale_zone be:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=2s;
log_format us '$uri $status "$upstream_status"';
proxy_cache_path %%DIR%%/cache keys_zone=c:1m;
upstream slowpair {
    server 127.0.0.1:__SLOW502__ max_fails=0;
    server 127.0.0.1:%%PORT3%% max_fails=0;
}
upstream pair {
    server 127.0.0.1:%%PORT2%% max_fails=0;
    server 127.0.0.1:%%PORT3%% max_fails=0;
}
server {
    listen 127.0.0.1:%%PORT%%;
    log_subrequest on;
    access_log %%DIR%%/us.log us;
    flashsale_breaker failures=50% window=10s min_calls=2 slow=300ms open=30s half_open=1 watch=upstream;
    location /sub/ {
        flashsale zone=sub rate=1r/s;
        auth_request /auth;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location = /auth {
        internal;
        proxy_pass http://127.0.0.1:%%PORT2%%/ok204;
    }
    location /fb/ {
        flashsale zone=fb rate=1r/s;
        proxy_pass http://127.0.0.1:%%PORT2%%;
        proxy_intercept_errors on;
        error_page 502 = /sorry;
    }
    location = /sorry {
        proxy_pass http://127.0.0.1:%%PORT3%%;
    }
    location /nu/ {
        flashsale zone=nu rate=1r/s;
        proxy_pass http://pair;
        proxy_next_upstream error http_502;
    }
    location /sl/ {
        flashsale zone=sl rate=1r/s;
        proxy_pass http://127.0.0.1:__SLOW__;
        proxy_read_timeout 10s;
        proxy_intercept_errors on;
        error_page 404 = /sorry;
    }
    location /rt/ {
        flashsale zone=rt rate=1r/s;
        proxy_pass http://slowpair;
        proxy_next_upstream error timeout http_502;
        proxy_read_timeout 10s;
    }
    location /nv/ {
        flashsale zone=nv rate=1r/s;
        proxy_pass http://127.0.0.1:%%PORT3%%;
        proxy_cache c;
        proxy_cache_valid 200 10m;
        add_header X-Cache $upstream_cache_status always;
    }
    location /be/ {
        flashsale zone=be rate=1r/s;
        flashsale_breaker failures=50% window=10s min_calls=2 open=1s half_open=1 watch=upstream;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location = /flashsale_status { flashsale_status; }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    access_log off;
    location /sub/ { return 502 "store broken\n"; }
    location /fb/ { return 502 "store broken\n"; }
    location = /ok204 { return 204; }
    location /nu/ { return 502 "this peer is down\n"; }
    location /be/ { return 502 "store broken\n"; }
}
server {
    listen 127.0.0.1:%%PORT3%%;
    access_log off;
    location = /sorry { return 200 "fine\n"; }
    location /nu/ { return 200 "other peer\n"; }
    location /rt/ { return 200 "fast peer\n"; }
    location /nv/ { return 200 "cacheable\n"; }
}
EOF
$conf =~ s/__SLOW__/$slow->port/e;
$conf =~ s/__SLOW502__/$slow502->port/e;
$t->run_nginx($conf);

sub uslog { return $t->read_file('us.log') // '' }

# ---- a logged auth_request subrequest
for my $i (1 .. 2) {
    my $r = reserve_as($t, '/sub/x', zone => 'sub');
    is($r->status, 502, "auth_request 204, store 502 ($i)");
}
# outcomes are reported in the log phase, just after the answer went out
my $z = wait_state($t, 'sub', 'open', 5) // zst($t, 'sub');
is($z->{breaker}{state}, 'open', 'the store\'s 502s open the breaker')
    or diag explain $z->{breaker};
is($z->{breaker}{trips}, 1, 'trips 1');
is(reserve_as($t, '/sub/x', zone => 'sub')->status, 503, 'then 503 from memory');
ok(poll_until(5, sub { uslog() =~ m{^/auth 204 "204"$}m }), 'the subrequest was logged (log_subrequest on)');

# ---- error_page = to another upstream's 200
for my $i (1 .. 2) {
    my $r = reserve_as($t, '/fb/x', zone => 'fb');
    is($r->status, 200, "fallback answers 200 ($i)");
    is($r->body, "fine\n", 'the fallback\'s body');
}
ok(poll_until(5, sub { uslog() =~ m{^/sorry 200 "502 : 200"$}m }), '$upstream_status shows both upstreams');
$z = wait_state($t, 'fb', 'open', 5) // zst($t, 'fb');
is($z->{breaker}{state}, 'open', 'the first upstream\'s 502s still open the breaker')
    or diag explain $z->{breaker};
is(reserve_as($t, '/fb/x', zone => 'fb')->status, 503, 'then 503 from memory');

# ---- proxy_next_upstream made good on the other peer
for my $i (1 .. 4) {
    my $r = reserve_as($t, '/nu/x', zone => 'nu');
    is($r->status, 200, "next upstream: 200 ($i)");
}
ok(poll_until(5, sub { uslog() =~ m{^/nu/x 200 "502, 200"$}m }), 'at least one request retried on the other peer');
ok(poll_until(5, sub { ($z = zst($t, 'nu'))->{breaker}{window_calls} == 4 }),
   'all four reported');
is($z->{breaker}{state}, 'closed', 'a retry made good is no failure');
is($z->{breaker}{window_calls}, 4, 'window_calls 4');
is($z->{breaker}{window_failures}, 0, 'window_failures 0');

# ---- the slow first upstream, then a fast fallback
for my $i (1 .. 2) {
    my $r = reserve_as($t, '/sl/x', zone => 'sl');
    is($r->status, 200, "slow 404, fast fallback: 200 ($i)");
}
$z = wait_state($t, 'sl', 'open', 5) // zst($t, 'sl');
is($z->{breaker}{state}, 'open', 'the slow first upstream (over slow=300ms) counts')
    or diag explain $z->{breaker};
is($slow->hits, 2, 'the slow upstream saw both');

# ---- a slow peer (600 ms, then 502) retried on a fast one: slow
# (the breaker weighs the window at each failure, so it takes a second
# slow request after min_calls=2; round robin sends every other request
# to the slow peer first)
my @st;
for my $i (1 .. 8) {
    push @st, reserve_as($t, '/rt/x', zone => 'rt')->status;
    last if (zst($t, 'rt')->{breaker}{state} // '') eq 'open' || $st[-1] != 200;
}
# a last one may already find it open (the status is read just before
# the log phase of the request that opened it)
pop @st if @st > 1 && $st[-1] == 503;
is(join(' ', grep { $_ != 200 } @st), '', 'every shopper got 200 from the fast peer');
ok(poll_until(5, sub { uslog() =~ m{^/rt/x 200 "502, 200"$}m }), 'a request tried the slow peer first');
$z = wait_state($t, 'rt', 'open', 5) // zst($t, 'rt');
is($z->{breaker}{state}, 'open', 'the retried slow try counts: over slow=300ms')
    or diag explain $z->{breaker};

# ---- no upstream tried: no verdict
my $r = reserve_as($t, '/nv/a', zone => 'nv');
is($r->header('x-cache'), 'MISS', 'first: a cache miss, the store asked');
ok(poll_until(5, sub { zst($t, 'nv')->{breaker}{window_calls} == 1 }), 'one call');
$r = reserve_as($t, '/nv/a', zone => 'nv');
is($r->header('x-cache'), 'HIT', 'again: a cache hit');
is($r->body, "cacheable\n", 'from the cache');
sub broken_body {
    my ($path, $zone) = @_;
    my $auth = bearer($t, shopper(), zone => $zone);
    return $t->http(raw => "POST $path HTTP/1.1\r\nHost: localhost\r\n"
                         . "Authorization: $auth\r\nAccept: application/json\r\n"
                         . "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
}
is(broken_body('/nv/b', 'nv')->status, 400, 'a broken chunked body: 400, the store not asked');
$r = reserve_as($t, '/nv/c', zone => 'nv');
is($r->header('x-cache'), 'MISS', 'another miss');
ok(poll_until(5, sub { zst($t, 'nv')->{breaker}{window_calls} >= 2 }), 'counted');
is(zst($t, 'nv')->{breaker}{window_calls}, 2, 'two calls: the hit and the broken body gave no verdict');

# ---- a half-open probe that tries no upstream leaves the breaker half-open
for my $i (1 .. 2) {
    is(reserve_as($t, '/be/x', zone => 'be')->status, 502, "store failure $i");
}
ok(wait_state($t, 'be', 'open', 5), 'open');
ok(wait_state($t, 'be', 'half_open', 5), 'half_open after open=1s');
is(broken_body('/be/x', 'be')->status, 400, 'the probe: a broken body, 400');
my $moved = poll_until(0.5, sub { zst($t, 'be')->{breaker}{state} ne 'half_open' });
ok(!$moved, 'still half_open: no verdict from a probe that tried no upstream');
is(reserve_as($t, '/be/x', zone => 'be')->status, 502, 'the next probe reaches the store');
is((wait_state($t, 'be', 'open', 5) // {})->{breaker}{trips}, 2, 'and its 502 opens it again');

unlike($t->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, 'nothing above error logged');

$t->finish(allow_5xx => 1);
