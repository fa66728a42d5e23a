# Holds (issue 3): an idempotent retry returns the same hold, a short hold
# expires back into stock, the back end releases (stock back) or confirms
# (stock kept) a hold, and a flushed script cache (NOSCRIPT) is recovered.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
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
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty hold=10m;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /cart/quick {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty hold=1s;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /cart/ns {
        flashsale zone=z;
        flashsale_redis 127.0.0.1:%%REDIS_PORT%% db=1 pool=1 timeout=2s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /release { flashsale_release; }
    location = /confirm { flashsale_confirm; }
    location = /stock   { flashsale_stock; }
    location = /flashsale_status { flashsale_status; }
}
EOF

sub redis_now_ms {
    my ($s, $us) = split /\n/, cli($t, 'TIME');
    return $s * 1000 + int($us / 1000);
}

sub stock_of {
    my ($sku) = @_;
    my $r = $t->get("/stock?sku=$sku");
    return $r->status == 200 ? $r->json : { status => $r->status, body => $r->body };
}

sub expires_of {
    my ($res) = @_;
    my ($e) = ($res->header('x-reservation') // '') =~ /&expires=(\d+)$/;
    return $e;
}

###########################################################################
# idempotent retry

cli($t, 'SET', stock_key('z', 'I1'), 10);
my $s0 = zone_stats($t);

my $a = reserve_req($t, '/cart/add?sku=I1&qty=1', 'idem-1');
is($a->status, 200, 'first reservation: 200') or diag($a->describe);
my $now = redis_now_ms();
like($a->header('x-reservation') // '', qr/^sku=I1&qty=1&visitor=idem-1&expires=\d+$/,
     'X-Reservation: sku=I1&qty=1&visitor=idem-1&expires=<ms>');
my $exp = expires_of($a) // 0;
cmp_ok(abs($exp - ($now + 600_000)), '<', 5000,
       'expires is Redis time + hold (10m) in ms');
is(cli($t, 'ZSCORE', holds_key('z', 'I1'), 'idem-1'), $exp, 'the holds zset scores the shopper with that expiry');
is(cli($t, 'HGET', qty_key('z', 'I1'), 'idem-1'), '1', 'the qty hash holds qty 1');

my $b = reserve_req($t, '/cart/add?sku=I1&qty=1', 'idem-1');
is($b->status, 200, 'the same shopper again: 200');
is($b->header('x-reservation'), $a->header('x-reservation'), 'the same reservation, same expires');
is(cli($t, 'GET', stock_key('z', 'I1')), '9', 'stock decremented once (10 -> 9)');

my $c = reserve_req($t, '/cart/add?sku=I1&qty=3', 'idem-1');
is($c->status, 200, 'a retry with another qty: 200');
is($c->header('x-reservation'), $a->header('x-reservation'), 'still the existing hold (qty 1, same expires)');
is(cli($t, 'GET', stock_key('z', 'I1')), '9', 'stock unchanged');

my @dup = $t->parallel([ map {
    { path => '/cart/add?sku=I1&qty=1', headers => [ pass_headers($t, 'idem-2') ] }
} 1 .. 8 ]);
is(scalar(grep { $_->status == 200 } @dup), 8, '8 concurrent retries of one new shopper: all 200');
my %hdr = map { ($_->header('x-reservation') // '') => 1 } @dup;
is(scalar(keys %hdr), 1, 'all with the same reservation');
is(cli($t, 'GET', stock_key('z', 'I1')), '8', 'stock decremented once for them (9 -> 8)');
is(cli($t, 'ZCARD', holds_key('z', 'I1')), '2', 'two holds, one per shopper');

my $s1 = zone_stats($t);
is($s1->{reservations}{reserved} - $s0->{reservations}{reserved}, 2,
   'status reservations.reserved counts 2 new holds, not the retries');

# The shopper who took the last unit retries (a double click, a lost
# answer) after someone else found the SKU sold out: SPEC "one live hold per
# shopper and SKU (a retry returns the same hold)", behaviour3 "the shopper's
# existing live hold = idempotent retry". The sold-out latch (default 5s) is
# on in this location.
cli($t, 'SET', stock_key('z', 'L1'), 1);
my $lw = reserve_req($t, '/cart/add?sku=L1&qty=1', 'last-unit');
is($lw->status, 200, 'the last unit of L1 is reserved');
my $ll = reserve_req($t, '/cart/add?sku=L1&qty=1', 'too-late');
is($ll->status, 409, 'the next shopper finds L1 sold out');
my $lr = reserve_req($t, '/cart/add?sku=L1&qty=1', 'last-unit');
is($lr->status, 200, 'the holder retrying right after gets 200, not the sold-out answer')
    or diag($lr->describe);
is($lr->header('x-reservation') // '', $lw->header('x-reservation'),
   'with the same reservation (same expires)');
is(cli($t, 'ZSCORE', holds_key('z', 'L1'), 'last-unit'), expires_of($lw) // '',
   'Redis still holds the unit for that shopper');

###########################################################################
# hold expiry returns stock

cli($t, 'SET', stock_key('z', 'E1'), 5);
my $q = reserve_req($t, '/cart/quick?sku=E1&qty=2', 'quick-1');
is($q->status, 200, 'hold=1s: reserved') or diag($q->describe);
my $qnow = redis_now_ms();
my $qexp = expires_of($q) // 0;
cmp_ok($qexp - $qnow, '<=', 1000, 'expires at most 1 s ahead');
cmp_ok($qexp - $qnow, '>', 0, 'and in the future');
is_deeply(stock_of('E1'), { sku => 'E1', stock => 3, holds => 1 }, 'GET /stock: stock 3, 1 hold');

my $t0 = time;
my $back = poll_until(5, sub {
    my $s = stock_of('E1');
    return ($s->{stock} // -1) == 5 && ($s->{holds} // -1) == 0;
}, 0.1);
ok($back, 'the expired hold went back to stock: GET /stock shows stock 5, 0 holds')
    or diag(explain(stock_of('E1')));
my $took = time - $t0;
cmp_ok($took, '<', 3, sprintf('within 3 s of reserving (%.1f s)', $took));
is(cli($t, 'GET', stock_key('z', 'E1')), '5', 'the stock key is 5 again');
is(cli($t, 'HEXISTS', qty_key('z', 'E1'), 'quick-1'), '0', 'the qty entry is gone');

my $q2 = reserve_req($t, '/cart/quick?sku=E1&qty=1', 'quick-1');
is($q2->status, 200, 'the same shopper may reserve again after expiry');
cmp_ok(expires_of($q2) // 0, '>', $qexp, 'a new hold with a later expiry');
is(cli($t, 'GET', stock_key('z', 'E1')), '4', 'stock 4');

# an expired hold is reclaimed by a reservation of someone else too
sleep 1.2;
my $q3 = reserve_req($t, '/cart/add?sku=E1&qty=5', 'quick-2');
is($q3->status, 200, 'after expiry, the whole stock of 5 is available again');
is(cli($t, 'GET', stock_key('z', 'E1')), '0', 'stock 0');

###########################################################################
# release and confirm

cli($t, 'SET', stock_key('z', 'R1'), 10);
my $r1 = reserve_req($t, '/cart/add?sku=R1&qty=1', 'rel-1');
is($r1->status, 200, 'rel-1 reserved');
is(cli($t, 'GET', stock_key('z', 'R1')), '9', 'stock 9');

my $s2 = zone_stats($t);
my $rel = $t->http(method => 'POST', path => '/release?sku=R1&visitor=rel-1');
is($rel->status, 200, 'POST /release: 200') or diag($rel->describe);
is_deeply($rel->json, { sku => 'R1', visitor => 'rel-1', released => 1 },
          'body {"sku":"R1","visitor":"rel-1","released":1}') or diag($rel->body);
is(cli($t, 'GET', stock_key('z', 'R1')), '10', 'release: the stock is back (10)');
is(cli($t, 'ZSCORE', holds_key('z', 'R1'), 'rel-1'), '', 'release: the hold is gone');
is(cli($t, 'HEXISTS', qty_key('z', 'R1'), 'rel-1'), '0', 'release: the qty entry is gone');

my $rel2 = $t->http(method => 'POST', path => '/release?sku=R1&visitor=rel-1');
is($rel2->status, 404, 'a second release: 404');
is_deeply($rel2->json, { error => 'no live hold for this visitor and sku' },
          'body {"error":"no live hold for this visitor and sku"}') or diag($rel2->body);
is(cli($t, 'GET', stock_key('z', 'R1')), '10', 'stock not returned twice');

my $rg = $t->http(method => 'GET', path => '/release?sku=R1&visitor=rel-1');
is($rg->status, 405, 'GET /release: 405');

my $c1 = reserve_req($t, '/cart/add?sku=R1&qty=1', 'con-1');
is($c1->status, 200, 'con-1 reserved');
is(cli($t, 'GET', stock_key('z', 'R1')), '9', 'stock 9');
my $con = $t->http(method => 'POST', path => '/confirm?sku=R1&visitor=con-1');
is($con->status, 200, 'POST /confirm: 200') or diag($con->describe);
is_deeply($con->json, { sku => 'R1', visitor => 'con-1', confirmed => 1 },
          'body {"sku":"R1","visitor":"con-1","confirmed":1}') or diag($con->body);
is(cli($t, 'GET', stock_key('z', 'R1')), '9', 'confirm: the stock is NOT returned (9)');
is(cli($t, 'ZCARD', holds_key('z', 'R1')), '0', 'confirm: the hold is gone');
is(cli($t, 'HLEN', qty_key('z', 'R1')), '0', 'confirm: the qty entry is gone');

my $con2 = $t->http(method => 'POST', path => '/confirm?sku=R1&visitor=con-1');
is($con2->status, 404, 'a second confirm: 404');
is_deeply($con2->json, { error => 'no live hold for this visitor and sku' },
          'body {"error":"no live hold for this visitor and sku"}') or diag($con2->body);
my $cg = $t->http(method => 'GET', path => '/confirm?sku=R1&visitor=con-1');
is($cg->status, 405, 'GET /confirm: 405');
is($t->http(method => 'PUT', path => '/confirm?sku=R1&visitor=con-1')->status, 405,
   'PUT /confirm: 405');

my $s3 = zone_stats($t);
is($s3->{reservations}{released} - $s2->{reservations}{released}, 1, 'status reservations.released +1');
is($s3->{reservations}{confirmed} - $s2->{reservations}{confirmed}, 1, 'status reservations.confirmed +1');

# an expired hold can be neither released nor confirmed
cli($t, 'SET', stock_key('z', 'R2'), 3);
is(reserve_req($t, '/cart/quick?sku=R2&qty=1', 'late-1')->status, 200, 'late-1 reserved for 1 s');
sleep 1.3;
my $late = $t->http(method => 'POST', path => '/confirm?sku=R2&visitor=late-1');
is($late->status, 404, 'confirming an expired hold: 404');
is(cli($t, 'GET', stock_key('z', 'R2')), '3', 'the expired hold went back to stock, once');

# unknown SKU and bad parameters on the back end
my $ru = $t->http(method => 'POST', path => '/release?sku=NOPE&visitor=rel-1');
is($ru->status, 404, 'release on an unknown SKU: 404');
is_deeply($ru->json, { error => 'unknown sku' }, 'body {"error":"unknown sku"}') or diag($ru->body);
for my $p ('/release?sku=R1', '/release?sku=R1&visitor=', '/release?sku=R1&visitor=a%20b',
           '/release?sku=a/b&visitor=rel-1', '/release?visitor=rel-1',
           '/confirm?sku=R1&visitor=x.y', '/confirm?sku=' . ('x' x 65) . '&visitor=v')
{
    my $r = $t->http(method => 'POST', path => $p);
    is($r->status, 400, "POST $p: 400");
    ok(ref $r->json eq 'HASH' && defined $r->json->{error}, "POST $p: JSON error") or diag($r->body);
}

###########################################################################
# NOSCRIPT: the script cache is flushed under nginx's feet

# /cart/ns has pool=1 and db=1: one connection per worker, told apart from
# the other locations' connections by their db in CLIENT LIST
my $db1 = { port => $t->redis_port, n => 1 };
cli($db1, 'SET', stock_key('z', 'N1'), 100);
my $warm = 0;
my $both = poll_until(10, sub {
    $warm++;
    reserve_req($t, '/cart/ns?sku=N1&qty=1', "ns-warm-$warm")->status == 200 or return 0;
    my @c = grep { / db=1 / } split /\n/, cli($t, 'CLIENT', 'LIST');
    return @c == 2;
}, 0.01);
ok($both, "both workers hold their one db=1 connection (after $warm reservations)");
like(cli($t, 'INFO', 'memory'), qr/number_of_cached_scripts:1\b/, 'Redis caches one script');

is(cli($t, 'SCRIPT', 'FLUSH'), 'OK', 'SCRIPT FLUSH');
like(cli($t, 'INFO', 'memory'), qr/number_of_cached_scripts:0\b/, 'no script cached now');
my $cs0 = commandstats($t);
my $ns = reserve_req($t, '/cart/ns?sku=N1&qty=1', 'ns-1');
is($ns->status, 200, 'after SCRIPT FLUSH a reservation on an open connection still succeeds (200)')
    or diag($ns->describe);
like($ns->header('x-reservation') // '', qr/^sku=N1&qty=1&visitor=ns-1&/, 'with its reservation');
my $cs1 = commandstats($t);
is(($cs1->{evalsha}{calls} // 0) - ($cs0->{evalsha}{calls} // 0), 2,
   'EVALSHA twice: NOSCRIPT, then again after loading');
is(($cs1->{evalsha}{failed_calls} // 0) - ($cs0->{evalsha}{failed_calls} // 0), 1,
   'one of them failed (NOSCRIPT)');
is(($cs1->{'script|load'}{calls} // 0) - ($cs0->{'script|load'}{calls} // 0), 1,
   'SCRIPT LOAD sent once more');
like(cli($t, 'INFO', 'memory'), qr/number_of_cached_scripts:1\b/, 'the script is cached again');
is(cli($db1, 'GET', stock_key('z', 'N1')), 100 - $warm - 1, 'stock decremented once per shopper');
is(scalar(grep { / db=1 / } split /\n/, cli($t, 'CLIENT', 'LIST')), 2,
   'still the same two db=1 connections');

# every pooled connection meets NOSCRIPT after a flush
cli($t, 'SCRIPT', 'FLUSH');
my @ns = $t->parallel([ map {
    { path => '/cart/ns?sku=N1&qty=1', headers => [ pass_headers($t, "ns-many-$_") ] }
} 1 .. 20 ]);
is(scalar(grep { $_->status == 200 } @ns), 20, '20 concurrent reservations after another flush: all 200');
is(cli($db1, 'GET', stock_key('z', 'N1')), 100 - $warm - 1 - 20, 'stock decremented by 20');
is(cli($db1, 'ZCARD', holds_key('z', 'N1')), $warm + 1 + 20, 'one hold per shopper');

my $s4 = zone_stats($t);
is($s4->{reservations}{errors}, 0, 'status reservations.errors = 0 (NOSCRIPT is not an error)');
is($s4->{redis}{errors}, 0, 'status redis.errors = 0');

# An expired hold behind more than a reclaim batch (100) of other expired
# holds is still expired: release and confirm answer 404 and give it back,
# and a stock read counts live holds only.  (Last: add_holds() caches a
# script of its own, and the NOSCRIPT tests above count scripts.)
cli($t, 'SET', stock_key('z', 'R3'), 0);
add_holds($t, 'R3', 'old', 150, -120000);     # ended 2 minutes ago
add_holds($t, 'R3', 'victim', 2, -60000);     # ended a minute ago
add_holds($t, 'R3', 'live', 3, 600000);       # ten minutes to go
my $vc = $t->http(method => 'POST', path => '/confirm?sku=R3&visitor=victim1');
is($vc->status, 404, 'confirming an expired hold behind 150 others: 404') or diag($vc->body);
is(cli($t, 'GET', stock_key('z', 'R3')), '101',
   'a batch of 100 and the expired hold itself went back to stock');
is(cli($t, 'ZSCORE', holds_key('z', 'R3'), 'victim1'), '', 'the expired hold is gone');
my $vr = $t->http(method => 'POST', path => '/release?sku=R3&visitor=victim2');
is($vr->status, 404, 'releasing an expired hold behind 50 others: 404') or diag($vr->body);
is(cli($t, 'GET', stock_key('z', 'R3')), '152', 'the other 50 and victim2 back: 152');
cli($t, 'SET', stock_key('z', 'R4'), 0);
add_holds($t, 'R4', 'old', 150, -120000);
add_holds($t, 'R4', 'live', 3, 600000);
is_deeply(stock_of('R4'), { sku => 'R4', stock => 100, holds => 3 },
          'stock read: 100 back in this batch, 3 live holds (not the 50 expired ones left)');
is(cli($t, 'ZCARD', holds_key('z', 'R4')), '53', 'Redis: the 50 expired past the batch are still there');

$t->finish;
