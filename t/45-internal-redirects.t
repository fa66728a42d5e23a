# Internal redirects (try_files, error_page) and the waiting room.  A
# request is decided once, by the first sale whose location it reaches; a
# redirect keeps that decision, its cookie and its breaker outcome, even
# through another sale's location and back.  A location with
# flashsale_reserve only reserves for a request its own sale decided:
# anything else gets 403 and never reaches Redis (found by attacking the
# module: a pass for sale "a" used to take a hold of sale "b"'s stock).
# A request that was not admitted and comes back through error_page (its
# body could not be discarded) gets 403, not the protected page.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;
use ReserveTest;
use BreakerTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/a/page.txt', "A PAGE\n");
$t->write_file('html/a/fallback.txt', "A FALLBACK\n");
$t->write_file('html/b/page.txt', "B PAGE\n");
$t->write_file('html/b/oops.html', "B OOPS\n");
$t->write_file('html/ok.txt', "RESERVED\n");
$t->write_file('html/ssi/page.html',
               "before\n<!--#include virtual=\"/b/cart?sku=B1&qty=1\" -->\nafter\n");
$t->start_redis;

$t->run_nginx(<<'EOF');
flashsale_zone a:1m;
flashsale_zone b:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=2s;
log_format st '$uri $status $flashsale_state';
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    flashsale_breaker failures=50% window=10s min_calls=2 open=1s half_open=1 watch=upstream;
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
    # sale a's page missing: sale b's page, whose fallback is sale a's
    location /there/ {
        flashsale zone=a;
        error_page 404 = /b/back/missing.txt;
    }
    location /b/back/ {
        flashsale zone=b;
        try_files $uri /a/fallback.txt;
    }
    # sale a's store failing, its error page in sale b's location
    location /up/ {
        flashsale zone=a;
        proxy_pass http://127.0.0.1:%%PORT2%%;
        proxy_intercept_errors on;
        error_page 502 /b/oops.html;
    }
    location /b/ {
        flashsale zone=b;
        error_page 400 = /b/page.txt;
        error_page 412 /b/page.txt;
        access_log %%DIR%%/st.log st;
    }
    # a waiting room whose answers are followed by a tracking request
    location /pa/ {
        flashsale zone=b;
        post_action /b/track;
        access_log %%DIR%%/st.log st;
    }
    location = /b/cart {
        flashsale zone=b rate=0r/s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty hold=10m;
        add_header X-State $flashsale_state always;
        add_header X-Visitor $flashsale_visitor always;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/ok.txt;
    }
    # a page of no sale that includes sale b's add-to-cart
    location /ssi/ {
        ssi on;
    }
    location = /flashsale_status { flashsale_status; }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location /up/fail { return 502 "store broken\n"; }
    location /up/ok { return 200 "store ok\n"; }
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

