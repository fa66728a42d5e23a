# Issue 4: custom sold_out and retry pages (flashsale_page) with {{zone}}
# and {{retry_after}} substituted, HTML or JSON per Accept, Content-Length
# matching the body, Cache-Control: no-store; a location's own page wins
# over the http one. A missing page file, an unknown placeholder or an
# unclosed "{{" fail nginx -t.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use FlashsaleTest;
use ReserveTest;
use FakeRedis;
use BreakerTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->write_file('pages/sold_out.html',
    "<!doctype html>\n<h1>All gone</h1>\n<p>zone={{zone}}</p>\n<p>ra=[{{retry_after}}]</p>\n");
$t->write_file('pages/retry.html',
    "<!doctype html>\n<h1>Busy</h1>\n<p>zone={{zone}} back in {{retry_after}} s</p>\n");
$t->write_file('pages/retry2.html', "<p>other {{zone}}/{{retry_after}}</p>\n");
$t->start_redis;
my $fake = FakeRedis->new(mode => 'error', dir => $t->dir);

my $conf = <<'EOF';
flashsale_zone s:1m;
flashsale_zone r:1m;
flashsale_secret_file %%KEYS%%;
flashsale_page sold_out %%DIR%%/pages/sold_out.html;
flashsale_page retry %%DIR%%/pages/retry.html;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=s rate=0r/s; }
    location /rdrop/ { flashsale zone=r rate=0r/s; }
    location = /s/cart/add {
        flashsale zone=s;
        flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=1s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location /r/ {
        flashsale zone=r;
        flashsale_breaker failures=50% window=10s min_calls=2 open=5s half_open=1;
        flashsale_redis 127.0.0.1:__FAKE__ timeout=1s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
        location /r/other/ {
            flashsale_page retry %%DIR%%/pages/retry2.html;
        }
    }
    location = /flashsale_status { flashsale_status; }
}
EOF
$conf =~ s/__FAKE__/$fake->port/e;
$t->run_nginx($conf);

sub common_ok {
    my ($r, $what) = @_;
    is($r->header('Content-Length'), length($r->body), "$what: Content-Length matches the body");
    is($r->header('Cache-Control'), 'no-store', "$what: Cache-Control: no-store");
}

# ---- sold out
cli($t, 'SET', stock_key('s', 'A1'), 0);
my $r = reserve_as($t, '/s/cart/add?sku=A1&qty=1', zone => 's', html => 1);
is($r->status, 409, 'sold out, HTML: 409');
like($r->header('Content-Type'), qr{^text/html}, 'sold out, HTML: text/html');
like($r->body, qr{^<!doctype html>\n<h1>All gone</h1>\n<p>zone=s</p>\n<p>ra=\[\d*\]</p>\n\z},
     'sold out, HTML: the custom page with {{zone}} = s')
    or diag($r->body);
unlike($r->body, qr/\{\{|\}\}/, 'sold out, HTML: no placeholder left');
common_ok($r, 'sold out, HTML');

# from the latch now: same page
$r = reserve_as($t, '/s/cart/add?sku=A1&qty=1', zone => 's', html => 1);
like($r->body, qr{<h1>All gone</h1>\n<p>zone=s</p>}, 'sold out from the latch: the same custom page');
common_ok($r, 'sold out (latch), HTML');

# no Accept header at all: HTML
$r = $t->get('/s/cart/add?sku=A1&qty=1', Authorization => bearer($t, shopper(), zone => 's'));
is($r->status, 409, 'no Accept: 409');
like($r->body, qr{<h1>All gone</h1>}, 'no Accept: the HTML page');

$r = reserve_as($t, '/s/cart/add?sku=A1&qty=1', zone => 's');
is($r->status, 409, 'sold out, JSON: 409');
like($r->header('Content-Type'), qr{^application/json}, 'sold out, JSON: application/json');
is($r->body, '{"state":"sold_out","sku":"A1"}', 'sold out, JSON body');
common_ok($r, 'sold out, JSON');

