# Field case breaker-recovers (issue 4).
# Trip the breaker with Redis failures (redis-server stopped), make Redis
# healthy again (started, stock set), keep ~10 reservations a second
# flowing: after `open` the breaker goes half-open, the probes succeed and
# it closes; trips counts 1; reservations succeed again.
# Then: Redis fails again (trips 2) and stays down through half-open: the
# probes fail and it opens again (trips 3, "breaker open again"); healthy
# Redis closes it once more.
# Zone l (half_open=1): a shopper answered from the sold-out latch during
# half-open does not keep the probe slot; the next shopper is the probe.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use FlashsaleTest;
use ReserveTest;
use BreakerTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->start_redis;

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_zone l:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=250ms;
server {
    flashsale_breaker failures=50% window=5s min_calls=4 open=2s half_open=2;
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location /ldrop/ {
        flashsale zone=l rate=0r/s;
        flashsale_breaker failures=50% window=5s min_calls=4 open=1s half_open=1;
    }
    location = /l/cart/add {
        flashsale zone=l;
        flashsale_breaker failures=50% window=5s min_calls=4 open=1s half_open=1;
        flashsale_reserve sku=$arg_sku qty=$arg_qty latch=5s;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF

my $STOCK = 100000;
my $key = stock_key('z', 'A1');
cli($t, 'SET', $key, $STOCK);

sub reserve { reserve_as($t, '/cart/add?sku=A1&qty=1') }

my @ok = map { reserve() } 1 .. 3;
is(scalar(grep { $_->status == 200 } @ok), 3, 'Redis healthy: 3 reservations succeed');

# Redis goes away: failures until the breaker opens
$t->stop_redis;
my ($n, %seen) = (0);
while ($n < 20) {
    my $r = reserve();
    $n++;
    $seen{ $r->status }++;
    last if zst($t, 'z')->{breaker}{state} eq 'open';
}
my $z = zst($t, 'z');
is($z->{breaker}{state}, 'open', "Redis stopped: breaker open after $n failed reservations");
is($n, 3, 'it took 3 failures (3 of 6 calls = 50%, min_calls 4)');
is_deeply(\%seen, { 503 => $n }, 'each failed reservation got 503');
is($z->{breaker}{trips}, 1, 'trips 1');

# ~10 reservations a second for a bounded time, until $done->() is true;
# returns the answers as [time, status]
sub flow {
    my ($secs, $done) = @_;
    my @log;
    my $start = time;
    my $next = $start;
    while (time - $start < $secs) {
        my $r = reserve();
        push @log, [ time - $start, $r->status, $r ];
        last if $done->();
        $next += 0.1;
        sleep_until($next);
    }
    return @log;
}

# Redis healthy again (a restarted Redis is empty: the operator sets stock)
$t->start_redis;
cli($t, 'SET', $key, $STOCK);
my $e0 = evalsha_calls($t);
my $tripped_at = time;

my @flow = flow(12, sub { zst($t, 'z')->{breaker}{state} eq 'closed' });
my $took = time - $tripped_at;
$z = zst($t, 'z');
is($z->{breaker}{state}, 'closed', sprintf('under steady traffic the breaker closes (after %.1f s)', $took));
is($z->{breaker}{trips}, 1, 'trips still 1');
cmp_ok($took, '<', 6, 'it closed within a few seconds of open=2s');

my @while_open = grep { $_->[1] != 200 } @flow;
is(scalar(grep { retry_ok($_->[2], 1, 2) } @while_open), scalar(@while_open),
   'until then: 503 retry answers with Retry-After 1..2');
my @through = grep { $_->[1] == 200 } @flow;
is(scalar(@through), 2, 'the 2 probes were the requests that reached Redis and succeeded')
    or diag(join ' ', map { sprintf '%.1f:%d', @$_[0, 1] } @flow);
is(evalsha_calls($t) - $e0, 2, 'Redis ran exactly 2 EVALSHA while not closed');
ok(poll_until(2, sub { $t->error_log =~ /\[warn\].*flashsale zone "z": breaker closed: half-open probes succeeded: \d+ of \d+/ }),
   'closing logged at warn');

my @after = map { reserve() } 1 .. 5;
is(scalar(grep { $_->status == 200 } @after), 5, 'closed: reservations succeed again');

# ---- Redis fails again and stays down through half-open
$t->stop_redis;
$n = 0;
while ($n < 30) {
    reserve();
    $n++;
    last if zst($t, 'z')->{breaker}{state} eq 'open';
}
$z = zst($t, 'z');
is($z->{breaker}{state}, 'open', 'Redis down again: open');
is($z->{breaker}{trips}, 2, 'trips 2');

my $mark = $t->log_mark;
@flow = flow(6, sub { zst($t, 'z')->{breaker}{trips} >= 3 });
$z = zst($t, 'z');
is($z->{breaker}{trips}, 3, 'a probe failing during half-open: trips 3');
is($z->{breaker}{state}, 'open', 'and the breaker is open again');
is(scalar(grep { $_->[1] != 503 } @flow), 0, 'every reservation meanwhile got 503');
ok(poll_until(2, sub { $t->log_since($mark) =~ /\[warn\].*flashsale zone "z": breaker open again/ }),
   'logged: breaker open again');

$t->start_redis;
cli($t, 'SET', $key, $STOCK);
@flow = flow(12, sub { zst($t, 'z')->{breaker}{state} eq 'closed' });
$z = zst($t, 'z');
is($z->{breaker}{state}, 'closed', 'healthy Redis closes it again');
is($z->{breaker}{trips}, 3, 'trips 3');
@after = map { reserve() } 1 .. 3;
is(scalar(grep { $_->status == 200 } @after), 3, 'reservations succeed');

# ---- zone l (half_open=1): steady traffic includes a sold-out SKU that
# is answered from the latch. Such an answer is over at once; it must not
# keep the only probe slot, or the breaker stays half-open while shoppers
# of that SKU keep coming.
cli($t, 'SET', stock_key('l', 'S0'), 0);
cli($t, 'SET', stock_key('l', 'A1'), 100);
my $r = reserve_as($t, '/l/cart/add?sku=S0&qty=1', zone => 'l');
is($r->status, 409, 'zone l: S0 sold out (latched for 5 s)');
$t->stop_redis;
$n = 0;
while ($n < 10) {
    reserve_as($t, '/l/cart/add?sku=A1&qty=1', zone => 'l');
    $n++;
    last if zst($t, 'l')->{breaker}{state} eq 'open';
}
is(zst($t, 'l')->{breaker}{state}, 'open', 'zone l: Redis stopped, open');
$t->start_redis;
cli($t, 'SET', stock_key('l', 'S0'), 0);
cli($t, 'SET', stock_key('l', 'A1'), 100);
ok(wait_state($t, 'l', 'half_open', 5), 'zone l: half_open after open=1s');
ok(grep({ $_ eq 'S0' } @{ zst($t, 'l')->{sold_out_skus} }), 'S0 is still latched');
$r = reserve_as($t, '/l/cart/add?sku=S0&qty=1', zone => 'l');
is($r->status, 409, 'half-open: a shopper of S0 gets 409 from the latch');
$r = reserve_as($t, '/l/cart/add?sku=A1&qty=1', zone => 'l');
is($r->status, 200, 'the next shopper (no probe in flight) is let through as the probe and reserves')
    or diag($r->status . ' Retry-After ' . ($r->header('Retry-After') // '-'));
is(zst($t, 'l')->{breaker}{state}, 'closed', 'zone l: closed');

no_500($t);
$t->finish(allow_5xx => 1);
