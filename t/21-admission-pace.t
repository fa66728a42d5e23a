# Admission pace: the watermark advances by rate per second, at most burst
# ahead, and waiting shoppers are let in as they retry.
# Field case: admission-rate-per-minute.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use FlashsaleTest;

my $t = FlashsaleTest->new;
$t->write_keys;
for my $l (qw(a b c d)) {
    $t->write_file("html/$l/item.html", "CONTENT-$l\n");
}

$t->run_nginx(<<'EOF');
flashsale_zone a:1m;
flashsale_zone b:1m;
flashsale_zone c:1m;
flashsale_zone d:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%% reuseport;
    root %%DIR%%/html;
    location /a/ { flashsale zone=a rate=60r/m burst=0; }
    location /b/ { flashsale zone=b rate=60r/m burst=2; }
    location /c/ { flashsale zone=c rate=20r/s; }
    location /d/ { flashsale zone=d rate=20r/s burst=10; }
    location = /flashsale_status { flashsale_status; }
}
EOF

# A quiet period long enough for every zone to fill its burst.
sleep_until($t->{started_at} + 3.2);

sub visitor { { path => $_[0], jar => FlashsaleTest::Jar->new,
                headers => [ Accept => 'application/json' ] } }

###########################################################################
# 60r/m: five new visitors at the same moment

my @A = map { visitor('/a/item.html') } 1 .. 5;
my @B = map { visitor('/b/item.html') } 1 .. 5;
my $t0 = time;
my @r = $t->parallel([ @A, @B ]);
my @ra = @r[0 .. 4];
my @rb = @r[5 .. 9];

my @adm_a = grep { $_->status == 200 } @ra;
my @wait_a = grep { $_->status == 429 } @ra;
is(scalar(@adm_a), 1, '60r/m burst=0: one of five simultaneous visitors is admitted at once');
is(scalar(@wait_a), 4, '60r/m burst=0: the other four wait');
is($adm_a[0] && $adm_a[0]->body, "CONTENT-a\n", 'the admitted one gets the content in the same request');
ok($adm_a[0] && $adm_a[0]->claims && $adm_a[0]->claims->{adm}, 'and a pass in its cookie');
is_deeply([ sort { $a <=> $b } map { $_->json->{position} } @wait_a ], [ 1, 2, 3, 4 ],
          '60r/m burst=0: the waiting four have positions 1..4');
is_deeply([ sort { $a <=> $b } map { $_->json->{eta} } @wait_a ], [ 1, 2, 3, 4 ],
          '60r/m burst=0: with ETAs 1..4 s');
is(scalar(grep { $_->json->{retry_after} == $_->json->{eta}
                 && $_->header('retry-after') == $_->json->{eta} } @wait_a), 4,
   'Retry-After equals the ETA for short waits');
is(scalar(grep { $_->json->{position} == $_->claims->{tkt} - 1 } @wait_a), 4,
   'position = ticket - 1 (the watermark is at 1)');

is(scalar(grep { $_->status == 200 } @rb), 3, '60r/m burst=2: three of five are admitted at once');
my @wait_b = grep { $_->status == 429 } @rb;
is_deeply([ sort { $a <=> $b } map { $_->json->{position} } @wait_b ], [ 1, 2 ],
          '60r/m burst=2: the other two have positions 1 and 2');
is_deeply([ sort { $a <=> $b } map { $_->json->{eta} } @wait_b ], [ 1, 2 ],
          '60r/m burst=2: with ETAs 1 and 2 s');

# The waiters retry every 100 ms; they are let in about one per second, in
# ticket order, and their position never gets worse.
my %client;
for my $i (0 .. 4) {
    next unless $ra[$i]->status == 429;
    $client{"a$i"} = { req => $A[$i], tkt => $ra[$i]->claims->{tkt},
                       pos => $ra[$i]->json->{position} };
}
for my $i (0 .. 4) {
    next unless $rb[$i]->status == 429;
    $client{"b$i"} = { req => $B[$i], tkt => $rb[$i]->claims->{tkt},
                       pos => $rb[$i]->json->{position} };
}
my $worse = 0;
my $changed = 0;
poll_until(8, sub {
    my @ids = grep { !defined $client{$_}{at} } sort keys %client;
    return 1 unless @ids;
    my @res = $t->parallel([ map { $client{$_}{req} } @ids ]);
    my $now = time - $t0;
    for my $k (0 .. $#ids) {
        my $c = $client{ $ids[$k] };
        my $x = $res[$k];
        if ($x->status == 200) {
            $c->{at} = $now;
            $c->{body} = $x->body;
        } elsif ($x->status == 429) {
            my $j = $x->json;
            $worse++ if $j->{position} > $c->{pos};
            $c->{pos} = $j->{position};
            my $cl = $c->{req}{jar}->get('flashsale');
            $changed++ if jwt_claims($cl)->{tkt} != $c->{tkt};
        } else {
            $c->{other} = $x->status;
        }
    }
    return 0;
}, 0.1);

my @late = grep { !defined $client{$_}{at} } keys %client;
is(scalar(@late), 0, 'every waiter is admitted within 8 s');
is($worse, 0, 'no waiter ever saw its position get worse');
is($changed, 0, 'no waiter ever lost its ticket number');
is(scalar(grep { defined $client{$_}{other} } keys %client), 0, 'waiters only ever saw 429 or 200');

