# flashsale_redis connection options (issue 3): AUTH from password_file and
# SELECT of db=3 (keys land in db 3), a Unix socket address, and a wrong or
# missing password answered with the retry page, never a 500.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;
use ReserveTest;

my $PW = 'fs-' . FlashsaleTest::random_string(24);

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->write_file('redis.pass', "$PW\n", 0600);
$t->write_file('wrong.pass', "not-the-password\n", 0600);

# the harness' Redis listens on a Unix socket too; a second redis-server
# requires a password
$t->start_redis('--unixsocket', $t->path('redis.sock'), '--unixsocketperm', '777');
my $aux = start_aux_redis($t, password => $PW);
my $A = { port => $aux->{port}, a => $PW };
my $U = { s => $t->path('redis.sock') };

my $conf = <<'EOF';
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=0r/s; }

    location = /a/cart/add {
        flashsale zone=z;
        flashsale_redis 127.0.0.1:AUXPORT db=3 password_file=%%DIR%%/redis.pass timeout=2s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /a/stock {
        flashsale_redis 127.0.0.1:AUXPORT db=3 password_file=%%DIR%%/redis.pass timeout=2s;
        flashsale_stock;
    }
    location = /wrongpw/cart/add {
        flashsale zone=z;
        flashsale_redis 127.0.0.1:AUXPORT db=3 password_file=%%DIR%%/wrong.pass timeout=2s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /nopw/cart/add {
        flashsale zone=z;
        flashsale_redis 127.0.0.1:AUXPORT db=3 timeout=2s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }

    location = /u/cart/add {
        flashsale zone=z;
        flashsale_redis unix:%%DIR%%/redis.sock timeout=2s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /u/stock {
        flashsale_redis unix:%%DIR%%/redis.sock timeout=2s;
        flashsale_stock;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF
$conf =~ s/AUXPORT/$aux->{port}/g;
$t->run_nginx($conf);

###########################################################################
# AUTH + db=3

my $put = $t->http(method => 'PUT', path => '/a/stock?sku=A1&qty=5');
is($put->status, 200, 'PUT /a/stock through AUTH + SELECT 3: 200') or diag($put->describe);
is_deeply($put->json, { sku => 'A1', stock => 5 }, 'body {"sku":"A1","stock":5}');
is(cli({ %$A, n => 3 }, 'GET', stock_key('z', 'A1')), '5', 'redis-cli -n 3: the stock key is in db 3');
is(cli({ %$A, n => 0 }, 'EXISTS', stock_key('z', 'A1')), '0', 'and not in db 0');

my $r = reserve_req($t, '/a/cart/add?sku=A1&qty=2', 'auth-1');
is($r->status, 200, 'a reservation through AUTH + SELECT 3: 200') or diag($r->describe);
like($r->header('x-reservation') // '', qr/^sku=A1&qty=2&visitor=auth-1&expires=\d+$/, 'with its reservation');
is(cli({ %$A, n => 3 }, 'GET', stock_key('z', 'A1')), '3', 'db 3: stock 3');
is(cli({ %$A, n => 3 }, 'ZCARD', holds_key('z', 'A1')), '1', 'db 3: 1 hold');
is(cli({ %$A, n => 3 }, 'HGET', qty_key('z', 'A1'), 'auth-1'), '2', 'db 3: qty 2 for auth-1');
is(cli({ %$A, n => 0 }, 'DBSIZE'), '0', 'db 0 is empty');
is_deeply($t->get('/a/stock?sku=A1')->json, { sku => 'A1', stock => 3, holds => 1 },
          'GET /a/stock: stock 3, 1 hold');

my @cl = grep { /\bdb=3\b/ } split /\n/, cli($A, 'CLIENT', 'LIST');
cmp_ok(scalar(@cl), '>=', 1, 'CLIENT LIST: nginx connections sit in db 3');

my @many = $t->parallel([ map {
    { path => '/a/cart/add?sku=A1&qty=1', headers => [ pass_headers($t, "auth-many-$_") ] }
} 1 .. 10 ]);
is(scalar(grep { $_->status == 200 } @many), 3, '10 more shoppers for 3 units: 3 reserved');
is(scalar(grep { $_->status == 409 } @many), 7, '7 sold out');
is(cli({ %$A, n => 3 }, 'GET', stock_key('z', 'A1')), '0', 'db 3: stock 0');

###########################################################################
# wrong or no password: the retry answer

cli({ %$A, n => 3 }, 'SET', stock_key('z', 'W1'), 5);
my $s0 = zone_stats($t);
my $bad = reserve_req($t, '/wrongpw/cart/add?sku=W1&qty=1', 'wrongpw-1');
is($bad->status, 503, 'wrong password: 503') or diag($bad->describe);
is_deeply($bad->json, { state => 'retry', retry_after => 2 }, 'body {"state":"retry","retry_after":2}')
    or diag($bad->body);
is($bad->header('retry-after'), '2', 'Retry-After: 2');
my $nopw = reserve_req($t, '/nopw/cart/add?sku=W1&qty=1', 'nopw-1');
is($nopw->status, 503, 'no password against a Redis that needs one: 503');
is(cli({ %$A, n => 3 }, 'GET', stock_key('z', 'W1')), '5', 'no stock was taken without AUTH');
my $s1 = zone_stats($t);
cmp_ok($s1->{redis}{errors} - $s0->{redis}{errors}, '>=', 2, 'status redis.errors counts them');
like($t->error_log, qr/flashsale: redis .* refused AUTH/, 'error.log says Redis refused AUTH');
unlike($t->error_log, qr/\Q$PW\E/, 'the password never reaches error.log');

###########################################################################
# Unix socket

my $up = $t->http(method => 'PUT', path => '/u/stock?sku=U1&qty=4');
is($up->status, 200, 'PUT /u/stock over the Unix socket: 200') or diag($up->describe);
is(cli($U, 'GET', stock_key('z', 'U1')), '4', 'redis-cli -s: stock 4');
my $ur = reserve_req($t, '/u/cart/add?sku=U1&qty=1', 'unix-1');
is($ur->status, 200, 'a reservation over the Unix socket: 200') or diag($ur->describe);
like($ur->header('x-reservation') // '', qr/^sku=U1&qty=1&visitor=unix-1&/, 'with its reservation');
is(cli($U, 'GET', stock_key('z', 'U1')), '3', 'redis-cli -s: stock 3');
is(cli($U, 'ZRANGE', holds_key('z', 'U1'), 0, -1), 'unix-1', 'the hold is unix-1');
my @tcp = grep { /addr=127\.0\.0\.1:/ } split /\n/, cli($U, 'CLIENT', 'LIST');
is(scalar(@tcp), 0, 'CLIENT LIST: no TCP client, nginx came over the socket');

$t->finish(allow_5xx => 1);
