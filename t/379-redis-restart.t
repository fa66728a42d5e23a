# Field case redis-restart: 2 workers, pool=4. Redis stops: reservations get
# the retry answer. Redis starts again on the same port (stock loaded
# again): after the reconnect backoff every reservation is answered from
# Redis (reserved or sold out, never retry), with at most 2 x 4 connections
# from nginx and no reconnect storm.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use FlashsaleTest;
use ReserveTest;

my $t = FlashsaleTest->new(workers => 2);
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->start_redis;

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% pool=4 timeout=1s;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF
is(scalar($t->worker_pids), 2, '2 workers');

# before: connections in use
cli($t, 'SET', stock_key('z', 'A1'), 1000);
my @warm = $t->parallel([ map {
    { path => '/cart/add?sku=A1&qty=1', headers => [ pass_headers($t, "before-$_") ] }
} 1 .. 20 ]);
is(scalar(grep { $_->status == 200 } @warm), 20, 'before the restart: 20 reservations, all 200');
my @nginx = grep { !/cmd=client/ } split /\n/, cli($t, 'CLIENT', 'LIST');
cmp_ok(scalar(@nginx), '<=', 8, 'at most 2 x 4 connections from nginx (' . scalar(@nginx) . ')');

# --- Redis stops
$t->stop_redis;
my $s0 = zone_stats($t);
my @down = map { reserve_req($t, '/cart/add?sku=A1&qty=1', "down-$_") } 1 .. 5;
is(scalar(grep { $_->status == 503 } @down), 5, 'Redis down: 5 reservations, all 503')
    or diag(join ' ', map { $_->status } @down);
is_deeply($down[0]->json, { state => 'retry', retry_after => 2 }, 'body {"state":"retry","retry_after":2}');
is($down[0]->header('retry-after'), '2', 'Retry-After: 2');
my $s1 = zone_stats($t);
is($s1->{reservations}{errors} - $s0->{reservations}{errors}, 5, 'status reservations.errors +5');
cmp_ok($s1->{redis}{errors} - $s0->{redis}{errors}, '>=', 5, 'status redis.errors counts them');

# --- Redis starts again on the same port, empty: the stock is loaded again
$t->start_redis;
my $base = stats_total();
cli($t, 'SET', stock_key('z', 'A1'), 30);

my $t0 = time;
my @probe;
my $up = poll_until(5, sub {
    my $r = reserve_req($t, '/cart/add?sku=A1&qty=1', 'probe-' . scalar(@probe));
    push @probe, $r;
    return $r->status != 503;
}, 0.05);
ok($up, sprintf('a reservation is answered by Redis again after %.2f s (%d tries)', time - $t0, scalar @probe));

my @after = $t->parallel([ map {
    { path => '/cart/add?sku=A1&qty=1', headers => [ pass_headers($t, "after-$_") ] }
} 1 .. 40 ]);
my %by;
$by{ $_->status }++ for @after;
is(scalar(grep { $_->status == 200 || $_->status == 409 } @after), 40,
   '40 reservations after the reconnect: all answered from Redis (200 or 409)') or diag(explain(\%by));
is($by{503} // 0, 0, 'none gets the retry answer');

my @conns = grep { !/cmd=client/ } split /\n/, cli($t, 'CLIENT', 'LIST');
cmp_ok(scalar(@conns), '<=', 8, 'CLIENT LIST: at most 2 x 4 connections from nginx (' . scalar(@conns) . ')');
cmp_ok(scalar(@conns), '>=', 1, 'and nginx is connected');
# connections made since the restart, less this test's own redis-cli calls
# (SET, CLIENT LIST, and the INFO that reads the count)
my $made = stats_total() - $base - 3;
cmp_ok($made, '<=', 8, "no reconnect storm: $made connections from nginx since the restart");

my $probe_ok = grep { $_->status == 200 } @probe;
is(($by{200} // 0) + $probe_ok, 30, 'exactly the 30 reloaded units were reserved');
is(cli($t, 'GET', stock_key('z', 'A1')), '0', 'stock 0');
is(cli($t, 'ZCARD', holds_key('z', 'A1')), '30', '30 holds');


sub stats_total {
    my ($n) = cli($t, 'INFO', 'stats') =~ /total_connections_received:(\d+)/;
    return $n;
}

$t->finish(allow_5xx => 1);
