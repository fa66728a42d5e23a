# Issue 4: the breaker trips on Redis timeouts and on a slow Redis.
# Zone t: a fake Redis that never answers, timeout=200ms: four reservations
# time out (redis.timeouts 4, 503 retry) and the breaker opens; while open
# nothing reaches the fake.
# Zone s: a real Redis blocked by "DEBUG SLEEP 0.5" from another client,
# slow=100ms, timeout=1s: four reservations that succeed but take ~0.45 s
# are failures for the breaker (timeouts 0, errors 0), which opens; the
# next reservation is answered from memory (INFO commandstats unchanged).
# After `open`, with Redis sleeping again, six concurrent reservations:
# exactly half_open=2 probes reach Redis (2 EVALSHA), the four others get
# 503 with Retry-After: 1 at once; the probes are slow, so it opens again.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use IO::Select;
use FlashsaleTest;
use ReserveTest;
use FakeRedis;
use BreakerTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->start_redis('--enable-debug-command', 'yes');

my $fake = FakeRedis->new(mode => 'silent', dir => $t->dir);

my $conf = <<'EOF';
flashsale_zone t:1m;
flashsale_zone s:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=t rate=0r/s; }
    location /sdrop/ { flashsale zone=s rate=0r/s; }
    location = /t/cart/add {
        flashsale zone=t;
        flashsale_breaker failures=50% window=5s min_calls=4 open=2s half_open=2;
        flashsale_redis 127.0.0.1:__FAKE__ timeout=200ms;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /s/cart/add {
        flashsale zone=s;
        flashsale_breaker failures=50% window=5s min_calls=4 slow=100ms open=2s half_open=2;
        flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=1s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF
$conf =~ s/__FAKE__/$fake->port/e;
$t->run_nginx($conf);

# ---- timeouts, one at a time
for my $i (1 .. 4) {
    my $t0 = time;
    my $r = reserve_as($t, '/t/cart/add?sku=A1&qty=1', zone => 't');
    my $took = time - $t0;
    ok(retry_ok($r, 2, 2), "timeout $i: 503 retry, Retry-After 2") or diag($r->describe);
    ok($took >= 0.18 && $took < 0.9, sprintf("timeout $i answered after the 200ms timeout (%.3f s)", $took));
}
my $z = zst($t, 't');
is($z->{redis}{timeouts}, 4, 'redis.timeouts 4');
is($z->{redis}{errors}, 0, 'redis.errors 0 (timeouts are not errors)');
is($z->{reservations}{errors}, 4, 'reservations.errors 4');
is($z->{breaker}{state}, 'open', 'breaker open after 4 timeouts');
is($z->{breaker}{trips}, 1, 'trips 1');
is($fake->count('EVALSHA'), 4, 'the silent fake received 4 EVALSHA');

my $before = $fake->counts;
my $conns = $fake->connections;
my @res = $t->parallel([ map {
    +{ path => '/t/cart/add?sku=A1&qty=1',
       headers => [ Authorization => bearer($t, shopper(), zone => 't'),
                    Accept => 'application/json' ] }
} 1 .. 10 ]);
is(scalar(grep { retry_ok($_, 1, 2) } @res), 10, 'open: 10 reservations get 503 at once, Retry-After 1..2');
is_deeply($fake->counts, $before, 'open: the fake received no command');
is($fake->connections, $conns, 'open: no new connection to the fake');
is(zst($t, 't')->{redis}{timeouts}, 4, 'open: redis.timeouts unchanged');

# ---- slow Redis
is(cli($t, 'SET', stock_key('s', 'A1'), 100), 'OK', 'stock of s:A1 set to 100');

my $zs = zst($t, 's');
is($zs->{breaker}{state}, 'closed', 'zone s closed before');

# block Redis for 0.5 s from another client
my $blk = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->redis_port,
                                Proto => 'tcp', Timeout => 2) or die "connect: $!";
my $e0 = evalsha_calls($t);
syswrite($blk, "*3\r\n\$5\r\nDEBUG\r\n\$5\r\nSLEEP\r\n\$3\r\n0.5\r\n");
# no reply can tell us the sleep has begun; give Redis a moment to read it
sleep 0.05;
my $t0 = time;
@res = $t->parallel([ map {
    +{ path => '/s/cart/add?sku=A1&qty=1',
       headers => [ Authorization => bearer($t, shopper(), zone => 's'),
                    Accept => 'application/json' ] }
} 1 .. 4 ]);
my $took = time - $t0;
my $sel = IO::Select->new($blk);
my $ok = '';
sysread($blk, $ok, 100) if $sel->can_read(3);
close $blk;
like($ok, qr/^\+OK/, 'DEBUG SLEEP 0.5 answered +OK');
is(scalar(grep { $_->status == 200 } @res), 4, 'the 4 slow reservations still succeed (200)')
    or diag(join "\n", map { $_->describe } @res);
cmp_ok($took, '>=', 0.2, sprintf('they were slow (%.3f s)', $took));
is(evalsha_calls($t) - $e0, 4, 'Redis ran 4 EVALSHA');

$zs = zst($t, 's');
is($zs->{reservations}{reserved}, 4, 'reservations.reserved 4');
is($zs->{redis}{timeouts}, 0, 'slow, not timed out: redis.timeouts 0');
is($zs->{redis}{errors}, 0, 'redis.errors 0');
cmp_ok($zs->{redis}{latency_ms_avg}, '>', 100, "latency_ms_avg > slow ($zs->{redis}{latency_ms_avg})");
is($zs->{breaker}{state}, 'open', 'slower than slow=100ms counts as failure: breaker open');
is($zs->{breaker}{trips}, 1, 'trips 1');

$e0 = evalsha_calls($t);
my $r = reserve_as($t, '/s/cart/add?sku=A1&qty=1', zone => 's');
ok(retry_ok($r, 1, 2), 'open: the next reservation gets 503 Retry-After 1..2') or diag($r->describe);
is(evalsha_calls($t), $e0, 'open: Redis saw no EVALSHA (INFO commandstats)');
is(cli($t, 'GET', stock_key('s', 'A1')), 96, 'stock 96: only the 4 slow reservations were taken');

# ---- half-open with watch=redis: exactly half_open=2 probes reach the
# (again sleeping) Redis, the 4 others are refused at once; the probes are
# slow, so the breaker opens again
ok(wait_state($t, 's', 'half_open', 5), 'zone s: half_open after open=2s');
$blk = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->redis_port,
                             Proto => 'tcp', Timeout => 2) or die "connect: $!";
