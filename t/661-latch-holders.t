# The sold-out latch knows the SKU's holders. The sold-out answer that
# latches a SKU lists its live holders (up to 4096), whoever took the hold;
# while the latch lasts exactly they reach Redis and everyone else gets 409
# from memory.
#  - a hold taken through another node (the script run with EVAL straight
#    in Redis) is returned on this node while the SKU is latched;
#  - holders that got theirs through this node get it back too; non-holders
#    cost no EVALSHA; sold_out_holders counts the holders per latch;
#  - a PUT lifts the latch, the next sold-out answer latches it again with
#    the holders of then (replaced, not merged);
#  - a new hold through this node (units came back: a holder's own hold
#    expired and was taken again) lifts the latch;
#  - exactly 4096 holders: all listed, each gets their hold back;
#  - more than 4096 holders: the answer only counts them, the latch falls
#    back on the holders filter (sold_out_holders null): a holder through
#    this node still gets the hold, one through another node does not
#    (the documented limit of the fallback), non-holders get 409.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use Digest::SHA qw(sha1_hex);
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
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=3s;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty hold=10m latch=60s;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /stock { flashsale_stock; }
    location = /flashsale_status { flashsale_status; }
}
EOF

sub put_stock {
    my ($sku, $qty) = @_;
    return $t->http(method => 'PUT', path => "/stock?sku=$sku&qty=$qty")->status;
}
sub listed {
    my ($sku) = @_;
    return scalar grep { $_ eq $sku } @{ zst($t, 'z')->{sold_out_skus} || [] };
}
sub holders_of { zst($t, 'z')->{sold_out_holders}{ $_[0] } }
sub reserve { my ($sku, $who) = @_; reserve_req($t, "/cart/add?sku=$sku&qty=1", $who) }
sub reservation { $_[0]->header('x-reservation') // '' }
sub redis_now_ms {
    my ($s, $us) = split /\n/, cli($t, 'TIME');
    return $s * 1000 + int($us / 1000);
}

# $n shoppers who hold nothing, at once: how many got 409 sold out of $sku
sub non_holders {
    my ($sku, $n) = @_;
    my @res = $t->parallel([ map {
        +{ path => "/cart/add?sku=$sku&qty=1",
           headers => [ pass_headers($t, shopper()) ] }
    } 1 .. $n ]);
    return scalar grep {
        $_->status == 409 && (($_->json // {})->{state} // '') eq 'sold_out'
            && ($_->json->{sku} // '') eq $sku
    } @res;
}

###########################################################################
# a hold taken through another node

is(put_stock('A', 2), 200, 'A: stock 2');
# the stock handler's connection loaded the module's script: the test runs
# the same text (EVAL would load any text it is given, so check first)
is(cli($t, 'SCRIPT', 'EXISTS', sha1_hex(ReserveTest::reserve_script())), 1,
   "the script the test runs is the module's own (its SHA1 is loaded)");
my $other = script_call($t, sku => 'A', visitor => 'node2-shopper');
is(ref $other eq 'ARRAY' && $other->[0], 3, 'another node reserves 1 of A for node2-shopper: {3, ...}')
    or diag(explain($other));
my $other_exp = $other->[2];

my $mine = reserve('A', 'local-1');
is($mine->status, 200, 'local-1 reserves the last unit through this node: 200')
    or diag($mine->describe);
is(cli($t, 'GET', stock_key('z', 'A')), 0, 'A: stock 0 in Redis');

my $e0 = evalsha_calls($t);
my $r = reserve('A', 'late-1');
is($r->status, 409, 'a shopper without a hold: 409');
is(evalsha_calls($t), $e0 + 1, 'from Redis (1 EVALSHA)');
ok(listed('A'), 'A is latched (sold_out_skus)');
is(holders_of('A'), 2, 'sold_out_holders: A has 2 known holders');

$e0 = evalsha_calls($t);
$r = reserve('A', 'node2-shopper');
is($r->status, 200, "node2-shopper's retry on this node: 200, not 409") or diag($r->describe);
is(reservation($r), "sku=A&qty=1&visitor=node2-shopper&expires=$other_exp",
   'with the hold the other node took (same expiry)');
is(evalsha_calls($t), $e0 + 1, 'it went to Redis');

$r = reserve('A', 'local-1');
is($r->status, 200, "local-1's retry: 200");
is(reservation($r), reservation($mine), 'the same reservation as the first time');
is(evalsha_calls($t), $e0 + 2, 'through Redis');
is(cli($t, 'GET', stock_key('z', 'A')), 0, 'A: stock still 0');
is(cli($t, 'ZCARD', holds_key('z', 'A')), 2, 'A: still 2 holds');

my $so = zst($t, 'z')->{reservations}{sold_out};
$e0 = evalsha_calls($t);
is(non_holders('A', 20), 20, '20 shoppers without a hold at once: 20 x 409 sold out A');
is(evalsha_calls($t), $e0, 'no EVALSHA: answered from the latch');
is(zst($t, 'z')->{reservations}{sold_out}, $so + 20, 'reservations.sold_out +20');

###########################################################################
# a PUT lifts the latch; the next latch has the holders of then

is(put_stock('A', 1), 200, 'PUT A qty=1');
ok(!listed('A'), 'lifts the latch');
my $other2 = script_call($t, sku => 'A', visitor => 'node2-second');
is($other2->[0], 3, 'another node takes that unit for node2-second');
$e0 = evalsha_calls($t);
is(reserve('A', 'late-2')->status, 409, 'a shopper without a hold: 409');
is(evalsha_calls($t), $e0 + 1, 'from Redis');
is(holders_of('A'), 3, 'latched again with the 3 holders of now');
$r = reserve('A', 'node2-second');
is($r->status, 200, "node2-second's retry on this node: 200") or diag($r->describe);
is(reservation($r), "sku=A&qty=1&visitor=node2-second&expires=$other2->[2]", 'their hold');
is(reserve('A', 'node2-shopper')->status, 200, 'node2-shopper still gets theirs');

###########################################################################
# a new hold through this node lifts the latch

is(put_stock('E', 1), 200, 'E: stock 1');
my $short = script_call($t, sku => 'E', visitor => 'short-1', hold => 300);
is($short->[0], 3, 'another node takes it for short-1, for 300 ms');
$e0 = evalsha_calls($t);
is(reserve('E', 'late-3')->status, 409, 'a shopper without a hold: 409 (from Redis)');
is(holders_of('E'), 1, 'E latched with 1 known holder');
ok(poll_until(5, sub { redis_now_ms() > $short->[2] }, 0.05), "short-1's hold expires");
$r = reserve('E', 'short-1');
is($r->status, 200, 'short-1 asks again: a new hold (the expired one came back to stock)')
    or diag($r->describe);
my ($exp) = reservation($r) =~ /&expires=(\d+)$/;
cmp_ok($exp // 0, '>', $short->[2] + 500_000, 'a new hold of 10 minutes');
ok(!listed('E'), 'the new hold lifted the latch');
is(non_holders('E', 1), 1, 'the next shopper: 409');
is(evalsha_calls($t), $e0 + 3, 'from Redis');
is(holders_of('E'), 1, 'E latched again, with short-1 as its holder');

###########################################################################
# exactly the cap: all 4096 listed

my $CAP = 4096;
is(put_stock('CAP', 1), 200, 'CAP: stock 1');
is(add_holds($t, 'CAP', 'cap-', $CAP - 1, 600_000), $CAP - 1,
   ($CAP - 1) . ' holds of CAP taken through other nodes');
is(reserve('CAP', 'local-cap')->status, 200, 'local-cap takes the last unit: 4096 holders');
$e0 = evalsha_calls($t);
is(reserve('CAP', 'late-5')->status, 409, 'a shopper without a hold: 409 (from Redis)');
is(holders_of('CAP'), $CAP, "CAP latched with all $CAP holders known");
for my $who ('cap-1', 'cap-2048', "cap-" . ($CAP - 1), 'local-cap') {
    $r = reserve('CAP', $who);
    is($r->status, 200, "$who gets the hold back: 200") or diag($r->describe);
    like(reservation($r), qr/^sku=CAP&qty=1&visitor=$who&expires=\d+$/, "$who: their reservation");
}
is(evalsha_calls($t), $e0 + 5, 'each through Redis');
is(non_holders('CAP', 20), 20, '20 shoppers without a hold: 20 x 409');
is(evalsha_calls($t), $e0 + 5, 'from memory');

###########################################################################
# more holders than the cap: a count, and the holders filter decides

is(put_stock('BIG', 1), 200, 'BIG: stock 1');
is(add_holds($t, 'BIG', 'far-', $CAP + 4, 600_000), $CAP + 4,
   ($CAP + 4) . ' holds of BIG taken through other nodes');
my $big = reserve('BIG', 'local-big');
is($big->status, 200, 'local-big takes the last unit through this node');
$e0 = evalsha_calls($t);
is(reserve('BIG', 'late-4')->status, 409, 'a shopper without a hold: 409');
is(evalsha_calls($t), $e0 + 1, 'from Redis');
ok(listed('BIG'), 'BIG is latched');
ok(exists zst($t, 'z')->{sold_out_holders}{BIG} && !defined holders_of('BIG'),
   'sold_out_holders: BIG null (the answer only counted its ' . ($CAP + 5) . ' holders)');
$r = reserve('BIG', 'local-big');
is($r->status, 200, 'local-big (in the holders filter) gets the hold back');
is(reservation($r), reservation($big), 'the same reservation');
is(evalsha_calls($t), $e0 + 2, 'through Redis');
$r = reserve('BIG', 'far-17');
is($r->status, 409, 'far-17, whose hold another node took, gets 409: the limit of the fallback');
is(evalsha_calls($t), $e0 + 2, 'from memory');
is(non_holders('BIG', 20), 20, '20 shoppers without a hold: 20 x 409');
is(evalsha_calls($t), $e0 + 2, 'from memory (the filter holds a handful of pairs)');

###########################################################################
# the status

my $z = zst($t, 'z');
is_deeply([ sort keys %{ $z->{sold_out_holders} } ], [ sort @{ $z->{sold_out_skus} } ],
          'sold_out_holders has one entry per SKU of sold_out_skus');
is_deeply($z->{sold_out_holders}, { A => 3, E => 1, CAP => $CAP, BIG => undef },
          "sold_out_holders {A: 3, E: 1, CAP: $CAP, BIG: null}");
is($z->{redis}{errors}, 0, 'redis.errors 0');

$t->finish;
