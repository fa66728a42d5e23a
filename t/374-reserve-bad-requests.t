# Bad input and shoppers without a pass on the reservation location
# (issue 3): every bad sku/qty is a 400 with a JSON error (or an HTML page),
# counted in reservations.bad_requests, and never reaches Redis; a shopper
# without a valid pass gets the waiting room and never reaches Redis.
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
flashsale_zone other:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=2s;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/  { flashsale zone=z rate=0r/s; }
    location /other/ { flashsale zone=other rate=0r/s; }
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty max_qty=10;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF

cli($t, 'SET', stock_key('z', 'A1'), 100);

# a good request first, so connections and the script are in place
my $ok = reserve_req($t, '/cart/add?sku=A1&qty=1', 'good-0');
is($ok->status, 200, 'a good reservation: 200') or diag($ok->describe);

my $ev0 = evalsha_calls($t);
my $st0 = zone_stats($t);

my @bad_sku = (
    [ 'empty',       '/cart/add?sku=&qty=1' ],
    [ 'missing',     '/cart/add?qty=1' ],
    [ '65 chars',    '/cart/add?sku=' . ('A' x 65) . '&qty=1' ],
    [ 'a b',         '/cart/add?sku=a%20b&qty=1' ],
    [ 'a+b',         '/cart/add?sku=a+b&qty=1' ],
    [ 'a/b',         '/cart/add?sku=a/b&qty=1' ],
    [ '%41',         '/cart/add?sku=%41&qty=1' ],
    [ 'quote',       '/cart/add?sku=a%22b&qty=1' ],
    [ 'braces',      '/cart/add?sku={x}&qty=1' ],
);
my @bad_qty = (
    [ '0',       '/cart/add?sku=A1&qty=0' ],
    [ '-1',      '/cart/add?sku=A1&qty=-1' ],
    [ '1.5',     '/cart/add?sku=A1&qty=1.5' ],
    [ '11 > max_qty=10', '/cart/add?sku=A1&qty=11' ],
    [ '1e3',     '/cart/add?sku=A1&qty=1e3' ],
    [ 'empty',   '/cart/add?sku=A1&qty=' ],
    [ 'missing', '/cart/add?sku=A1' ],
    [ '+1',      '/cart/add?sku=A1&qty=+1' ],
    [ 'abc',     '/cart/add?sku=A1&qty=abc' ],
    [ 'huge',    '/cart/add?sku=A1&qty=99999999999999999999' ],
    [ '01 (a leading zero)', '/cart/add?sku=A1&qty=01' ],
);

