# Field case oversell-concurrent: stock 3 for A1, 50 admitted shoppers
# reserve qty=1 at once: exactly 3 reservations, 47 sold-out answers, stock
# 0 and never negative. A SKU with no stock key is unknown (404), never
# unlimited stock.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;
use ReserveTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->start_redis;

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=2s;
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

# --- 50 shoppers for the last 3 units
cli($t, 'SET', stock_key('z', 'A1'), 3);

my @subs = map { "oversell-$_" } 1 .. 50;
my @res = $t->parallel([ map {
    { path => '/cart/add?sku=A1&qty=1', headers => [ pass_headers($t, $_) ] }
} @subs ], timeout => 20);

my %by;
$by{ $_->status }++ for @res;
is($by{200} // 0, 3, 'exactly 3 shoppers get their reservation (200)') or diag(explain(\%by));
is($by{409} // 0, 47, '47 get the sold-out answer (409)') or diag(explain(\%by));
is(scalar(grep { $_->status != 200 && $_->status != 409 } @res), 0, 'nothing else (no 5xx, no lost answer)');

my @winners = map { $subs[$_] } grep { $res[$_]->status == 200 } 0 .. $#res;
for my $i (grep { $res[$_]->status == 200 } 0 .. $#res) {
    like($res[$i]->header('x-reservation') // '',
         qr/^sku=A1&qty=1&visitor=\Q$subs[$i]\E&expires=\d+$/,
         "$subs[$i]: X-Reservation names the shopper");
    is($res[$i]->body, "RESERVED\n", "$subs[$i]: the request went on to the content");
}
my ($sold) = grep { $_->status == 409 } @res;
is_deeply($sold->json, { state => 'sold_out', sku => 'A1' }, '409 body {"state":"sold_out","sku":"A1"}')
    or diag($sold->describe);
is($sold->header('cache-control'), 'no-store', '409 has Cache-Control: no-store');
like($sold->header('content-type') // '', qr{^application/json}, '409 is application/json');

is(cli($t, 'GET', stock_key('z', 'A1')), '0', 'stock key ends at 0');
is(cli($t, 'ZCARD', holds_key('z', 'A1')), '3', '3 holds');
is_deeply([ sort split /\n/, cli($t, 'ZRANGE', holds_key('z', 'A1'), 0, -1) ],
          [ sort @winners ], 'the holds belong to the 3 winners');

# a latecomer asking for HTML gets the sold-out page
my $h = $t->get('/cart/add?sku=A1&qty=1', Authorization => bearer($t, 'late-html'));
is($h->status, 409, 'HTML client: 409');
like($h->header('content-type') // '', qr{^text/html}, 'HTML client: text/html sold-out page');
is($h->header('cache-control'), 'no-store', 'HTML client: Cache-Control: no-store');
is(cli($t, 'GET', stock_key('z', 'A1')), '0', 'stock still 0, never negative');

# --- quantities above 1: stock 5, ten shoppers want 2 each
cli($t, 'SET', stock_key('z', 'Q2'), 5);
my @q = $t->parallel([ map {
    { path => '/cart/add?sku=Q2&qty=2', headers => [ pass_headers($t, "q2-$_") ] }
} 1 .. 10 ], timeout => 20);
is(scalar(grep { $_->status == 200 } @q), 2, 'stock 5, qty 2 x 10 shoppers: exactly 2 reservations');
is(scalar(grep { $_->status == 409 } @q), 8, '8 sold out');
is(cli($t, 'GET', stock_key('z', 'Q2')), '1', 'stock 1 left');
my $one = reserve_req($t, '/cart/add?sku=Q2&qty=1', 'q2-single');
is($one->status, 200, 'the last unit still goes to a qty=1 shopper');
my $none = reserve_req($t, '/cart/add?sku=Q2&qty=1', 'q2-after');
is($none->status, 409, 'then sold out');
is(cli($t, 'GET', stock_key('z', 'Q2')), '0', 'stock 0');
my @qv = split /\n/, cli($t, 'HVALS', qty_key('z', 'Q2'));
my $held = 0;
$held += $_ for @qv;
is($held, 5, 'held quantities add up to the initial 5');

# --- a SKU without a stock key is unknown, never unlimited
my $u = reserve_req($t, '/cart/add?sku=B9&qty=1', 'unknown-1');
is($u->status, 404, 'no stock key: 404');
is_deeply($u->json, { error => 'unknown sku', sku => 'B9' }, '404 body {"error":"unknown sku","sku":"B9"}')
    or diag($u->describe);
is($u->header('x-reservation') // '', '', 'no reservation for an unknown SKU');
is(cli($t, 'EXISTS', stock_key('z', 'B9')), '0', 'no stock key was created');
is(cli($t, 'EXISTS', holds_key('z', 'B9')), '0', 'no hold was recorded');
my @u = $t->parallel([ map {
    { path => '/cart/add?sku=B9&qty=1', headers => [ pass_headers($t, "unknown-many-$_") ] }
} 1 .. 10 ]);
is(scalar(grep { $_->status == 404 } @u), 10, '10 concurrent attempts on the unknown SKU: all 404');

my $z = zone_stats($t);
is($z->{reservations}{reserved}, 3 + 2 + 1, 'status reservations.reserved = 6');
is($z->{reservations}{sold_out}, 47 + 1 + 8 + 1, 'status reservations.sold_out = 57');
is($z->{reservations}{errors}, 0, 'status reservations.errors = 0');

$t->finish;
