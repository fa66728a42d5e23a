# A latch that knows its SKU's holders sends nobody else to Redis, however
# full the holders filter is.
#
# flashsale_zone z:32k has the smallest holders filter: 4 KB, m = 32 768
# bits, 2 bits per (visitor, SKU) pair of a hold taken through this node.
# After n = 24 576 such holds (0.75 m, all on SKU FILL) a fraction
# 1 - e^(-2n/m) = 1 - e^(-1.5) = 0.777 of its bits is set, and a pair that
# never held answers "maybe" with probability 0.777^2 = 0.60.
#  - the filter is shown to be saturated: with SKU BIG latched by an answer
#    that only counted its holders (more than 4096: the latch falls back on
#    the filter), 200 shoppers who hold nothing send more than 30% of their
#    requests to Redis (about 60% expected);
#  - SKU S, latched by an answer that listed its 3 holders (2 through this
#    node, 1 through another): 200 shoppers who hold nothing get 409 sold
#    out with 0 Redis commands (INFO commandstats, every command counted)
#    and reservations.sold_out +200; its 3 holders still reach Redis and
#    get their own holds back; stock and holds in Redis unchanged.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use FlashsaleTest;
use ReserveTest;
use BreakerTest;

my $FILL = 24_576;
my $N = 200;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->start_redis;

$t->run_nginx(<<'EOF');
flashsale_zone z:32k;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=3s pool=16;
server {
    listen 127.0.0.1:%%PORT%%;
    keepalive_requests 100000;
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
sub reserve { my ($sku, $who) = @_; reserve_req($t, "/cart/add?sku=$sku&qty=1", $who) }
sub reservation { $_[0]->header('x-reservation') // '' }

# $n requests for $sku from shoppers who never held anything, over
# keep-alive connections: the statuses and bodies
sub non_holders {
    my ($sku, $n) = @_;
    my @reqs = map {
        "GET /cart/add?sku=$sku&qty=1 HTTP/1.1\r\nHost: localhost\r\n"
        . "Accept: application/json\r\nAuthorization: " . bearer($t, shopper())
        . "\r\n\r\n"
    } 1 .. $n;
    return load_run(port => $t->port, reqs => \@reqs, procs => 2, conns => 8,
                    timeout => 30, dir => $t->dir);
}
sub sold_out_count {
    my ($sku, @res) = @_;
    return scalar grep {
        my $j = json_decode($_->[2]);
        $_->[0] == 409 && ref $j eq 'HASH' && ($j->{state} // '') eq 'sold_out'
            && ($j->{sku} // '') eq $sku
    } @res;
}

###########################################################################
# fill the holders filter: 24 576 holds of FILL through this node

my $t0 = time;
is(put_stock('FILL', 1_000_000), 200, 'FILL: stock 1000000');
my @reqs = map {
    "GET /cart/add?sku=FILL&qty=1 HTTP/1.1\r\nHost: localhost\r\n"
    . "Accept: application/json\r\nAuthorization: "
    . bearer($t, sprintf('filler-%05d', $_)) . "\r\n\r\n"
} 1 .. $FILL;
my @res = load_run(port => $t->port, reqs => \@reqs, procs => 4, conns => 16,
                   timeout => 60, dir => $t->dir);
is(scalar(grep { $_->[0] == 200 } @res), $FILL, "$FILL distinct shoppers reserve FILL: all 200");
is(zst($t, 'z')->{reservations}{reserved}, $FILL, "reservations.reserved $FILL");
is(cli($t, 'ZCARD', holds_key('z', 'FILL')), $FILL, "$FILL holds of FILL in Redis");
note(sprintf 'filled in %.1f s', time - $t0);

###########################################################################
# S: 3 holders, latched with them

is(put_stock('S', 3), 200, 'S: stock 3');
my %mine;
for my $who ('s-holder-1', 's-holder-2') {
    my $r = reserve('S', $who);
    is($r->status, 200, "$who reserves S through this node") or diag($r->describe);
    $mine{$who} = reservation($r);
}
my $other = script_call($t, sku => 'S', visitor => 's-holder-3');
is(ref $other eq 'ARRAY' && $other->[0], 3, 's-holder-3 reserves S through another node (EVAL)');
$mine{'s-holder-3'} = "sku=S&qty=1&visitor=s-holder-3&expires=$other->[2]";
is(cli($t, 'GET', stock_key('z', 'S')), 0, 'S: stock 0');

my $e0 = evalsha_calls($t);
is(reserve('S', shopper())->status, 409, 'a shopper without a hold: 409');
is(evalsha_calls($t), $e0 + 1, 'from Redis: S is latched');
is(zst($t, 'z')->{sold_out_holders}{S}, 3, 'with its 3 holders (sold_out_holders)');

###########################################################################
# BIG: more holders than the cap, latched without them

is(put_stock('BIG', 0), 200, 'BIG: stock 0');
is(add_holds($t, 'BIG', 'big-', 4100, 600_000), 4100, '4100 holds of BIG through other nodes');
$e0 = evalsha_calls($t);
is(reserve('BIG', shopper())->status, 409, 'a shopper without a hold: 409 (from Redis)');
my $z = zst($t, 'z');
ok(exists $z->{sold_out_holders}{BIG} && !defined $z->{sold_out_holders}{BIG},
   'BIG latched, holders not known (sold_out_holders null): the filter decides');

###########################################################################
# the filter is saturated: most non-holders of BIG go to Redis

$e0 = evalsha_calls($t);
@res = non_holders('BIG', $N);
my $through = evalsha_calls($t) - $e0;
is(sold_out_count('BIG', @res), $N, "$N shoppers without a hold of BIG: $N x 409");
note(sprintf '%d of %d (%.0f%%) passed the filter to Redis (60%% expected)',
     $through, $N, 100 * $through / $N);
cmp_ok($through, '>', 0.3 * $N, 'the filter is saturated: over 30% of them went to Redis');

###########################################################################
# S: none of the non-holders reaches Redis

my $so = zst($t, 'z')->{reservations}{sold_out};
my $calls = zst($t, 'z')->{redis}{calls};
my $c0 = redis_commands($t);
@res = non_holders('S', $N);
is(sold_out_count('S', @res), $N, "$N shoppers without a hold of S: $N x 409 sold out S");
is(redis_commands($t), $c0, 'Redis ran no command for them (INFO commandstats)');
$z = zst($t, 'z');
is($z->{redis}{calls}, $calls, 'redis.calls unchanged');
is($z->{reservations}{sold_out}, $so + $N, "reservations.sold_out +$N");

###########################################################################
# S: its holders still reach Redis and keep their holds

$e0 = evalsha_calls($t);
for my $who (sort keys %mine) {
    my $r = reserve('S', $who);
    is($r->status, 200, "$who asks again: 200") or diag($r->describe);
    is(reservation($r), $mine{$who}, "$who: the same hold");
}
is(evalsha_calls($t), $e0 + 3, 'three EVALSHA, one per holder');
is(cli($t, 'GET', stock_key('z', 'S')), 0, 'S: stock still 0');
is(cli($t, 'ZCARD', holds_key('z', 'S')), 3, 'S: still 3 holds');
is(zst($t, 'z')->{sold_out_holders}{S}, 3, 'S: still latched with 3 holders');

$t->finish;
