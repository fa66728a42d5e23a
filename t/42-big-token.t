# Large tokens: a correctly signed 6 KB pass is accepted, 6 KB of random
# base64url with two dots is refused, tokens over 16 KB are refused, and a
# header bigger than nginx's own buffers gets nginx's own 400.
# Field case: big-token.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/drop/item.html', "CONTENT\n");
$t->write_file('html/wide/item.html', "WIDE\n");

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/ { flashsale zone=z rate=0r/s; }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    root %%DIR%%/html;
    large_client_header_buffers 4 64k;
    location /wide/ { flashsale zone=z; }
}
EOF

my @pids = $t->worker_pids;
$t->get('/drop/item.html');          # one ticket exists, so tkt=1 is valid

# ~6 KB valid pass: pad with an extra claim
my $pad = 'p' x 4400;
my $big = $t->forge(zone => 'z', tkt => 1, adm => 1, pad => $pad);
ok(length($big) > 5800 && length($big) < 6400, 'a signed pass of about 6 KB (' . length($big) . ' bytes)');

my $r = $t->get('/drop/item.html', Cookie => "flashsale=$big");
is($r->status, 200, '6 KB pass in the cookie: 200');
is($r->body, "CONTENT\n", '6 KB pass in the cookie: admitted to the content');
$r = $t->get_json('/drop/item.html', Authorization => "Bearer $big");
is($r->status, 200, '6 KB pass as Bearer: admitted');

# ~6 KB of random base64url split by two dots
my $alpha = join '', 'A' .. 'Z', 'a' .. 'z', '0' .. '9', '-', '_';
my $junk = join '.', map { FlashsaleTest::random_string(2000, $alpha) } 1 .. 3;
is(length($junk), 6002, '6 KB of random base64url with two dots');
$r = $t->get_json('/drop/item.html', Cookie => "flashsale=$junk");
is($r->status, 429, 'random 6 KB token in the cookie: refused (queue)');
$r = $t->get('/drop/item.html', Authorization => "Bearer $junk");
is($r->status, 200, 'random 6 KB token as Bearer: HTML waiting page');
isnt($r->body, "CONTENT\n", 'random 6 KB token as Bearer: not the content');

# a cookie header larger than large_client_header_buffers (default 8k)
$r = $t->get('/drop/item.html', Cookie => 'flashsale=' . $t->forge(zone => 'z', tkt => 1, adm => 1, pad => 'p' x 9000));
is($r->status, 400, 'a header over 8 KB: nginx\'s own 400');
like($r->body, qr/Request Header Or Cookie Too Large/i, 'with nginx\'s own message');

# with wide buffers: 16 KB is the module's limit for a token
my $over = $t->forge(zone => 'z', tkt => 1, adm => 1, pad => 'p' x 13000);
ok(length($over) > 16384, 'a signed pass over 16 KB (' . length($over) . ' bytes)');
$r = $t->get_json('/wide/item.html', Cookie => "flashsale=$over", port => $t->port(2));
is($r->status, 429, 'a correctly signed pass over 16 KB is refused (queue)');
$r = $t->get_json('/wide/item.html', Authorization => "Bearer $over", port => $t->port(2));
is($r->status, 429, 'the same as Bearer is refused too');

my $under = $t->forge(zone => 'z', tkt => 1, adm => 1, pad => 'p' x 10000);
ok(length($under) < 16384 && length($under) > 8192, 'a signed pass of about 13 KB');
$r = $t->get('/wide/item.html', Cookie => "flashsale=$under", port => $t->port(2));
is($r->body, "WIDE\n", 'a 13 KB pass is accepted where the buffers allow it');

is_deeply([ $t->worker_pids ], \@pids, 'the workers are the same ones afterwards');

$t->finish;
