# Issue 4: the sold-out latch answers without Redis.
# Stock 0: the first reservation is a 409 from Redis; the next 20 are 409
# with INFO commandstats' evalsha calls unchanged (reservations.sold_out
# counts them all); sold_out_skus lists the SKU. After the latch (latch=1s)
# expires Redis is asked again. A restock during the latch is seen only
# after it. A sold-out answer with stock left (qty > stock) is not latched.
# latch=0: every request goes to Redis.
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
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=1s;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty latch=1s;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /cart/nolatch {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty latch=0;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /stock { flashsale_stock; }
    location = /flashsale_status { flashsale_status; }
}
EOF

sub put_stock {
    my ($sku, $qty) = @_;
    my $r = $t->http(method => 'PUT', path => "/stock?sku=$sku&qty=$qty");
    return $r->status;
}
sub skus { @{ zst($t, 'z')->{sold_out_skus} || [] } }
sub listed { my $s = shift; scalar grep { $_ eq $s } skus() }

is(put_stock('S1', 0), 200, 'S1 stock 0');

my $c0 = zst($t, 'z')->{redis}{calls};
my $e0 = evalsha_calls($t);
my $r = reserve_as($t, '/cart/add?sku=S1&qty=1');
my $latched_at = time;
is($r->status, 409, 'first reservation: 409');
is_deeply($r->json, { state => 'sold_out', sku => 'S1' }, '{"state":"sold_out","sku":"S1"}');
is(evalsha_calls($t), $e0 + 1, 'it asked Redis (one EVALSHA)');
ok(listed('S1'), 'sold_out_skus lists S1');

my @res = $t->parallel([ map {
    +{ path => '/cart/add?sku=S1&qty=1',
       headers => [ Authorization => bearer($t, shopper()), Accept => 'application/json' ] }
} 1 .. 20 ]);
my $took = time - $latched_at;
is(scalar(grep { $_->status == 409 && ($_->json // {})->{sku} eq 'S1' } @res), 20,
   'the next 20: 409 sold out S1');
is(scalar(grep { ($_->header('Cache-Control') // '') eq 'no-store' } @res), 20,
   'each with Cache-Control: no-store');
cmp_ok($took, '<', 1, sprintf('all within the 1 s latch (%.3f s)', $took));
is(evalsha_calls($t), $e0 + 1, 'INFO commandstats: evalsha calls unchanged (answered from memory)');
my $z = zst($t, 'z');
is($z->{reservations}{sold_out}, 21, 'reservations.sold_out counts all 21');
is($z->{redis}{calls} - $c0, 1, 'redis.calls +1');

$r = reserve_as($t, '/cart/add?sku=S1&qty=1', html => 1);
is($r->status, 409, 'HTML: 409');
like($r->header('Content-Type') // '', qr{^text/html}, 'HTML: the sold-out page');
is(evalsha_calls($t), $e0 + 1, 'HTML: from memory too');

# ---- latch expiry
my $gone = poll_until(5, sub { !listed('S1') }, 0.05);
my $after = time - $latched_at;
ok($gone, sprintf('S1 leaves sold_out_skus after the latch (%.2f s)', $after));
cmp_ok($after, '>=', 0.9, 'not before latch=1s');
$r = reserve_as($t, '/cart/add?sku=S1&qty=1');
is($r->status, 409, 'after expiry: still 409');
is(evalsha_calls($t), $e0 + 2, 'but Redis was asked again');
ok(listed('S1'), 'and S1 is latched again');

# ---- a restock through the stock handler lifts the latch at once
ok(listed('S1'), 'S1 latched before the restock');
is(put_stock('S1', 5), 200, 'restock S1 to 5 while latched');
ok(!listed('S1'), 'the restock clears the latch');
$e0 = evalsha_calls($t);   # the stock handler runs the script too
$r = reserve_as($t, '/cart/add?sku=S1&qty=1');
is($r->status, 200, 'the restocked SKU is reserved at once (200)') or diag($r->describe);
is(evalsha_calls($t), $e0 + 1, 'by Redis');

# ---- sold out with stock left is not latched
is(put_stock('S2', 1), 200, 'S2 stock 1');
$e0 = evalsha_calls($t);
$r = reserve_as($t, '/cart/add?sku=S2&qty=2');
is($r->status, 409, 'qty 2 of 1: 409');
ok(!listed('S2'), 'not latched: one is left');
$r = reserve_as($t, '/cart/add?sku=S2&qty=1');
is($r->status, 200, 'qty 1 right after: 200');
is(evalsha_calls($t), $e0 + 2, 'both asked Redis');

# ---- latch=0
is(put_stock('S3', 0), 200, 'S3 stock 0');
$e0 = evalsha_calls($t);
my $so = zst($t, 'z')->{reservations}{sold_out};
my @n = map { reserve_as($t, '/cart/nolatch?sku=S3&qty=1') } 1 .. 10;
is(scalar(grep { $_->status == 409 } @n), 10, 'latch=0: 10 x 409');
is(evalsha_calls($t), $e0 + 10, 'latch=0: every request went to Redis (10 EVALSHA)');
ok(!listed('S3'), 'latch=0: S3 never listed');
is(zst($t, 'z')->{reservations}{sold_out}, $so + 10, 'reservations.sold_out +10');

$t->finish;
