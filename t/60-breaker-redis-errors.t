# Issue 4: the breaker trips on Redis failures.
# A fake Redis answering every command with -ERR (zone z) or -BUSY (zone b),
# flashsale_breaker failures=50% window=5s min_calls=4 open=2s half_open=2:
# three failures leave it closed, the fourth opens it (trips 1, logged once
# at warn); while open, reservations get 503 with Retry-After >= 1 from
# memory and the fake receives no command at all (counted); waiting-room
# answers are unchanged. After `open` a probe that fails opens it again
# (trips 2, "breaker open again").
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use FlashsaleTest;
use ReserveTest;
use FakeRedis;
use BreakerTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");

my $ferr  = FakeRedis->new(mode => 'error', dir => $t->dir);
my $fbusy = FakeRedis->new(mode => 'busy', dir => $t->dir);

my $conf = <<'EOF';
flashsale_zone z:1m;
flashsale_zone b:1m;
flashsale_secret_file %%KEYS%%;
flashsale_breaker failures=50% window=5s min_calls=4 open=2s half_open=2;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location /bdrop/ { flashsale zone=b rate=0r/s; }
    location = /cart/add {
        flashsale zone=z;
        flashsale_redis 127.0.0.1:__ERR__ timeout=1s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /b/cart/add {
        flashsale zone=b;
        flashsale_redis 127.0.0.1:__BUSY__ timeout=1s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF
$conf =~ s/__ERR__/$ferr->port/e;
$conf =~ s/__BUSY__/$fbusy->port/e;
$t->run_nginx($conf);

my $z = zst($t, 'z');
is($z->{breaker}{state}, 'closed', 'zone z starts closed');
is($z->{breaker}{trips}, 0, 'no trips yet');

# ---- -ERR: one failure at a time
my $mark = $t->log_mark;
for my $i (1 .. 3) {
    my $r = reserve_as($t, '/cart/add?sku=A1&qty=1');
    ok(retry_ok($r, 2, 2), "failure $i: 503 retry, Retry-After 2 (Redis error)")
        or diag($r->describe);
}
$z = zst($t, 'z');
is($z->{breaker}{state}, 'closed', '3 failures < min_calls=4: still closed');
is($z->{breaker}{window_calls}, 3, 'window_calls 3');
is($z->{breaker}{window_failures}, 3, 'window_failures 3');
is($ferr->count('EVALSHA'), 3, 'the fake received 3 EVALSHA');

my $r = reserve_as($t, '/cart/add?sku=A1&qty=1');
ok(retry_ok($r, 2, 2), 'failure 4: 503 retry (Redis error)') or diag($r->describe);
$z = zst($t, 'z');
is($z->{breaker}{state}, 'open', 'after min_calls=4 failures: breaker open');
is($z->{breaker}{trips}, 1, 'trips 1');
cmp_ok($z->{breaker}{retry_after}, '>=', 1, 'status retry_after >= 1');
cmp_ok($z->{breaker}{retry_after}, '<=', 2, 'status retry_after <= open (2 s)');
is($z->{redis}{errors}, 4, 'redis.errors 4');
is($z->{reservations}{errors}, 4, 'reservations.errors 4');

my $opened = poll_until(2, sub {
    $t->log_since($mark) =~ /\[warn\].*flashsale zone "z": breaker open for 2000 ms: 4 of 4 calls failed in the last 5 s/
});
ok($opened, 'the trip is logged at warn with its reason');

# ---- while open: nothing reaches the fake
my $before = $ferr->counts;
my $conns = $ferr->connections;
my @reqs = map {
    +{ path => "/cart/add?sku=A1&qty=1",
       headers => [ Authorization => bearer($t, shopper()),
                    Accept => ($_ % 2 ? 'application/json' : 'text/html') ] }
} 1 .. 12;
my $t0 = time;
my @res = $t->parallel(\@reqs);
my @json = grep { $_->{request}{headers}[3] eq 'application/json' } @res;
is(scalar(grep { retry_ok($_, 1, 2) } @json), scalar(@json),
   'open: every JSON reservation gets 503 {"state":"retry","retry_after":S}, Retry-After S in 1..2');
my @html = grep { $_->{request}{headers}[3] eq 'text/html' } @res;
is(scalar(grep {
        $_->status == 503 && ($_->header('Retry-After') // 0) >= 1
            && ($_->header('Content-Type') // '') =~ m{text/html}
    } @html), scalar(@html), 'open: every HTML reservation gets the 503 retry page with Retry-After >= 1');
cmp_ok(time - $t0, '<', 1, 'the open answers come at once, from memory');

is_deeply($ferr->counts, $before, 'open: the fake Redis received no command at all')
    or diag(explain($ferr->counts));
is($ferr->connections, $conns, 'open: and no new connection');
is($ferr->count('EVALSHA'), 4, 'EVALSHA count still 4');
is(zst($t, 'z')->{redis}{errors}, 4, 'redis.errors unchanged while open');

# the waiting room is not the breaker's business
my $w = $t->get('/drop/x', Accept => 'application/json');
is($w->status, 429, 'open: a shopper without a pass still gets the waiting answer (429 JSON)')
    or diag($w->describe);
is(($w->json // {})->{state}, 'waiting', 'state waiting');

# ---- -BUSY, four at once
my @b = $t->parallel([ map {
    +{ path => '/b/cart/add?sku=B1&qty=1',
       headers => [ Authorization => bearer($t, shopper(), zone => 'b'),
                    Accept => 'application/json' ] }
} 1 .. 4 ]);
is(scalar(grep { retry_ok($_, 2, 2) } @b), 4, 'busy: 4 concurrent reservations get 503 retry');
my $bz = zst($t, 'b');
is($bz->{breaker}{state}, 'open', 'busy: breaker of zone b open after 4 -BUSY');
is($bz->{breaker}{trips}, 1, 'busy: trips 1');
is($fbusy->count('EVALSHA'), 4, 'busy: the fake received exactly 4 EVALSHA');
is(zst($t, 'z')->{breaker}{trips}, 1, 'zone z is not affected by zone b');

my $bbefore = $fbusy->counts;
@b = $t->parallel([ map {
    +{ path => '/b/cart/add?sku=B1&qty=1',
       headers => [ Authorization => bearer($t, shopper(), zone => 'b'),
                    Accept => 'application/json' ] }
} 1 .. 8 ]);
is(scalar(grep { retry_ok($_, 1, 2) } @b), 8, 'busy, open: 8 more get 503 from memory');
is_deeply($fbusy->counts, $bbefore, 'busy, open: the fake received nothing more');

# ---- a failing probe opens it again
$z = wait_state($t, 'z', 'half_open', 5);
ok($z, 'zone z reports half_open after open=2s');
$mark = $t->log_mark;
$r = reserve_as($t, '/cart/add?sku=A1&qty=1');
ok(retry_ok($r, 2, 2), 'the probe reaches Redis and fails: 503 retry, Retry-After 2')
    or diag($r->describe);
is($ferr->count('EVALSHA'), 5, 'exactly one more EVALSHA (the probe)');
$z = zst($t, 'z');
is($z->{breaker}{state}, 'open', 'a failed probe opens the breaker again');
is($z->{breaker}{trips}, 2, 'trips 2');
ok(poll_until(2, sub { $t->log_since($mark) =~ /\[warn\].*flashsale zone "z": breaker open again/ }),
   'logged at warn: breaker open again');

$r = reserve_as($t, '/cart/add?sku=A1&qty=1');
ok(retry_ok($r, 1, 2), 'open again: 503 from memory') or diag($r->describe);
is($ferr->count('EVALSHA'), 5, 'and no EVALSHA');

is(log_count($t, qr/breaker open for/), 2, 'each first trip logged once (z and b)');

no_500($t);
$t->finish(allow_5xx => 1);
