# Internal redirects (try_files, error_page) and the waiting room.  Within
# one sale the request is decided once: a fallback does not take a second
# ticket.  Into another sale's location, that sale decides as if the
# request had come to it: a pass for sale "a" does not reserve sale "b"'s
# stock (found by attacking the module: it used to, with a hold in Redis).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;
use ReserveTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/a/page.txt', "A PAGE\n");
$t->write_file('html/a/fallback.txt', "A FALLBACK\n");
$t->write_file('html/ok.txt', "RESERVED\n");
$t->start_redis;

$t->run_nginx(<<'EOF');
flashsale_zone a:1m;
flashsale_zone b:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=2s;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    # sale a admits its first five at once, then one a minute
    location /a/ {
        flashsale zone=a rate=1r/m burst=5;
        add_header X-State $flashsale_state always;
        try_files $uri /a/fallback.txt;
    }
    # a page of sale a whose fallback is sale b's add-to-cart
    location /mix/ {
        flashsale zone=a;
        add_header X-State $flashsale_state always;
        try_files $uri /b/cart?sku=B1&qty=1;
    }
    location /err/ {
        flashsale zone=a;
        error_page 404 = /b/cart?sku=B1&qty=1;
    }
    location = /b/cart {
        flashsale zone=b rate=0r/s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty hold=10m;
        add_header X-State $flashsale_state always;
        add_header X-Visitor $flashsale_visitor always;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/ok.txt;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF

cli($t, 'SET', stock_key('b', 'B1'), 10);

sub issued {
    my $s = $t->status;
    return join ' ', map { $s->{$_}{tickets_issued} // '-' } qw(a b);
}

# within sale a: one ticket, admitted, and the fallback's content
my $r = $t->get('/a/missing.txt');
is($r->status, 200, 'a newcomer, a fallback in the same sale: 200');
is($r->body, "A FALLBACK\n", 'the fallback');
is($r->header('x-state'), 'admitted', 'admitted');
is(issued(), '1 0', 'one ticket of sale a, none of sale b: decided once in a sale');
my $passA = ($r->cookie('flashsale') // {})->{value} // '';
like($passA, qr/^[\w-]+\.[\w-]+\.[\w-]{43}$/, "sale a's pass in the Set-Cookie");

# a pass of sale a, falling back into sale b's add-to-cart: sale b's line
for my $how ([ 'try_files', '/mix/missing.txt' ], [ 'error_page', '/err/missing.txt' ]) {
    my ($name, $path) = @$how;
    for my $send ([ cookie => Cookie => "flashsale=$passA" ],
                  [ bearer => Authorization => "Bearer $passA" ])
    {
        my ($as, @h) = @$send;
        my $before = issued();
        $r = $t->get_json($path, @h);
        is($r->status, 429, "$name, sale a's pass as $as: 429 from sale b") or diag($r->body);
        is(($r->json // {})->{state}, 'waiting', 'waiting');
        is($r->header('x-reservation') // '', '', 'no reservation');
        my ($ta, $tb) = split ' ', $before;
        is(issued(), join(' ', $ta, $tb + 1), 'a ticket of sale b, none more of sale a');
    }
}
is(cli($t, 'GET', stock_key('b', 'B1')), '10', "sale b's stock untouched");
is(cli($t, 'ZCARD', holds_key('b', 'B1')), '0', "no hold in sale b");

# the same fallback with a pass of sale b too (a bearer of sale a, the
# cookie of sale b): sale b admits by its own pass, and reserves for it
my $passB = $t->forge(zone => 'b', sub => 'shopper-b', adm => 1);
$r = $t->get_json('/mix/missing.txt', Authorization => "Bearer $passA",
                  Cookie => "flashsale=$passB");
is($r->status, 200, "sale b's own pass: 200") or diag($r->body);
is($r->body, "RESERVED\n", "sale b's content");
is($r->header('x-visitor'), 'shopper-b', "for sale b's shopper");
like($r->header('x-reservation') // '', qr/^sku=B1&qty=1&visitor=shopper-b&/, 'with the reservation');
is(cli($t, 'ZCARD', holds_key('b', 'B1')), '1', 'one hold in sale b');
is(cli($t, 'ZSCORE', holds_key('b', 'B1'), 'shopper-b') ne '', 1, "sale b's shopper holds it");
is(cli($t, 'GET', stock_key('b', 'B1')), '9', 'stock 9');

unlike($t->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, 'nothing above error logged');

$t->finish;
