# Field case redis-closes-mid-request.
# A: a fake Redis reads the command and closes the socket (and another one
#    closes in the middle of its reply): the shopper gets the retry page and
#    the next request reconnects.
# B: a real Redis slowed by DEBUG SLEEP 0.5 from another client while the
#    shoppers' clients disconnect after 50 ms: no crash, no [alert], the late
#    replies are dropped, and stock accounting stays exact (each hold either
#    exists and expires, or never happened).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use IO::Select;
use FlashsaleTest;
use ReserveTest;
use FakeRedis;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->start_redis('--enable-debug-command', 'yes');

my $EXP = 1999999999000;
my $fake = FakeRedis->new(
    dir        => $t->dir,
    conn_modes => [ 'close',                                   # 1st: closes
                    { 'SCRIPT LOAD' => FakeRedis::bulk('0' x 40),
                      '*' => 'half' } ],                       # 2nd: half a reply
    on         => { 'SCRIPT LOAD' => FakeRedis::bulk('0' x 40),
                    'EVALSHA' => FakeRedis::array(3, 1, $EXP, 41) },
    mode       => 'error',
);

my $conf = <<'EOF';
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location = /fake/cart/add {
        flashsale zone=z;
        flashsale_redis FAKE timeout=1s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    # the reply comes back after the shopper left
    location = /cart/add {
        flashsale zone=z;
        flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=3s pool=2;
        flashsale_reserve sku=$arg_sku qty=$arg_qty hold=10m;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    # nginx gives up (timeout) after the shopper left, before Redis answers
    location = /cart/short {
        flashsale zone=z;
        flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=250ms pool=2;
        flashsale_reserve sku=$arg_sku qty=$arg_qty hold=3s;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /stock { flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=2s; flashsale_stock; }
    location = /flashsale_status { flashsale_status; }
}
EOF
my $addr = $fake->address;
$conf =~ s/FAKE/$addr/g;
$t->run_nginx($conf);
my @workers = $t->worker_pids;

###########################################################################
# A: the fake closes

my $s0 = zone_stats($t);
my $a1 = reserve_req($t, '/fake/cart/add?sku=A1&qty=1', 'close-1');
is($a1->status, 503, 'A: Redis reads the command and closes: 503') or diag($a1->describe);
is_deeply($a1->json, { state => 'retry', retry_after => 2 }, 'A: body {"state":"retry","retry_after":2}');
is($a1->header('retry-after'), '2', 'A: Retry-After: 2');
is($fake->connections, 1, 'A: one connection so far');
is($fake->closed, 1, 'A: the fake closed it');

my $a2 = reserve_req($t, '/fake/cart/add?sku=A1&qty=1', 'close-2');
is($a2->status, 503, 'A: Redis closes in the middle of the reply: 503') or diag($a2->describe);
is($fake->connections, 2, 'A: the next request reconnected');
is_deeply([ $fake->commands(1) ], [ 'SCRIPT LOAD', 'EVALSHA' ],
          'A: the new connection loaded the script and sent the call');

my $a3 = reserve_req($t, '/fake/cart/add?sku=A1&qty=1', 'close-3');
is($a3->status, 200, 'A: the next request reconnects and is answered') or diag($a3->describe);
is($a3->header('x-reservation'), "sku=A1&qty=1&visitor=close-3&expires=$EXP",
   'A: with the reservation Redis answered');
is($fake->connections, 3, 'A: over a third connection');

my $s1 = zone_stats($t);
is($s1->{redis}{errors} - $s0->{redis}{errors}, 2, 'A: status redis.errors +2 (closed connections)');
is($s1->{reservations}{errors} - $s0->{reservations}{errors}, 2, 'A: status reservations.errors +2');
is($s1->{reservations}{reserved} - $s0->{reservations}{reserved}, 1, 'A: status reservations.reserved +1');
like($t->error_log, qr/flashsale: redis \S+ closed the connection/, 'A: error.log says Redis closed the connection');

###########################################################################
# B: real Redis asleep while the shoppers leave

sub debug_sleep {
    my ($secs) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->redis_port,
                                  Proto => 'tcp', Timeout => 2) or die "connect: $!";
    syswrite($s, "*3\r\n\$5\r\nDEBUG\r\n\$5\r\nSLEEP\r\n\$" . length($secs) . "\r\n$secs\r\n");
    return $s;
}

sub sleep_done {
    my ($s) = @_;
    my $buf = '';
    IO::Select->new($s)->can_read(5) and sysread($s, $buf, 100);
    close $s;
    return $buf;
}

sub accounting {
    my ($sku) = @_;
    my $stock = cli($t, 'GET', stock_key('z', $sku));
    my %q = split /\n/, cli($t, 'HGETALL', qty_key('z', $sku));
    my @h = split /\n/, cli($t, 'ZRANGE', holds_key('z', $sku), 0, -1);
    my $held = 0;
    $held += $_ for values %q;
    return ($stock, $held, scalar(@h), scalar(keys %q), \@h);
}

for my $case ([ '/cart/add', 'B1', 'reply arrives after the shopper left' ],
              [ '/cart/short', 'B2', 'nginx times out after the shopper left' ])
{
    my ($path, $sku, $what) = @$case;
    my $INITIAL = 100;
    cli($t, 'SET', stock_key('z', $sku), $INITIAL);

    # warm the connections so the reservations queue behind the sleep
    is(reserve_req($t, "$path?sku=$sku&qty=2", "$sku-warm")->status, 200, "$sku: a warm-up reservation");

    my $ds = debug_sleep('0.5');
    sleep 0.05;
    my @gone = map {
        open_request(port => $t->port, path => "$path?sku=$sku&qty=2",
                     headers => [ pass_headers($t, "$sku-gone-$_") ])
    } 1 .. 10;
    sleep 0.05;
    close $_->{sock} for @gone;          # the shoppers leave after 50 ms
    like(sleep_done($ds), qr/^\+OK/, "$sku: DEBUG SLEEP 0.5 ran");
    sleep 0.5;                           # late replies or timeouts are processed

    my @after = $t->parallel([ map {
        { path => "$path?sku=$sku&qty=2", headers => [ pass_headers($t, "$sku-after-$_") ] }
    } 1 .. 5 ]);
    is(scalar(grep { $_->status == 200 } @after), 5,
       "$sku ($what): the next reservations on the same connections succeed");

    my ($stock, $held, $nh, $nq) = accounting($sku);
    cmp_ok($stock, '>=', 0, "$sku: stock never negative ($stock)");
    is($stock + $held, $INITIAL, "$sku: stock + held quantities = $INITIAL (stock $stock, held $held)");
    is($nh, $nq, "$sku: one qty entry per hold ($nh holds)");
    cmp_ok($nh, '>=', 6, "$sku: the warm-up and the 5 later shoppers hold units");
    cmp_ok($nh, '<=', 16, "$sku: at most every shopper holds once");

    # those who left retry: each gets exactly one hold, whether or not the
    # first attempt reached Redis
    my @retry = map { reserve_req($t, "$path?sku=$sku&qty=2", "$sku-gone-$_") } 1 .. 10;
    is(scalar(grep { $_->status == 200 } @retry), 10, "$sku: the shoppers who left retry: all 200");
    ($stock, $held, $nh, $nq) = accounting($sku);
    is($nh, 16, "$sku: now exactly 16 holds (warm-up + 10 + 5)");
    is($stock + $held, $INITIAL, "$sku: stock + held = $INITIAL still");
    is($stock, $INITIAL - 16 * 2, "$sku: stock " . ($INITIAL - 32));
}

# B2's holds last 3 s: they all expire back into stock
my $back = poll_until(8, sub {
    my $g = $t->get('/stock?sku=B2')->json // {};
    return ($g->{stock} // -1) == 100 && ($g->{holds} // -1) == 0;
}, 0.2);
ok($back, 'B2: every hold, including any made after the shopper left, expired back into stock (100, 0 holds)')
    or diag($t->get('/stock?sku=B2')->body);

is_deeply([ $t->worker_pids ], \@workers, 'the same workers are running (no crash)');
unlike($t->error_log, qr/\[alert\]|\[crit\]|exited on signal/, 'no [alert], [crit] or crash in error.log');

$t->finish(allow_5xx => 1);
$fake->stop;
