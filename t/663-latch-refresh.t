# An expired sold-out latch is refreshed by one request while the others
# are still answered from it.  Before, every reservation in flight when a
# hot SKU's latch ran out went to Redis, each bringing back the list of its
# holders; now exactly one EVALSHA asks, whatever the crowd.
#  - Redis is held busy (a script that spins for 0.8 s) right after the
#    latch expired, and 20 shoppers without a hold come at once: 20 x 409,
#    1 EVALSHA, and the SKU is latched again with its holder;
#  - the holder still gets their hold back;
#  - when the refresh finds stock again (set in Redis behind the module's
#    back), the latch ends and the next shoppers reserve.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use IO::Socket::INET;
use IO::Select;
use FlashsaleTest;
use ReserveTest;
use BreakerTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->start_redis;

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=5s;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty hold=10m latch=1s;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /stock { flashsale_stock; }
    location = /flashsale_status { flashsale_status; }
}
EOF

sub listed {
    my ($sku) = @_;
    return scalar grep { $_ eq $sku } @{ zst($t, 'z')->{sold_out_skus} || [] };
}
sub reserve { my ($sku, $who) = @_; reserve_req($t, "/cart/add?sku=$sku&qty=1", $who) }

sub poll {
    my ($what, $cond, $secs) = @_;
    return 1 if FlashsaleTest::poll_until($secs // 5, $cond);
    diag("gave up waiting: $what");
    return 0;
}

# true while Redis does not answer a PING within 50 ms
sub redis_busy {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->redis_port,
                                  Timeout => 1) or return 0;
    print $s "PING\r\n";
    my $busy = !IO::Select->new($s)->can_read(0.05);
    close $s;
    return $busy;
}

# Redis spins in a script for $ms (no command is served meanwhile)
sub hold_redis_busy {
    my ($ms) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        my $lua = "local t = redis.call('TIME') local s = t[1] * 1e6 + t[2] "
                . "while true do local n = redis.call('TIME') "
                . "if n[1] * 1e6 + n[2] - s > $ms * 1000 then break end end return 1";
        exec 'redis-cli', '-p', $t->redis_port, 'EVAL', $lua, '0';
        exit 127;
    }
    return $pid;
}

is($t->http(method => 'PUT', path => '/stock?sku=S&qty=1')->status, 200, 'S: stock 1');
my $mine = reserve('S', 'holder-1');
is($mine->status, 200, 'holder-1 takes the last unit');
is(reserve('S', 'late-0')->status, 409, 'the next shopper: 409 from Redis');
ok(listed('S'), 'S is latched');
is(zst($t, 'z')->{sold_out_holders}{S}, 1, 'with its 1 holder');

ok(poll('the latch to expire', sub { !listed('S') }), 'the latch expires after 1 s');

my $e0 = evalsha_calls($t);
my $blocker = hold_redis_busy(800);
ok(poll('redis to be busy', \&redis_busy, 3), 'Redis is busy in a script');

my $t0 = time;
my @res = $t->parallel([ map {
    +{ path => '/cart/add?sku=S&qty=1', headers => [ pass_headers($t, shopper()) ] }
} 1 .. 20 ]);
waitpid $blocker, 0;

is(scalar(grep { $_->status == 409 && (($_->json // {})->{state} // '') eq 'sold_out' } @res), 20,
   '20 shoppers at once while the expired latch is refreshed: 20 x 409 sold out')
    or diag(join ', ', map { $_->status } @res);
is(evalsha_calls($t) - $e0, 1, 'exactly 1 EVALSHA: the refresh');
ok(listed('S'), 'S is latched again');
is(zst($t, 'z')->{sold_out_holders}{S}, 1, 'with its 1 holder');

my $r = reserve('S', 'holder-1');
is($r->status, 200, "the holder's retry: 200 (their hold)");
is(cli($t, 'ZCARD', holds_key('z', 'S')), 1, 'still 1 hold in Redis');

###########################################################################
# the refresh finds stock: the latch ends

ok(poll('the latch to expire again', sub { !listed('S') }), 'the latch expires again');
# units come back behind the module's back (as an expired hold would)
is(cli($t, 'SET', stock_key('z', 'S'), 3), 'OK', 'Redis: S stock 3');
$r = reserve('S', 'after-1');
is($r->status, 200, 'the refreshing request reserves one');
ok(!listed('S'), 'S is no longer latched');
is(reserve('S', 'after-2')->status, 200, 'the next shopper reserves too');
is(cli($t, 'GET', stock_key('z', 'S')), 1, 'Redis: S stock 1 (3 - 2)');

$t->finish;