# a pass of sale a, falling back into sale b's add-to-cart: refused there
my $calls = evalsha_calls($t);
for my $how ([ 'try_files', '/mix/missing.txt' ], [ 'error_page', '/err/missing.txt' ]) {
    my ($name, $path) = @$how;
    for my $send ([ cookie => Cookie => "flashsale=$passA" ],
                  [ bearer => Authorization => "Bearer $passA" ])
    {
        my ($as, @h) = @$send;
        my $mark = $t->log_mark;
        $r = $t->get_json($path, @h);
        is($r->status, 403, "$name, sale a's pass as $as: 403 in sale b's cart") or diag($r->body);
        is(($r->json // {})->{error}, 'not admitted to this sale', 'named in the body');
        is($r->header('x-reservation') // '', '', 'no reservation');
        is(issued(), '1 0', 'no ticket of either sale');
        like($t->log_since($mark), qr/\[info\].*flashsale_reserve: request decided by zone "a" refused in a location of zone "b"; keep try_files and error_page within one zone/,
             'the reason logged at info, with both zones');
    }
}
# a pass of sale b too (in the cookie) does not change sale a's decision
my $passB = $t->forge(zone => 'b', sub => 'shopper-b', adm => 1);
$r = $t->get_json('/mix/missing.txt', Authorization => "Bearer $passA",
                  Cookie => "flashsale=$passB");
is($r->status, 403, "decided by sale a's bearer: 403 in sale b's cart too");
is(evalsha_calls($t), $calls, 'no Redis call for any of them');
is(cli($t, 'GET', stock_key('b', 'B1')), '10', "sale b's stock untouched");
is(cli($t, 'ZCARD', holds_key('b', 'B1')), '0', "no hold in sale b");

# sale b's own pass at its cart still reserves
$r = $t->get_json('/b/cart?sku=B1&qty=1', Authorization => "Bearer $passB");
is($r->status, 200, "sale b's own pass at its cart: 200") or diag($r->body);
like($r->header('x-reservation') // '', qr/^sku=B1&qty=1&visitor=shopper-b&/, 'with the reservation');
is(cli($t, 'GET', stock_key('b', 'B1')), '9', 'stock 9');

# a newcomer to sale a, through sale b's location and back: one ticket of
# sale a, its cookie sent once and not replaced by one of sale b
$r = $t->get('/there/missing.txt');
is($r->status, 200, 'a -> b -> a: 200') or diag($r->body);
is($r->body, "A FALLBACK\n", "sale a's fallback");
is(issued(), '2 0', 'one more ticket of sale a, none of sale b');
my @set = $r->set_cookies;
is(scalar(@set), 1, 'one Set-Cookie');
my $c = $set[0] // {};
is($c->{name}, 'flashsale', 'of our cookie');
my $claims = $r->claims // {};
is($claims->{aud}, 'a', "a pass of sale a (aud)");
is($claims->{adm} ? 1 : 0, 1, 'admitted');

# sale a's store fails and its error page lives in sale b's location:
# the failures are sale a's, sale b's breaker sees nothing
for my $i (1 .. 2) {
    $r = reserve_as($t, '/up/fail', zone => 'a');
    is($r->status, 502, "store failure $i: 502");
    is($r->body, "B OOPS\n", "sale b's error page");
}
my $za = wait_state($t, 'a', 'open', 5);
ok($za, "sale a's breaker opened");
is($za->{breaker}{trips}, 1, 'sale a tripped once');
my $zb = zst($t, 'b');
is($zb->{breaker}{state}, 'closed', "sale b's breaker closed");
is($zb->{breaker}{window_calls}, 0, 'with no call in its window');

# the half-open probe of sale a fails the same way: sale a opens again
# (a probe given back with no verdict would leave it half-open for good)
ok(wait_state($t, 'a', 'half_open', 5), 'half_open after open=1s');
$r = reserve_as($t, '/up/fail', zone => 'a');
is($r->status, 502, 'the probe: 502, through sale b\'s error page');
# the probe reports in the log phase, just after its answer went out
$za = wait_state($t, 'a', 'open', 5) // zst($t, 'a');
is($za->{breaker}{state}, 'open', 'the failed probe opens sale a again');
is($za->{breaker}{trips}, 2, 'trips 2');
ok(wait_state($t, 'a', 'half_open', 5), 'half_open again');
$r = reserve_as($t, '/up/ok', zone => 'a');
is($r->status, 200, 'a good probe: 200');
is((wait_state($t, 'a', 'closed', 5) // zst($t, 'a'))->{breaker}{state}, 'closed', 'closes sale a');
is(zst($t, 'b')->{breaker}{window_calls}, 0, "sale b's window still empty");

# a subrequest (SSI) into sale b's add-to-cart: neither queued nor
# reserved for, so refused, and the store behind it is not reached
$calls = evalsha_calls($t);
my $mark = $t->log_mark;
$r = $t->get('/ssi/page.html', Authorization => "Bearer $passB");
is($r->status, 200, 'the page of no sale: 200');
like($r->body, qr/^before\n/, 'its own text');
unlike($r->body, qr/RESERVED/, 'not the add-to-cart\'s content');
like($r->body, qr/403 Forbidden/, 'the include is refused with 403');
is(evalsha_calls($t), $calls, 'no Redis call');
is(cli($t, 'GET', stock_key('b', 'B1')), '9', 'stock still 9');
like($t->log_since($mark), qr/\[info\].*flashsale_reserve: subrequest refused in a location of zone "b"/,
     'logged at info');

# a newcomer to sale b (rate=0: waits) with a broken chunked body: the
# waiting page is never sent (the body cannot be discarded), and the
# operator's error_page 400 leads into sale b's own page.  The request was
# not admitted: it is refused there, not served
my $before = issued();
$r = $t->http(method => 'POST', path => '/b/x',
              raw => "POST /b/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                   . "Transfer-Encoding: chunked\r\n\r\nzz\r\n");
is($r->status, 403, 'a waiting newcomer sent on by error_page 400: 403');
unlike($r->body // '', qr/B PAGE/, 'not sale b\'s page');
my ($ta, $tb) = split ' ', $before;
is(issued(), join(' ', $ta, $tb + 1), 'its one ticket of sale b');

# conditional headers do not turn a waiting page into a 412 (which an
# error_page would then send on, to a 403)
for my $h ([ 'If-Unmodified-Since' => 'Thu, 01 Jan 1970 00:00:01 GMT' ],
           [ 'If-Match' => '"v1"' ], [ 'If-None-Match' => '*' ])
{
    $r = $t->get('/b/x', Accept => 'text/html', @$h);
    is($r->status, 200, "a newcomer sending $h->[0]: the waiting page, 200");
    like($r->body, qr/flashsale|wait/i, 'the waiting page itself');
}
$r = $t->get_json('/b/x', 'If-Unmodified-Since' => 'Thu, 01 Jan 1970 00:00:01 GMT');
is($r->status, 429, 'as JSON: 429');

# post_action runs after a waiting page too, and is not refused
$r = $t->get('/pa/x', Accept => 'text/html');
is($r->status, 200, 'a newcomer in a location with post_action: the waiting page');
ok(poll_until(5, sub { ($t->read_file('st.log') // '') =~ m{^/b/track }m }), 'the post_action request ran');
unlike($t->read_file('st.log') // '', qr{^/b/track 403}m, 'and was not refused with 403');

unlike($t->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, 'nothing above error logged');

$t->finish(allow_5xx => 1);    # the store's 502s, on purpose
