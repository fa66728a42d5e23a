# What a waiting shopper receives: the HTML page (200) or JSON (429), with
# the headers that keep caches and clients well-behaved; cookie flags.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use FlashsaleTest;

my $t = FlashsaleTest->new;
my $key = $t->write_keys;
$t->write_file('html/drop/item.html', "CONTENT\n");
$t->write_file('html/shop/item.html', "SHOP\n");

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_zone q:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/ { flashsale zone=z rate=1r/m; }
    location /shop/ {
        flashsale_cookie fs_q domain=example.test path=/shop secure samesite=strict;
        flashsale zone=q rate=0r/s;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF

# the first visitor takes the one admission 1r/m allows right away
my $first = $t->get('/drop/item.html');
is($first->body, "CONTENT\n", 'the first visitor is admitted');

###########################################################################
# HTML client (no Accept header)

my $jar = FlashsaleTest::Jar->new;
my $h = $t->get('/drop/item.html', jar => $jar);
is($h->status, 200, 'HTML waiting: 200');
is($h->header('content-type'), 'text/html; charset=utf-8', 'HTML waiting: Content-Type text/html; charset=utf-8');
is($h->header('cache-control'), 'no-store', 'HTML waiting: Cache-Control: no-store');
is($h->header('retry-after'), '30', 'HTML waiting: Retry-After: 30 (eta ~60 s, capped at 30)');
is($h->header('refresh'), '30', 'HTML waiting: Refresh: 30');
like($h->body, qr/<meta http-equiv="refresh" content="30">/, 'HTML waiting: <meta http-equiv="refresh" content="30">');
like($h->body, qr/>\s*1\s*</, 'HTML waiting: the page shows position 1');
is($h->header('content-length'), length($h->body), 'HTML waiting: Content-Length matches the body');
unlike($h->body, qr/\{\{/, 'HTML waiting: no placeholder left unsubstituted');
is(index($h->body, $key), -1, 'HTML waiting: the key is nowhere in the page');

my $tc = $h->cookie('flashsale');
ok($tc, 'HTML waiting: a ticket cookie is set');
is($tc->{attrs}{path}, '/', 'ticket cookie: Path=/');
ok($tc->{attrs}{httponly}, 'ticket cookie: HttpOnly');
is(lc($tc->{attrs}{samesite} // ''), 'lax', 'ticket cookie: SameSite=Lax');
ok(!$tc->{attrs}{secure}, 'ticket cookie: not Secure by default');
my $cl = jwt_claims($tc->{value});
is($cl->{tkt}, 2, 'ticket: tkt 2');
ok(!$cl->{adm}, 'ticket: no adm claim');
is($cl->{iss}, 'flashsale', 'ticket: iss flashsale');
is($cl->{aud}, 'z', 'ticket: aud z');
is($cl->{exp} - $cl->{iat}, 3600, 'ticket: lives an hour');
ok(jwt_verify($tc->{value}, $key), 'ticket: signed with the key');

###########################################################################
# API client

my $jj = FlashsaleTest::Jar->new;
my $j = $t->get_json('/drop/item.html', jar => $jj);
is($j->status, 429, 'JSON waiting: 429');
is($j->header('content-type'), 'application/json', 'JSON waiting: Content-Type application/json');
is($j->header('cache-control'), 'no-store', 'JSON waiting: Cache-Control: no-store');
is($j->header('retry-after'), '30', 'JSON waiting: Retry-After: 30');
ok(!defined $j->header('refresh'), 'JSON waiting: no Refresh header');
my $d = $j->json;
ok($d, 'JSON waiting: the body is JSON') or diag($j->body);
is_deeply([ sort keys %$d ], [ sort qw(state position eta retry_after token) ],
          'JSON waiting: fields state, position, eta, retry_after, token');
is($d->{state}, 'waiting', 'JSON: state waiting');
is($d->{position}, 2, 'JSON: position 2');
ok($d->{eta} >= 118 && $d->{eta} <= 120,
   "JSON: eta = ceil(2 / (1/60 s)) = 120 s at 1r/m for position 2 (got $d->{eta})");
is($d->{retry_after}, 30, 'JSON: retry_after 30');
is(jwt_claims($d->{token})->{tkt}, 3, 'JSON: the token is ticket 3');
is($jj->get('flashsale'), $d->{token}, 'JSON: the same ticket is in the cookie');
like($j->body, qr/"position":2\b/, 'JSON: position is a number');

# a returning API client keeps its place and still gets its token back
my $again = $t->get_json('/drop/item.html', Authorization => "Bearer $d->{token}");
is($again->status, 429, 'returning API client: 429');
is($again->json->{position}, 2, 'returning API client: same position');
ok(defined $again->json->{token}, 'returning API client: the answer carries the token field')
    or diag($again->body);
is(jwt_claims($again->json->{token} // $d->{token})->{tkt}, 3, 'returning API client: same ticket');

# which Accept headers mean JSON
for my $acc ('application/json', 'application/json, text/plain, */*',
             'text/html;q=0.9, application/json') {
    my $x = $t->get('/drop/item.html', Accept => $acc);
    is($x->status, 429, "Accept: $acc => JSON 429");
}
for my $acc ('text/html', 'text/html,application/xhtml+xml,*/*;q=0.8', '*/*') {
    my $x = $t->get('/drop/item.html', Accept => $acc);
    is($x->status, 200, "Accept: $acc => HTML 200");
    like($x->header('content-type') // '', qr{^text/html}, "Accept: $acc => text/html");
}

# HEAD of a waiting page: headers only
my $hd = $t->http(method => 'HEAD', path => '/drop/item.html');
is($hd->status, 200, 'HEAD waiting: 200');
is($hd->body, '', 'HEAD waiting: no body');
is($hd->header('cache-control'), 'no-store', 'HEAD waiting: Cache-Control: no-store');

###########################################################################
# flashsale_cookie name and flags

my $sj = FlashsaleTest::Jar->new;
my $s = $t->get('/shop/item.html', jar => $sj);
my $sc = $s->cookie('fs_q');
ok($sc, 'custom cookie: named fs_q');
ok(!$s->cookie('flashsale'), 'custom cookie: no flashsale cookie');
is($sc->{attrs}{domain}, 'example.test', 'custom cookie: Domain=example.test');
is($sc->{attrs}{path}, '/shop', 'custom cookie: Path=/shop');
ok($sc->{attrs}{secure}, 'custom cookie: Secure');
ok($sc->{attrs}{httponly}, 'custom cookie: HttpOnly (always)');
is(lc($sc->{attrs}{samesite} // ''), 'strict', 'custom cookie: SameSite=Strict');
my $stkt = jwt_claims($sc->{value})->{tkt};

my $s2 = $t->get_json('/shop/item.html', jar => $sj);
is($s2->status, 429, 'custom cookie: the returning shopper still waits (paused zone)');
is(jwt_claims($s2->json->{token} // $sc->{value})->{tkt}, $stkt,
   'custom cookie: the returning shopper keeps ticket ' . $stkt);
is($t->status->{q}{tickets_issued}, 1, 'custom cookie: no second ticket');

my $s3 = $t->get_json('/shop/item.html', Cookie => "flashsale=$sc->{value}");
isnt(jwt_claims($s3->json->{token})->{sub}, jwt_claims($sc->{value})->{sub},
     'custom cookie: the default cookie name is not read');

$t->finish;
