# A reservation or confirmation whose client leaves while its EVALSHA is in
# flight: Redis runs the script all the same (the hold is made, the sale
# confirmed), and the status counts what Redis did, although nobody reads
# the answer.  It used to drop the reply uncounted: reserved and confirmed
# said 0 while Redis held the hold (found by attacking the module).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use IO::Socket::INET;
use FlashsaleTest;
use ReserveTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/ok.txt', "OK\n");
$t->start_redis;
$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=5s;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /cart/add {
        flashsale zone=z rate=1r/s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty hold=10m;
        alias %%DIR%%/html/ok.txt;
    }
    location = /confirm { flashsale_confirm zone=z; }
    location = /release { flashsale_release zone=z; }
    location = /stock { flashsale_stock zone=z; }
    location = /flashsale_status { flashsale_status; }
}
EOF

# Redis paused: the request reaches nginx, its EVALSHA waits in Redis'
# socket, and the client leaves.  Nothing can be polled while Redis is
# paused (every command waits), so a short pause lets nginx send it.
sub abandon {
    my ($req) = @_;
    cli($t, 'CLIENT', 'PAUSE', 600, 'ALL');
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
                                  Proto => 'tcp', Timeout => 2)
        or die "connect: $!";
    print $s $req;
    sleep 0.25;
    close $s;
}

sub stats { zone_stats($t) }

is($t->http(method => 'PUT', path => '/stock?sku=A&qty=5')->status, 200, 'stock 5');
my $b = stats();

abandon("GET /cart/add?sku=A&qty=2 HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
        . 'Authorization: ' . bearer($t, 'gone-shopper') . "\r\n\r\n");
ok(poll_until(5, sub { (cli($t, 'GET', stock_key('z', 'A')) // '') eq '3' }),
   'Redis made the hold: stock 5 -> 3');
is(cli($t, 'HGET', qty_key('z', 'A'), 'gone-shopper'), '2', 'Redis holds 2 for the shopper');
my $z;
ok(poll_until(5, sub { ($z = stats())->{reservations}{reserved} == $b->{reservations}{reserved} + 1 }),
   'reservations.reserved counts the hold') or diag explain $z->{reservations};
is($z->{redis}{calls} - $b->{redis}{calls}, 1, 'redis.calls counts the call');
is($z->{reservations}{errors}, $b->{reservations}{errors}, 'no error counted');

abandon("POST /confirm?sku=A&visitor=gone-shopper HTTP/1.1\r\nHost: x\r\n"
        . "Content-Length: 0\r\n\r\n");
ok(poll_until(5, sub { (cli($t, 'ZCARD', holds_key('z', 'A')) // '') eq '0' }),
   'Redis confirmed the hold');
is(cli($t, 'GET', stock_key('z', 'A')), '3', 'stock still 3 (sold)');
ok(poll_until(5, sub { ($z = stats())->{reservations}{confirmed} == $b->{reservations}{confirmed} + 1 }),
   'reservations.confirmed counts the confirmation') or diag explain $z->{reservations};

# a hold released by a back end that left
is(reserve_req($t, '/cart/add?sku=A&qty=1', 'second-shopper')->status, 200, 'a second hold');
abandon("POST /release?sku=A&visitor=second-shopper HTTP/1.1\r\nHost: x\r\n"
        . "Content-Length: 0\r\n\r\n");
ok(poll_until(5, sub { (cli($t, 'GET', stock_key('z', 'A')) // '') eq '3' }),
   'Redis released it: stock back to 3');
ok(poll_until(5, sub { ($z = stats())->{reservations}{released} == $b->{reservations}{released} + 1 }),
   'reservations.released counts the release') or diag explain $z->{reservations};

$t->finish;
