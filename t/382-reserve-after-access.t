# Stock is reserved only after the location's access checks let the
# request in: a shopper refused by deny (or auth_request) never holds
# stock and costs no Redis call.
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
    location = /cart/denied {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        deny all;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        allow 127.0.0.1;
        deny all;
        alias %%DIR%%/html/reserved.txt;
    }
}
EOF

cli($t, 'SET', stock_key('z', 'A1'), 5);
my $e0 = evalsha_calls($t);

my $r = $t->get('/cart/denied?sku=A1&qty=1', pass_headers($t, 'denied-1'));
is($r->status, 403, 'a shopper the location denies gets 403');
is(cli($t, 'GET', stock_key('z', 'A1')), '5', 'and holds no stock');
is(cli($t, 'ZCARD', holds_key('z', 'A1')), '0', 'no hold recorded');
is(evalsha_calls($t), $e0, 'no Redis call was made');

$r = $t->get('/cart/add?sku=A1&qty=1', pass_headers($t, 'allowed-1'));
is($r->status, 200, 'a shopper the location allows reserves');
is($r->body, "RESERVED\n", 'and reaches the content');
is(cli($t, 'GET', stock_key('z', 'A1')), '4', 'stock 5 -> 4');
is(evalsha_calls($t), $e0 + 1, 'one Redis call');

$t->finish;