$e0 = evalsha_calls($t);
syswrite($blk, "*3\r\n\$5\r\nDEBUG\r\n\$5\r\nSLEEP\r\n\$3\r\n0.5\r\n");
sleep 0.05;
my @h = map {
    open_request(port => $t->port, path => '/s/cart/add?sku=A1&qty=1',
                 headers => [ Authorization => bearer($t, shopper(), zone => 's'),
                              Accept => 'application/json' ])
} 1 .. 6;
my @a = read_all(\@h, 5);
$sel = IO::Select->new($blk);
sysread($blk, $ok, 100) if $sel->can_read(3);
close $blk;
my @through = grep { $_->{status} == 200 } @a;
my @refused = grep { $_->{status} == 503 } @a;
is(scalar(@through), 2, 'half_open: exactly 2 of 6 concurrent reservations reach Redis')
    or diag(join ', ', map { "$_->{status}" } @a);
is(scalar(@refused), 4, 'the 4 others: 503');
is(scalar(grep { ($_->{headers}{'retry-after'} // '') eq '1' && $_->{elapsed} < 0.35 } @refused), 4,
   'refused at once with Retry-After: 1');
is(evalsha_calls($t) - $e0, 2, 'Redis ran exactly 2 EVALSHA (the probes)');
$zs = zst($t, 's');
is($zs->{breaker}{state}, 'open', 'the probes were slow: open again');
is($zs->{breaker}{trips}, 2, 'trips 2');
is(cli($t, 'GET', stock_key('s', 'A1')), 94, 'stock 94');

no_500($t);
$t->finish(allow_5xx => 1);
