# flashsale_page waiting <file>: the template is read at config load and
# its placeholders are filled for each waiting shopper.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/drop/item.html', "CONTENT\n");
$t->write_file('pages/waiting.html',
    "<p>pos={{position}} eta={{eta}} text={{eta_text}} ra={{retry_after}} "
  . "zone={{zone}} again={{position}}</p>\n");
$t->write_file('pages/other.html', "OTHER {{zone}} {{position}}\n");

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_zone fast:1m;
flashsale_zone loc:1m;
flashsale_secret_file %%KEYS%%;
flashsale_page waiting %%DIR%%/pages/waiting.html;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/ { flashsale zone=z rate=1r/m; }
    location /fast/ { flashsale zone=fast rate=60r/m; }
    location /loc/ {
        flashsale_page waiting %%DIR%%/pages/other.html;
        flashsale zone=loc rate=1r/m;
    }
}
EOF

# 1r/m: the first shopper is admitted, the second waits ~60 s at position 1
is($t->get('/drop/item.html')->body, "CONTENT\n", 'the first shopper is admitted');
my $r = $t->get('/drop/item.html');
is($r->status, 200, 'the waiting page is served with 200');
like($r->header('content-type') // '', qr{^text/html}, 'as text/html');
like($r->body,
     qr{^<p>pos=1 eta=\d+ text=([^{}]+) ra=30 zone=z again=1</p>\n$},
     'every placeholder is substituted: position, eta, eta_text, retry_after, zone (twice)')
    or diag($r->body);
my ($eta) = $r->body =~ /eta=(\d+)/;
# about 60: the seconds since ticket 1 was admitted are already behind us
ok(defined $eta && $eta >= 55 && $eta <= 60,
   'at 1r/m position 1 has {{eta}} of about 60 s (got ' . ($eta // 'none') . ')');
my ($text) = $r->body =~ /text=([^{}]+?) ra=/;
like($text // '', qr/minute/, "eta_text speaks in minutes ($text)");
is($r->header('content-length'), length($r->body), 'Content-Length is the substituted length');
is($r->header('retry-after'), '30', 'Retry-After still set with a custom page');
is($r->header('cache-control'), 'no-store', 'Cache-Control still set with a custom page');
ok(!defined $r->header('refresh') || $r->header('refresh') eq '30',
   'Refresh (if any) agrees with retry_after');

# a short wait: seconds
$t->get('/fast/item.html');
$r = $t->get('/fast/item.html');
like($r->body, qr{^<p>pos=1 eta=1 text=([^{}]+) ra=1 zone=fast again=1</p>\n$},
     '60r/m: position 1, eta 1, retry_after 1')
    or diag($r->body);

# a location-level template overrides the http-level one
$t->get('/loc/item.html');
$r = $t->get('/loc/item.html');
is($r->body, "OTHER loc 1\n", 'a location-level flashsale_page overrides the http-level one');

# JSON clients never see the template
$r = $t->get_json('/drop/item.html');
is($r->status, 429, 'JSON clients still get JSON');
ok($r->json, 'a JSON body');

$t->finish;
