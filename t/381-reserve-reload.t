# Redis connections and reloads (issue 3): pooled Redis connections never
# keep an old worker alive after `nginx -s reload` (idle ones are closed,
# backing-off ones hold no timer, in-flight ones end at their timeout), and
# the new workers reserve at once with at most pool connections each.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use FlashsaleTest;
use ReserveTest;
use FakeRedis;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->start_redis;
my $fake = FakeRedis->new(mode => 'silent', dir => $t->dir);

my $conf = <<'EOF';
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% pool=4 timeout=2s;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /hang/cart/add {
        flashsale zone=z;
        flashsale_redis FAKE timeout=2s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF
my $addr = $fake->address;
$conf =~ s/FAKE/$addr/g;
$t->run_nginx($conf);

sub nginx_clients {
    return scalar grep { !/cmd=client/ } split /\n/, cli($t, 'CLIENT', 'LIST');
}

cli($t, 'SET', stock_key('z', 'A1'), 1000);
my @r = $t->parallel([ map {
    { path => '/cart/add?sku=A1&qty=1', headers => [ pass_headers($t, "r1-$_") ] }
} 1 .. 30 ]);
is(scalar(grep { $_->status == 200 } @r), 30, '30 reservations: all 200');
my $before = nginx_clients();
cmp_ok($before, '>=', 1, "nginx holds pooled connections ($before)");

# --- idle pooled connections: the old workers exit promptly
my $t0 = time;
ok($t->reload(undef, timeout => 5), 'reload: the old workers are gone within 5 s');
cmp_ok(time - $t0, '<', 3, sprintf('(%.2f s)', time - $t0));
ok(poll_until(3, sub { nginx_clients() == 0 }, 0.05),
   'the old workers closed their Redis connections');
my @r2 = $t->parallel([ map {
    { path => '/cart/add?sku=A1&qty=1', headers => [ pass_headers($t, "r2-$_") ] }
} 1 .. 30 ]);
is(scalar(grep { $_->status == 200 } @r2), 30, 'the new workers reserve at once: 30 x 200');
cmp_ok(nginx_clients(), '<=', 8, 'with at most 2 x 4 connections');

# --- reservations in flight on a hanging Redis: the old workers wait for
# them (graceful shutdown) and then exit
my @hung = map {
    open_request(port => $t->port, path => '/hang/cart/add?sku=A1&qty=1',
                 headers => [ pass_headers($t, "hang-$_") ])
} 1 .. 4;
sleep 0.2;
$t0 = time;
ok($t->reload(undef, timeout => 8), 'reload with reservations in flight: the old workers exit');
my $took = time - $t0;
cmp_ok($took, '<', 4, sprintf('by the 2 s Redis timeout, not later (%.2f s)', $took));
my @hr = map { read_response($_, 5) } @hung;
is(scalar(grep { $_->{status} == 503 } @hr), 4, 'the in-flight reservations got 503');

# --- Redis down, connections backing off: nothing keeps a worker alive
$t->stop_redis;
my @down = map { reserve_req($t, '/cart/add?sku=A1&qty=1', "down-$_") } 1 .. 6;
is(scalar(grep { $_->status == 503 } @down), 6, 'Redis down: 503');
$t0 = time;
ok($t->reload(undef, timeout => 5), 'reload while connections back off: the old workers exit');
cmp_ok(time - $t0, '<', 3, sprintf('promptly (%.2f s)', time - $t0));

$t->start_redis;
cli($t, 'SET', stock_key('z', 'A1'), 10);
ok(poll_until(5, sub { reserve_req($t, '/cart/add?sku=A1&qty=1', 'back-' . int(rand 1e9))->status == 200 }, 0.1),
   'Redis back: reservations succeed again');

my $z = zone_stats($t);
cmp_ok($z->{reservations}{reserved}, '>=', 61, 'status counters survived the reloads');

$t->finish(allow_5xx => 1);
$fake->stop;