my $n400 = 0;
for my $c (@bad_sku) {
    my ($what, $path) = @$c;
    my $r = reserve_req($t, $path, "bad-sku-$n400");
    $n400++;
    is($r->status, 400, "bad sku ($what): 400");
    like($r->header('content-type') // '', qr{^application/json}, "bad sku ($what): application/json");
    my $j = $r->json;
    ok(ref $j eq 'HASH', "bad sku ($what): the body is JSON") or diag($r->body);
    like($j->{error} // '', qr/^invalid sku/, "bad sku ($what): {\"error\":\"invalid sku: ...\"}");
    is($r->header('x-reservation') // '', '', "bad sku ($what): no reservation");
}
for my $c (@bad_qty) {
    my ($what, $path) = @$c;
    my $r = reserve_req($t, $path, "bad-qty-$n400");
    $n400++;
    is($r->status, 400, "bad qty ($what): 400");
    my $j = $r->json;
    ok(ref $j eq 'HASH', "bad qty ($what): the body is JSON") or diag($r->body);
    like($j->{error} // '', qr/^invalid qty/, "bad qty ($what): {\"error\":\"invalid qty: ...\"}");
    is($j->{sku}, 'A1', "bad qty ($what): names the sku");
}

# HTML clients get a page with the message
my $h = $t->get('/cart/add?sku=a/b&qty=1', Authorization => bearer($t, 'bad-html-1'));
$n400++;
is($h->status, 400, 'HTML client, bad sku: 400');
like($h->header('content-type') // '', qr{^text/html}, 'an HTML page');
like($h->body, qr/invalid sku/, 'that says "invalid sku"');
my $h2 = $t->get('/cart/add?sku=A1&qty=0', Authorization => bearer($t, 'bad-html-2'));
$n400++;
is($h2->status, 400, 'HTML client, bad qty: 400');
like($h2->body, qr/invalid qty/, 'a page that says "invalid qty"');

is(evalsha_calls($t), $ev0, "none of the $n400 bad requests reached Redis (INFO commandstats: no new EVALSHA)");
is(cli($t, 'GET', stock_key('z', 'A1')), '99', 'stock unchanged (99)');
is(cli($t, 'ZCARD', holds_key('z', 'A1')), '1', 'no hold added');
my $st1 = zone_stats($t);
is($st1->{reservations}{bad_requests} - $st0->{reservations}{bad_requests}, $n400,
   "status reservations.bad_requests counts the $n400 bad requests");
is($st1->{redis}{calls} // 0, $st0->{redis}{calls} // 0, 'status redis.calls unchanged');

# the limits themselves are good input
my $q10 = reserve_req($t, '/cart/add?sku=A1&qty=10', 'max-qty');
is($q10->status, 200, 'qty=10 (= max_qty): 200');
like($q10->header('x-reservation') // '', qr/^sku=A1&qty=10&visitor=max-qty&/, 'reserves 10');
my $sku64 = join '', map { ('A'..'Z', 'a'..'z', 0..9, '.', '_', ':', '-')[$_ % 66] } 0 .. 63;
cli($t, 'SET', stock_key('z', $sku64), 1);
my $r64 = reserve_req($t, "/cart/add?sku=$sku64&qty=1", 'sku-64');
is($r64->status, 200, 'a 64-character SKU using every allowed character: 200') or diag($r64->describe);
is(cli($t, 'GET', stock_key('z', $sku64)), '0', 'and its stock is taken');

###########################################################################
# shoppers without a valid pass get the waiting room, and no Redis call

my $ev1 = evalsha_calls($t);
my $stock1 = cli($t, 'GET', stock_key('z', 'A1'));
my $holds1 = cli($t, 'ZCARD', holds_key('z', 'A1'));

my $w = $t->get('/cart/add?sku=A1&qty=1', Accept => 'application/json');
is($w->status, 429, 'no pass, JSON client: 429');
my $wj = $w->json // {};
is($wj->{state}, 'waiting', '{"state":"waiting",...}') or diag($w->body);
ok(defined $wj->{position} && defined $wj->{retry_after}, 'with position and retry_after');
ok(defined $w->header('retry-after'), 'Retry-After header');
is($w->header('cache-control'), 'no-store', 'Cache-Control: no-store');
is($w->header('x-reservation') // '', '', 'no reservation');

my $wh = $t->get('/cart/add?sku=A1&qty=1');
is($wh->status, 200, 'no pass, HTML client: 200 waiting page');
like($wh->header('content-type') // '', qr{^text/html}, 'text/html');
isnt($wh->body, "RESERVED\n", 'not the content');

my $ticket = $t->forge(zone => 'z', sub => 'ticket-only', tkt => 5);
my $wt = $t->get('/cart/add?sku=A1&qty=1', Accept => 'application/json',
                 Authorization => "Bearer $ticket");
is($wt->status, 429, 'a ticket is not a pass: 429 waiting');

my $foreign = $t->forge(zone => 'other', sub => 'foreign', tkt => 1, adm => 1);
my $wf = $t->get('/cart/add?sku=A1&qty=1', Accept => 'application/json',
                 Authorization => "Bearer $foreign");
is($wf->status, 429, "a pass for another zone: 429 waiting");

my $expired = $t->forge(zone => 'z', sub => 'expired', tkt => 1, adm => 1,
                        iat => time - 3600, exp => time - 600);
my $we = $t->get('/cart/add?sku=A1&qty=1', Accept => 'application/json',
                 Authorization => "Bearer $expired");
is($we->status, 429, 'an expired pass: 429 waiting');

my $wrong = $t->forge(zone => 'z', sub => 'wrongkey', tkt => 1, adm => 1,
                      key => FlashsaleTest::random_string(48));
my $ww = $t->get('/cart/add?sku=A1&qty=1', Accept => 'application/json',
                 Authorization => "Bearer $wrong");
is($ww->status, 429, 'a pass signed with an unknown key: 429 waiting');

my $wb = $t->get('/cart/add?sku=a/b&qty=0', Accept => 'application/json');
is($wb->status, 429, 'bad input without a pass: the waiting room (reservation never ran)');

my @many = $t->parallel([ map {
    { path => '/cart/add?sku=A1&qty=1', headers => [ Accept => 'application/json' ] }
} 1 .. 20 ]);
is(scalar(grep { $_->status == 429 } @many), 20, '20 concurrent shoppers without a pass: all 429');

is(evalsha_calls($t), $ev1, 'no EVALSHA for any of them');
is(cli($t, 'GET', stock_key('z', 'A1')), $stock1, 'stock unchanged');
is(cli($t, 'ZCARD', holds_key('z', 'A1')), $holds1, 'no hold added');

$t->finish;
