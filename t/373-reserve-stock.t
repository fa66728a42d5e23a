# The operators' stock handler (issue 3): PUT ?sku=&qty= sets stock,
# GET ?sku= reads stock and live holds; unknown SKU 404, other methods 405,
# bad sku/qty 400, holds untouched by PUT.
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
    location = /stock { flashsale_stock; }
    location = /flashsale_status { flashsale_status; }
}
EOF

my $put = $t->http(method => 'PUT', path => '/stock?sku=S1&qty=1000');
is($put->status, 200, 'PUT /stock?sku=S1&qty=1000: 200') or diag($put->describe);
like($put->header('content-type') // '', qr{^application/json}, 'application/json');
is_deeply($put->json, { sku => 'S1', stock => 1000 }, 'body {"sku":"S1","stock":1000}') or diag($put->body);
is(cli($t, 'GET', stock_key('z', 'S1')), '1000', 'Redis: fs:{z:S1}:stock is 1000');

my $get = $t->http(method => 'GET', path => '/stock?sku=S1');
is($get->status, 200, 'GET /stock?sku=S1: 200');
like($get->header('content-type') // '', qr{^application/json}, 'application/json');
is_deeply($get->json, { sku => 'S1', stock => 1000, holds => 0 }, 'body {"sku":"S1","stock":1000,"holds":0}')
    or diag($get->body);

# holds are left alone by PUT
is(reserve_req($t, '/cart/add?sku=S1&qty=3', 'stock-shopper')->status, 200, 'a shopper reserves 3');
is_deeply($t->get('/stock?sku=S1')->json, { sku => 'S1', stock => 997, holds => 1 },
          'GET: stock 997, 1 hold');
my $p2 = $t->http(method => 'PUT', path => '/stock?sku=S1&qty=50');
is_deeply($p2->json, { sku => 'S1', stock => 50 }, 'PUT qty=50: {"sku":"S1","stock":50}');
is_deeply($t->get('/stock?sku=S1')->json, { sku => 'S1', stock => 50, holds => 1 },
          'GET: stock 50 (available), the hold unchanged');
is(cli($t, 'ZCARD', holds_key('z', 'S1')), '1', 'Redis: the hold is still there');
is(cli($t, 'HGET', qty_key('z', 'S1'), 'stock-shopper'), '3', 'Redis: with qty 3');

my $p0 = $t->http(method => 'PUT', path => '/stock?sku=S1&qty=0');
is($p0->status, 200, 'PUT qty=0: 200 (sold out by hand)');
is_deeply($p0->json, { sku => 'S1', stock => 0 }, 'body {"sku":"S1","stock":0}');
is(reserve_req($t, '/cart/add?sku=S1&qty=1', 'after-zero')->status, 409, 'then a reservation is sold out');

# a new SKU is created by PUT
my $pn = $t->http(method => 'PUT', path => '/stock?sku=new.sku_1:x-2&qty=7');
is($pn->status, 200, 'PUT a new SKU with every allowed character class: 200');
is(cli($t, 'GET', stock_key('z', 'new.sku_1:x-2')), '7', 'Redis: stock 7');

# unknown, methods, bad input
my $gu = $t->get('/stock?sku=NOPE');
is($gu->status, 404, 'GET an unknown SKU: 404');
is_deeply($gu->json, { error => 'unknown sku' }, 'body {"error":"unknown sku"}') or diag($gu->body);
is(cli($t, 'EXISTS', stock_key('z', 'NOPE')), '0', 'reading does not create the key');

for my $m (qw(POST DELETE PATCH)) {
    my $r = $t->http(method => $m, path => '/stock?sku=S1&qty=5');
    is($r->status, 405, "$m /stock: 405");
}
is(cli($t, 'GET', stock_key('z', 'S1')), '0', 'stock unchanged by refused methods');

my $ev0 = evalsha_calls($t);
my $bad0 = zone_stats($t)->{reservations}{bad_requests};
my @bad = ('/stock?sku=S1&qty=-1', '/stock?sku=S1&qty=abc', '/stock?sku=S1&qty=1.5',
           '/stock?sku=S1&qty=', '/stock?sku=S1', '/stock?sku=S1&qty=1e3',
           '/stock?sku=a/b&qty=1', '/stock?sku=&qty=1', '/stock?qty=1',
           '/stock?sku=' . ('x' x 65) . '&qty=1',
           # Redis stores "05" as text and then refuses to count down from it
           '/stock?sku=S1&qty=05', '/stock?sku=S1&qty=00');
for my $p (@bad) {
    my $r = $t->http(method => 'PUT', path => $p);
    is($r->status, 400, "PUT $p: 400");
    my $j = $r->json;
    ok(ref $j eq 'HASH' && length($j->{error} // ''), "PUT $p: JSON error") or diag($r->body);
}
for my $p ('/stock', '/stock?sku=', '/stock?sku=a%20b') {
    my $r = $t->get($p);
    is($r->status, 400, "GET $p: 400");
}
is(evalsha_calls($t), $ev0, 'no EVALSHA reached Redis for the bad requests');
is(cli($t, 'GET', stock_key('z', 'S1')), '0', 'stock unchanged');
is(zone_stats($t)->{reservations}{bad_requests} - $bad0, @bad + 3,
   'status reservations.bad_requests counts them');

# the answer says the whole range
is_deeply($t->http(method => 'PUT', path => '/stock?sku=S1')->json,
          { error => 'invalid or missing qty: use a whole number from 0 to 2147483647, with no leading zero' },
          'PUT without qty: the error names the range');
is($t->http(method => 'PUT', path => '/stock?sku=S1&qty=2147483648')->status, 400,
   'PUT qty=2147483648: 400');
is($t->http(method => 'PUT', path => '/stock?sku=S1&qty=2147483647')->status, 200,
   'PUT qty=2147483647: 200');
is($t->http(method => 'PUT', path => '/stock?sku=S1&qty=0')->status, 200, 'back to 0');
# the 64-character limit is inclusive
my $sku64 = 'y' x 64;
is($t->http(method => 'PUT', path => "/stock?sku=$sku64&qty=2")->status, 200, 'a 64-character SKU: 200');
is_deeply($t->get("/stock?sku=$sku64")->json, { sku => $sku64, stock => 2, holds => 0 }, 'and reads back');

$t->finish;
