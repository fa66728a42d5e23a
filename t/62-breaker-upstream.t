# Issue 4: watch=upstream. Admitted shoppers proxied to a store that answers
# 500 (a second server block, `return 500;`, with its own access log) trip
# the breaker after min_calls=4; while open they get 503 from memory and the
# store sees no request (its access log is counted). After `open`, six
# concurrent requests to a slow store (1 s): exactly half_open=2 go through
# as probes (200 after ~1 s), the four others get 503 with Retry-After: 1 at
# once; the store counts exactly 2 requests; both probes succeed -> closed
# (trips still 1, logged). Then: trip again (trips 2), and a probe that gets
# a 500 opens it again (trips 3).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use FlashsaleTest;
use ReserveTest;
use FakeUpstream;
use BreakerTest;

my $t = FlashsaleTest->new;
$t->write_keys;
my $slow = FakeUpstream->new(status => 200, delay => 1, dir => $t->dir);

my $conf = <<'EOF';
flashsale_zone u:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    flashsale_breaker failures=50% window=5s min_calls=4 slow=3s open=2s half_open=2 watch=upstream;
    location /drop/ { flashsale zone=u rate=0r/s; }
    location /shop/ {
        flashsale zone=u;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location /slow/ {
        flashsale zone=u;
        proxy_pass http://127.0.0.1:__SLOW__;
        proxy_read_timeout 10s;
    }
    location = /flashsale_status { flashsale_status; }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    access_log %%DIR%%/store.log;
    location /shop/fail { return 500 "store broken\n"; }
    location /shop/ok { return 200 "store ok\n"; }
}
EOF
$conf =~ s/__SLOW__/$slow->port/e;
$t->run_nginx($conf);

sub store_hits {
    my $l = $t->read_file('store.log') // '';
    return scalar(() = $l =~ /\n/g);
}

sub shop {
    my ($path, %o) = @_;
    return reserve_as($t, $path, zone => 'u', %o);
}

# ---- trip by upstream 5xx: 3 ok + 3 failed = 50% of 6 calls
my $r;
my @r = map { shop('/shop/ok') } 1 .. 3;
is(scalar(grep { $_->status == 200 && $_->body eq "store ok\n" } @r), 3,
   'admitted shoppers reach the store (3 x 200)');
for my $i (1 .. 2) {
    $r = shop('/shop/fail');
    is($r->status, 500, "store failure $i passes through (500)");
}
my $z = zst($t, 'u');
is($z->{breaker}{window_calls}, 5, 'window_calls 5');
is($z->{breaker}{window_failures}, 2, 'window_failures 2');
is($z->{breaker}{state}, 'closed', '2 of 5 failed (40% < 50%): closed');

my $mark = $t->log_mark;
$r = shop('/shop/fail');
is($r->status, 500, 'store failure 3 passes through (500)');
$z = zst($t, 'u');
is($z->{breaker}{state}, 'open', '3 of 6 failed (50%): open');
is($z->{breaker}{trips}, 1, 'trips 1');
ok(poll_until(2, sub { $t->log_since($mark) =~ /\[warn\].*flashsale zone "u": breaker open for 2000 ms: 3 of 6 calls failed in the last 5 s/ }),
   'trip logged at warn with 3 of 6');

my $hits;
ok(poll_until(2, sub { ($hits = store_hits()) == 6 }), 'the store logged 6 requests')
    or diag("store hits: $hits");

# ---- open: nobody reaches the store
my @res = $t->parallel([ map {
    +{ path => $_ % 2 ? '/shop/ok' : '/shop/fail',
       headers => [ Authorization => bearer($t, shopper(), zone => 'u'),
                    Accept => 'application/json' ] }
} 1 .. 10 ]);
is(scalar(grep { retry_ok($_, 1, 2) } @res), 10, 'open: 10 shoppers get 503 retry, Retry-After 1..2');
# any request that reached the store would have been a 200/500 answer;
# the log stays at 6 for a while after the last answer
my $changed = poll_until(0.5, sub { store_hits() != 6 });
ok(!$changed, 'open: the store received no request (its access log stays at 6)');
is($slow->hits, 0, 'the slow store has seen nothing yet');

# ---- half-open: exactly 2 probes
$z = wait_state($t, 'u', 'half_open', 5);
ok($z, 'half_open after open=2s');
my $t0 = time;
my @h = map {
    open_request(port => $t->port, path => "/slow/p$_",
                 headers => [ Authorization => bearer($t, shopper(), zone => 'u'),
                              Accept => 'application/json' ])
} 1 .. 6;
my @a = read_all(\@h, 10);
my @through = grep { $_->{status} == 200 } @a;
my @refused = grep { $_->{status} == 503 } @a;
is(scalar(@through), 2, 'exactly half_open=2 of 6 concurrent requests go through')
    or diag(join ', ', map { "$_->{status} " . ($_->{error} // '') } @a);
is(scalar(@refused), 4, 'the 4 others get 503');
is(scalar(grep { ($_->{headers}{'retry-after'} // '') eq '1' } @refused), 4,
   'each refused one has Retry-After: 1');
is(scalar(grep { $_->{elapsed} < 0.5 } @refused), 4, 'refused at once, not after the probes');
is(scalar(grep { $_->{elapsed} >= 0.9 } @through), 2, 'the probes took the store\'s 1 s');
is($slow->hits, 2, 'the store received exactly 2 requests');

# the probes report in the log phase, just after their answers went out
$z = wait_state($t, 'u', 'closed', 5) // zst($t, 'u');
is($z->{breaker}{state}, 'closed', 'both probes succeeded: closed');
is($z->{breaker}{trips}, 1, 'trips still 1');
is($z->{breaker}{window_calls}, 0, 'the window starts empty after closing');
ok(poll_until(2, sub { $t->log_since($mark) =~ /\[warn\].*flashsale zone "u": breaker closed/ }),
   'closing logged at warn');

$slow->set(status => 200, delay => 0);
@r = map { shop('/slow/again') } 1 .. 5;
is(scalar(grep { $_->status == 200 } @r), 5, 'closed: shoppers reach the store again');

# ---- trip again (5 ok in the window: the 5th failure makes 50%),
# then a failing probe
my $n = 0;
while ($n < 10) {
    $n++;
    shop('/shop/fail');
    last if zst($t, 'u')->{breaker}{state} eq 'open';
}
$z = zst($t, 'u');
is($n, 5, 'after 5 ok calls it takes 5 failures (5 of 10 = 50%) to trip again');
is($z->{breaker}{state}, 'open', 'open again');
is($z->{breaker}{trips}, 2, 'trips 2');
ok(wait_state($t, 'u', 'half_open', 5), 'half_open again');
my $before = store_hits();
$r = shop('/shop/fail');
is($r->status, 500, 'the probe reaches the store and gets its 500');
$z = wait_state($t, 'u', 'open', 5) // zst($t, 'u');
is($z->{breaker}{state}, 'open', 'a failed probe: open again');
is($z->{breaker}{trips}, 3, 'trips 3');
$r = shop('/shop/ok');
ok(retry_ok($r, 1, 2), 'and the next shopper gets 503 from memory') or diag($r->describe);
ok(poll_until(2, sub { store_hits() == $before + 1 }), 'the store saw only the probe');
ok(poll_until(2, sub { $t->error_log =~ /flashsale zone "u": breaker open again/ }),
   'logged: breaker open again');

$slow->stop;
$t->finish(allow_5xx => 1);
