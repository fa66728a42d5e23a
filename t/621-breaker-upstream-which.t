# watch=upstream: which upstream answers count for the request's zone.
#
# - a logged subrequest (log_subrequest on, auth_request to a 204) does not
#   report its own upstream in place of the main request's: the store's
#   502s open the breaker (it used to stay closed, window_failures 0);
# - an error_page = fallback to another upstream that answers 200 does not
#   hide the first upstream's 502 (it used to count as a success);
# - a try that proxy_next_upstream made good on another peer is no
#   failure ($upstream_status "502, 200");
# - the slowest upstream of a request is its latency, not the last one.
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

my $conf = <<'EOF';
flashsale_zone sub:1m;
flashsale_zone fb:1m;
flashsale_zone nu:1m;
flashsale_zone sl:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=2s;
log_format us '$uri $status "$upstream_status"';
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
    location = /flashsale_status { flashsale_status; }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    access_log off;
    location /sub/ { return 502 "store broken\n"; }
    location /fb/ { return 502 "store broken\n"; }
    location = /ok204 { return 204; }
    location /nu/ { return 502 "this peer is down\n"; }
}
server {
    listen 127.0.0.1:%%PORT3%%;
    access_log off;
    location = /sorry { return 200 "fine\n"; }
    location /nu/ { return 200 "other peer\n"; }
}
EOF
$conf =~ s/__SLOW__/$slow->port/e;
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

unlike($t->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, 'nothing above error logged');

$t->finish(allow_5xx => 1);