my @ca = sort { $a->{tkt} <=> $b->{tkt} } map { $client{$_} } grep { /^a/ } keys %client;
for my $k (0 .. $#ca) {
    my $n = $k + 1;
    my $at = $ca[$k]{at} // 99;
    ok($at >= $n - 0.3 && $at <= $n + 0.6,
       sprintf('60r/m: ticket %d is admitted about %d s after the rush (at %.2f s)',
               $ca[$k]{tkt}, $n, $at));
}
is(scalar(grep { ($_->{body} // '') eq "CONTENT-a\n" } @ca), scalar(@ca),
   'each admitted waiter gets the content');
my @cb = sort { $a->{tkt} <=> $b->{tkt} } map { $client{$_} } grep { /^b/ } keys %client;
for my $k (0 .. $#cb) {
    my $n = $k + 1;
    my $at = $cb[$k]{at} // 99;
    ok($at >= $n - 0.3 && $at <= $n + 0.6,
       sprintf('60r/m burst=2: waiter %d is admitted about %d s after the rush (at %.2f s)',
               $n, $n, $at));
}

my $st = $t->status;
is($st->{a}{tickets_issued}, 5, 'status a: 5 tickets issued');
is($st->{a}{admitted}, 5, 'status a: all 5 admitted');
is($st->{a}{waiting}, 0, 'status a: nobody waiting');
is($st->{b}{admitted}, 5, 'status b: all 5 admitted');
like($t->get('/flashsale_status')->body, qr/"rate":1\.000\b/, 'status shows 60r/m as "rate":1.000');

###########################################################################
# 20r/s with and without burst: 100 visitors each hammer for a bounded window

my $N = 100;
my @C = map { visitor('/c/item.html') } 1 .. $N;
my @D = map { visitor('/d/item.html') } 1 .. $N;
my %done;
my $c_adm = 0;
my $d_adm = 0;
my $bad = 0;

my $s0 = time;
@r = $t->parallel([ @C, @D ], timeout => 20);
my $s1 = time;
for my $i (0 .. 2 * $N - 1) {
    my $st = $r[$i]->status;
    $bad++ unless $st == 200 || $st == 429;
    next unless $st == 200;
    $done{$i} = 1;
    $i < $N ? $c_adm++ : $d_adm++;
}
my $burst_c = $c_adm;
my $burst_d = $d_adm;
# W(t) = W0 + 20 * (t - t1), t1 = when the first ticket was issued (s0..s1)
cmp_ok($burst_c, '>=', 1, '20r/s burst=0: the first of 100 is admitted at once');
cmp_ok($burst_c, '<=', 1 + int(20 * ($s1 - $s0)) + 1,
       '20r/s burst=0: no more than the pace allows during the rush');
cmp_ok($burst_d, '>=', 11, '20r/s burst=10: eleven of 100 are admitted at once');
cmp_ok($burst_d, '<=', 11 + int(20 * ($s1 - $s0)) + 1,
       '20r/s burst=10: no more than burst + pace during the rush');

my ($ta, $tb);
my $window = 2.5;
while (1) {
    my $last = time - $s0 >= $window;
    my @ids = grep { !$done{$_} } 0 .. 2 * $N - 1;
    $ta = time;
    my @res = $t->parallel([ map { $_ < $N ? $C[$_] : $D[$_ - $N] } @ids ], timeout => 20);
    $tb = time;
    for my $k (0 .. $#ids) {
        my $st = $res[$k]->status;
        $bad++ unless $st == 200 || $st == 429;
        next unless $st == 200;
        $done{ $ids[$k] } = 1;
        $ids[$k] < $N ? $c_adm++ : $d_adm++;
    }
    last if $last;
    sleep 0.1;
}
is($bad, 0, 'every hammering request got 200 or 429');

my $lo_c = int(1 + 20 * ($ta - $s1)) - 1;
my $hi_c = int(1 + 20 * ($tb - $s0)) + 1;
ok($c_adm >= $lo_c && $c_adm <= $hi_c,
   sprintf('20r/s burst=0: %d admitted after %.2f s, expected %d..%d (1 + 20/s)',
           $c_adm, $tb - $s0, $lo_c, $hi_c));
my $lo_d = int(11 + 20 * ($ta - $s1)) - 1;
my $hi_d = int(11 + 20 * ($tb - $s0)) + 1;
ok($d_adm >= $lo_d && $d_adm <= $hi_d,
   sprintf('20r/s burst=10: %d admitted after %.2f s, expected %d..%d (11 + 20/s)',
           $d_adm, $tb - $s0, $lo_d, $hi_d));

$st = $t->status;
is($st->{c}{tickets_issued}, $N, "status c: $N tickets issued (retries reuse their ticket)");
is($st->{c}{admitted}, $c_adm, 'status c: admitted matches the passes handed out');
is($st->{d}{admitted}, $d_adm, 'status d: admitted matches the passes handed out');
# waiting = issued - floor(W); W may be a ticket or two past the last
# shopper who came back, never behind the passes handed out
ok($st->{c}{waiting} <= $N - $c_adm && $st->{c}{waiting} >= $N - $c_adm - 4,
   "status c: waiting = issued - watermark ($st->{c}{waiting}, admitted $c_adm of $N)");
like($t->get('/flashsale_status')->body, qr/"rate":20\.000\b/, 'status shows 20r/s as "rate":20.000');
is($st->{d}{burst}, 10, 'status d: burst 10');

$t->finish;