# ---- retry: a Redis error (Retry-After 2)
$r = reserve_as($t, '/r/cart?sku=B1&qty=1', zone => 'r', html => 1);
is($r->status, 503, 'Redis error, HTML: 503');
is($r->header('Retry-After'), '2', 'Retry-After: 2');
like($r->header('Content-Type'), qr{^text/html}, 'text/html');
is($r->body, "<!doctype html>\n<h1>Busy</h1>\n<p>zone=r back in 2 s</p>\n",
   'the custom retry page with {{zone}} = r and {{retry_after}} = 2');
common_ok($r, 'retry (Redis error), HTML');

$r = reserve_as($t, '/r/cart?sku=B1&qty=1', zone => 'r');
is($r->status, 503, 'Redis error, JSON: 503');
is($r->body, '{"state":"retry","retry_after":2}', 'JSON body');
like($r->header('Content-Type'), qr{^application/json}, 'application/json');
common_ok($r, 'retry (Redis error), JSON');

# ---- retry: the breaker (min_calls=2 reached: open for 5 s)
is(zst($t, 'r')->{breaker}{state}, 'open', 'zone r breaker open');
$r = reserve_as($t, '/r/cart?sku=B1&qty=1', zone => 'r', html => 1);
my $ra = $r->header('Retry-After') // '';
is($r->status, 503, 'breaker open, HTML: 503');
ok($ra =~ /^\d+$/ && $ra >= 4 && $ra <= 5, "Retry-After $ra: seconds until half-open (open=5s)");
is($r->body, "<!doctype html>\n<h1>Busy</h1>\n<p>zone=r back in $ra s</p>\n",
   '{{retry_after}} is the same number as Retry-After');
common_ok($r, 'retry (breaker), HTML');

$r = reserve_as($t, '/r/cart?sku=B1&qty=1', zone => 'r');
$ra = $r->header('Retry-After') // '';
is($r->body, qq({"state":"retry","retry_after":$ra}), "breaker open, JSON: retry_after $ra");
common_ok($r, 'retry (breaker), JSON');

$r = reserve_as($t, '/r/other/x?sku=B1&qty=1', zone => 'r', html => 1);
$ra = $r->header('Retry-After') // '';
is($r->status, 503, 'nested location: 503');
is($r->body, "<p>other r/$ra</p>\n", "the location's own retry page wins");
common_ok($r, 'retry (location page)');

is($fake->count('EVALSHA'), 2, 'only the 2 calls before the trip reached the fake');

# ---- nginx -t
my $base = <<'EOF';
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
__PAGES__
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=1r/s; }
}
EOF
sub with_pages { my $c = $base; $c =~ s/__PAGES__/$_[0]/; return $c }
my ($rc, $out) = $t->nginx_t(with_pages('flashsale_page retry %%DIR%%/pages/retry.html;'
                             . ' flashsale_page sold_out %%DIR%%/pages/sold_out.html;'));
is($rc, 0, 'nginx -t accepts the good pages') or diag($out);

($rc, $out) = $t->nginx_t(with_pages('flashsale_page retry %%DIR%%/pages/missing.html;'));
isnt($rc, 0, 'a missing page file fails nginx -t');
like($out, qr/missing\.html/, 'naming the file') or diag($out);
like($out, qr/\[emerg\]/, 'at emerg');

$t->write_file('pages/bad.html', "<p>{{zone}} {{sku}}</p>\n");
($rc, $out) = $t->nginx_t(with_pages('flashsale_page sold_out %%DIR%%/pages/bad.html;'));
isnt($rc, 0, 'an unknown placeholder {{sku}} fails nginx -t');
like($out, qr/\{\{sku\}\}/, 'naming the placeholder') or diag($out);

$t->write_file('pages/bad2.html', "<p>{{retry_after</p>\n");
($rc, $out) = $t->nginx_t(with_pages('flashsale_page retry %%DIR%%/pages/bad2.html;'));
isnt($rc, 0, 'an unclosed {{ fails nginx -t') or diag($out);

($rc, $out) = $t->nginx_t(with_pages('flashsale_page bogus %%DIR%%/pages/retry.html;'));
isnt($rc, 0, 'an unknown page name fails nginx -t');
like($out, qr/flashsale_page/, 'naming flashsale_page') or diag($out);

no_500($t);
$t->finish(allow_5xx => 1);
