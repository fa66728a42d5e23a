# Field case redis-busy: the reservation script's call is answered
# "-BUSY Redis is busy running a script" (or any other -ERR) by a fake
# Redis. The shopper gets the retry answer (503), never the sold-out answer
# and never a 500; the failure is counted (redis.errors,
# reservations.errors, toward the breaker).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;
use ReserveTest;
use FakeRedis;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");

# busy from the first command on (SCRIPT LOAD is refused too)
my $busy = FakeRedis->new(dir => $t->dir, mode => 'busy');
# the script loads, then every call is BUSY (a long script elsewhere)
my $busy2 = FakeRedis->new(dir => $t->dir, mode => 'busy',
                           on => { 'SCRIPT LOAD' => FakeRedis::bulk('0' x 40) });
# any other error reply
my $err = FakeRedis->new(dir => $t->dir, mode => 'error',
                         on => { 'SCRIPT LOAD' => FakeRedis::bulk('0' x 40) });

$t->start_redis;
ReserveTest::cli($t, 'SET', 'fs:{z:G1}:stock', 100);

my $conf = <<'EOF';
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
flashsale_breaker min_calls=100000 window=60s;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location = /busy/cart/add {
        flashsale zone=z;
        flashsale_redis BUSY1 timeout=1s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /busy2/cart/add {
        flashsale zone=z;
        flashsale_redis BUSY2 timeout=1s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /err/cart/add {
        flashsale zone=z;
        flashsale_redis ERR1 timeout=1s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /good/cart/add {
        flashsale zone=z;
        flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=2s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /err/release { flashsale_redis ERR1; flashsale_release; }
    location = /err/stock   { flashsale_redis ERR1; flashsale_stock; }
    location = /flashsale_status { flashsale_status; }
}
EOF
my %a = (BUSY1 => $busy->address, BUSY2 => $busy2->address, ERR1 => $err->address);
$conf =~ s/\b(BUSY1|BUSY2|ERR1)\b/$a{$1}/g;
$t->run_nginx($conf);

for my $case ([ '/busy/cart/add', $busy, '-BUSY to every command' ],
              [ '/busy2/cart/add', $busy2, 'script loaded, then -BUSY' ],
              [ '/err/cart/add', $err, '-ERR something' ])
{
    my ($path, $fake, $what) = @$case;
    my $s0 = zone_stats($t);

    my @r = map { reserve_req($t, "$path?sku=A1&qty=1", "busy-$_-" . $fake->port) } 1 .. 5;
    is(scalar(grep { $_->status == 503 } @r), 5, "$what: 5 sequential reservations, all 503")
        or diag(join ' ', map { $_->status } @r);
    is(scalar(grep { $_->status == 409 } @r), 0, "$what: never the sold-out answer");
    is(scalar(grep { $_->status == 500 } @r), 0, "$what: never a 500");
    is_deeply($r[0]->json, { state => 'retry', retry_after => 2 },
              "$what: body {\"state\":\"retry\",\"retry_after\":2}") or diag($r[0]->describe);
    is($r[0]->header('retry-after'), '2', "$what: Retry-After: 2");
    is($r[0]->header('x-reservation') // '', '', "$what: no reservation");
    is($fake->count('EVALSHA'), 5, "$what: each reached the fake Redis (5 EVALSHA, no retry)");

    my $s1 = zone_stats($t);
    is($s1->{redis}{errors} - $s0->{redis}{errors}, 5, "$what: status redis.errors +5");
    is($s1->{reservations}{errors} - $s0->{reservations}{errors}, 5, "$what: status reservations.errors +5");
    is($s1->{reservations}{sold_out} - $s0->{reservations}{sold_out}, 0, "$what: status reservations.sold_out unchanged");
    is($s1->{redis}{timeouts} - $s0->{redis}{timeouts}, 0, "$what: not a timeout");
    cmp_ok(($s1->{breaker}{window_failures} // 0) - ($s0->{breaker}{window_failures} // 0), '>=', 5,
           "$what: counted as failures toward the breaker");

    my @p = $t->parallel([ map {
        { path => "$path?sku=A1&qty=1", headers => [ pass_headers($t, "busy-par-$_-" . $fake->port) ] }
    } 1 .. 10 ]);
    is(scalar(grep { $_->status == 503 } @p), 10, "$what: 10 concurrent reservations, all 503");

    my $h = $t->get("$path?sku=A1&qty=1", Authorization => bearer($t, 'busy-html'));
    is($h->status, 503, "$what: HTML client: 503");
    like($h->header('content-type') // '', qr{^text/html}, "$what: the retry page");
}

my @good = $t->parallel([ map {
    { path => '/good/cart/add?sku=G1&qty=1', headers => [ pass_headers($t, "good-$_") ] }
} 1 .. 10 ]);
is(scalar(grep { $_->status == 200 } @good), 10,
   'the same zone against a healthy Redis: 10 reservations, all 200');
is(ReserveTest::cli($t, 'GET', 'fs:{z:G1}:stock'), '90', 'healthy Redis: stock 90');

like($t->error_log, qr/redis answered the script with "BUSY Redis is busy running a script/,
     'error.log names the BUSY reply');
like($t->error_log, qr/redis answered the script with "ERR something"/, 'and the ERR reply');

# the back end's handlers answer 503 too, never 500
my $rel = $t->http(method => 'POST', path => '/err/release?sku=A1&visitor=v1');
is($rel->status, 503, 'release against an erroring Redis: 503');
ok(ref $rel->json eq 'HASH' && defined $rel->json->{error}, 'with a JSON error') or diag($rel->body);
my $st = $t->http(method => 'PUT', path => '/err/stock?sku=A1&qty=5');
is($st->status, 503, 'PUT /stock against an erroring Redis: 503');

$t->finish(allow_5xx => 1);
$_->stop for $busy, $busy2, $err;
