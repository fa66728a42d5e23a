# Field case redis-never-answers: flashsale_redis points at a socket that
# accepts and reads but never writes, timeout=200ms. An admitted shopper's
# reservation gets the retry answer (503 + Retry-After) within about 300 ms,
# counted in redis.timeouts (and toward the breaker); /flashsale_status and
# locations without flashsale keep answering while reservations hang: no
# worker is blocked.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Select;
use FlashsaleTest;
use ReserveTest;
use FakeRedis;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->write_file('html/plain/page.txt', "PLAIN\n");

my $fake = FakeRedis->new(mode => 'silent', dir => $t->dir, max_time => 120);
$t->start_redis;
ReserveTest::cli($t, 'SET', 'fs:{z:G1}:stock', 1000);

my $conf = <<'EOF';
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
# a breaker that counts but cannot trip here (min_calls)
flashsale_breaker min_calls=100000 window=60s;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location = /cart/add {
        flashsale zone=z;
        flashsale_redis FAKE timeout=200ms;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /cart/slow {
        flashsale zone=z;
        flashsale_redis FAKE timeout=3s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /good/cart/add {
        flashsale zone=z;
        flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=2s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location /plain/ { }
    location = /flashsale_status { flashsale_status; }
}
EOF
my $addr = $fake->address;
$conf =~ s/FAKE/$addr/g;
$t->run_nginx($conf);

my $s0 = zone_stats($t);

# --- one reservation: 503 in about the timeout
my $h = open_request(port => $t->port, path => '/cart/add?sku=A1&qty=1',
                     headers => [ pass_headers($t, 'silent-1') ]);
my $r = read_response($h, 10);
is($r->{status}, 503, 'Redis never answers: 503') or diag(explain($r));
cmp_ok($r->{elapsed}, '<', 1.5, sprintf('answered within 1.5 s (%.3f s; the case says about 300 ms)', $r->{elapsed}));
cmp_ok($r->{elapsed}, '>=', 0.15, 'not before the 200 ms timeout ran (the command was really waited for)');
is($r->{headers}{'retry-after'}, '2', 'Retry-After: 2');
is_deeply(FlashsaleTest::json_decode($r->{body}), { state => 'retry', retry_after => 2 },
          'body {"state":"retry","retry_after":2}') or diag($r->{body});
is($r->{headers}{'x-reservation'} // '', '', 'no reservation');
cmp_ok($fake->count('EVALSHA'), '>=', 1, 'the fake received the EVALSHA');
is($fake->connections, 1, 'over one connection');

my $s1 = zone_stats($t);
is($s1->{redis}{timeouts} - $s0->{redis}{timeouts}, 1, 'status redis.timeouts +1');
is($s1->{reservations}{errors} - $s0->{reservations}{errors}, 1, 'status reservations.errors +1');
is($s1->{reservations}{sold_out} - $s0->{reservations}{sold_out}, 0, 'not counted as sold out');
cmp_ok(($s1->{breaker}{window_failures} // 0) - ($s0->{breaker}{window_failures} // 0), '>=', 1,
       'counted as a failure toward the breaker (breaker.window_failures)');
like($t->error_log, qr/flashsale: redis \S+ timed out/, 'error.log says the Redis call timed out');

# --- an HTML shopper gets the retry page
my $hh = open_request(port => $t->port, path => '/cart/add?sku=A1&qty=1',
                      headers => [ Authorization => bearer($t, 'silent-html') ]);
my $hr = read_response($hh, 10);
is($hr->{status}, 503, 'HTML client: 503');
like($hr->{headers}{'content-type'} // '', qr{^text/html}, 'the retry page');
ok(defined $hr->{headers}{'retry-after'}, 'with Retry-After');
cmp_ok($hr->{elapsed}, '<', 1.5, sprintf('within 1.5 s (%.3f s)', $hr->{elapsed}));

# --- while reservations hang (timeout=3s), nothing else waits
my $tc0 = zone_stats($t)->{redis}{timeouts};
my @hung = map {
    open_request(port => $t->port, path => '/cart/slow?sku=A1&qty=1',
                 headers => [ pass_headers($t, "hung-$_") ])
} 1 .. 6;
sleep 0.3;

my $t0 = time;
my @plain = $t->parallel([ map { { path => '/plain/page.txt' } } 1 .. 20 ], timeout => 5);
my $plain_took = time - $t0;
is(scalar(grep { $_->status == 200 && $_->body eq "PLAIN\n" } @plain), 20,
   '20 requests to a location without flashsale: all 200 while reservations hang');
cmp_ok($plain_took, '<', 0.5, sprintf('promptly (%.3f s for all 20)', $plain_took));

$t0 = time;
my $st = $t->get('/flashsale_status');
my $st_took = time - $t0;
is($st->status, 200, '/flashsale_status answers while reservations hang');
cmp_ok($st_took, '<', 0.5, sprintf('promptly (%.3f s)', $st_took));

$t0 = time;
my $wait = $t->get('/cart/add?sku=A1&qty=1', Accept => 'application/json');
is($wait->status, 429, 'a shopper without a pass gets the waiting room meanwhile');
cmp_ok(time - $t0, '<', 0.5, 'promptly');

$t0 = time;
my @good = $t->parallel([ map {
    { path => '/good/cart/add?sku=G1&qty=1', headers => [ pass_headers($t, "good-$_") ] }
} 1 .. 10 ], timeout => 5);
my $good_took = time - $t0;
is(scalar(grep { $_->status == 200 } @good), 10,
   '10 reservations against a healthy Redis in another location: all 200 meanwhile');
cmp_ok($good_took, '<', 0.5, sprintf('promptly (%.3f s)', $good_took));

my $still = 0;
for my $hd (@hung) {
    $still++ unless IO::Select->new($hd->{sock})->can_read(0);
}
is($still, 6, 'the 6 reservations are still waiting for Redis (proof the others ran meanwhile)');

my @hr = map { read_response($_, 10) } @hung;
is(scalar(grep { $_->{status} == 503 } @hr), 6, 'then all 6 get 503');
my @late = grep { $_->{elapsed} < 2.5 || $_->{elapsed} > 5 } @hr;
is(scalar(@late), 0, 'each after its own 3 s timeout (2.5..5 s)')
    or diag(join ', ', map { sprintf '%.2f', $_->{elapsed} } @hr);
cmp_ok(zone_stats($t)->{redis}{timeouts} - $tc0, '>=', 1,
       'status redis.timeouts counts them');

# --- later reservations still fail fast and never hang a worker
my @again = $t->parallel([ map {
    { path => '/cart/add?sku=A1&qty=1', headers => [ pass_headers($t, "again-$_") ] }
} 1 .. 10 ], timeout => 5);
is(scalar(grep { $_->status == 503 } @again), 10, '10 more reservations: all 503');
is(scalar(grep { $_->status == 500 } @again) + scalar(grep { $_->{status} == 500 } @hr), 0,
   'never a 500');
cmp_ok($fake->connections, '<=', 2 * 16, 'connections stay within 2 workers x pool 16');

$t->finish(allow_5xx => 1);
$fake->stop;
