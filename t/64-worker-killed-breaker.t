# Field case worker-killed (issue 4 part: reservations and the breaker).
# Steady, bounded load on a waiting-room location and a reservation
# location (zone z, real Redis); zone p has a breaker (watch=upstream,
# half_open=1, slow=100ms) that is tripped and left half-open with its one
# probe hanging in a slow store. kill -9 the worker that holds the probe:
# the master respawns it (new pid), /flashsale_status answers, the queue
# counters keep increasing, the probe slot is reclaimed (after
# max(10*slow, 1s)) so the breaker still closes, and nothing is oversold
# (stock + holds = initial stock, holds match the 200 answers).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(WNOHANG);
use FlashsaleTest;
use ReserveTest;
use FakeUpstream;
use BreakerTest;

my $STOCK = 2000;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/drop/item.html', "CONTENT\n");
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->start_redis;
my $store = FakeUpstream->new(status => 500, dir => $t->dir);

my $conf = <<'EOF';
flashsale_zone z:1m;
flashsale_zone p:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=1s;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/ { flashsale zone=z rate=200r/s burst=20; }
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /stock { flashsale_stock zone=z; }
    location /pdrop/ { flashsale zone=p rate=0r/s; }
    location /probe/ {
        flashsale zone=p;
        flashsale_breaker failures=50% window=5s min_calls=4 slow=100ms open=1s half_open=1 watch=upstream;
        proxy_set_header X-Worker $pid;
        proxy_read_timeout 60s;
        proxy_pass http://127.0.0.1:__STORE__;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF
$conf =~ s/__STORE__/$store->port/e;
$t->run_nginx($conf);

my $put = $t->http(method => 'PUT', path => "/stock?sku=A1&qty=$STOCK");
is($put->status, 200, "stock A1 = $STOCK") or diag($put->describe);

# ---- the load: 2 clients, each a waiting-room visit and a reservation
# every ~10 ms, until told to stop (bounded at 30 s)
my $stop = $t->path('stop-load');
my @load;
for my $c (1 .. 2) {
    my $file = $t->path("load-$c.out");
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open my $out, '>', $file or POSIX::_exit(1);
        select((select($out), $| = 1)[0]);
        my $deadline = time + 30;
        my $i = 0;
        while (!-e $stop && time < $deadline) {
            $i++;
            my $w = $t->get('/drop/item.html', timeout => 5);
            printf $out "drop %d %.3f\n", $w->status, time;
            my $r = $t->get('/cart/add?sku=A1&qty=1',
                            Authorization => bearer($t, "load$c-$i"),
                            Accept => 'application/json', timeout => 5);
            printf $out "reserve %d %.3f %s\n", $r->status, time, "load$c-$i";
            sleep 0.01;
        }
        close $out;
        POSIX::_exit(0);
    }
    push @load, [$pid, $file];
}

sub load_lines {
    my @l;
    for my $f (map { $_->[1] } @load) {
        open my $fh, '<', $f or next;
        push @l, map { chomp; [ split / / ] } <$fh>;
        close $fh;
    }
    return @l;
}

ok(poll_until(10, sub { scalar(grep { $_->[0] eq 'reserve' } load_lines()) >= 20 }),
   'the load is running (20 reservations answered)');

# ---- zone p: trip the breaker, then hang its one probe in a slow store
for (1 .. 4) { reserve_as($t, "/probe/fail", zone => 'p') }
my $pz = zst($t, 'p');
is($pz->{breaker}{state}, 'open', 'zone p: 4 store 500s open the breaker');
is($pz->{breaker}{trips}, 1, 'zone p: trips 1');

$store->set(status => 200, delay => 30);
ok(wait_state($t, 'p', 'half_open', 5), 'zone p: half_open after open=1s');
my $hits0 = $store->hits;
my $probe = open_request(port => $t->port, path => '/probe/hang',
    headers => [ Authorization => bearer($t, shopper(), zone => 'p'),
                 Accept => 'application/json' ]);
my $probe_t0 = time;
my ($rec) = poll_until(5, sub {
    my @r = $store->records;
    return @r > $hits0 ? $r[-1] : undef;
});
ok($rec && $rec->{path} eq '/probe/hang', 'the probe reached the slow store');
my $holder = $rec ? $rec->{worker} : undef;
ok($holder && grep({ $_ == $holder } $t->worker_pids), "worker $holder holds the probe slot");

my $r = reserve_as($t, '/probe/other', zone => 'p');
is($r->status, 503, 'the only probe slot is taken: the next shopper gets 503');
is($r->header('Retry-After'), '1', 'with Retry-After: 1');

# ---- kill -9 the worker holding the probe, under load
my $before = zst($t, 'z');
my $kill_t = time;
my ($killed, @new) = $t->kill_worker($holder);
is($killed, $holder, "worker $holder killed with -9");
is(scalar(@new), 2, 'the master respawns it: 2 workers again');
ok(!grep({ $_ == $holder } @new), 'the dead pid is gone; new pids ' . join(',', @new));

my $pa = read_response($probe, 5);
is($pa->{status}, 0, "the hanging probe's connection died with its worker");

my $st = $t->get('/flashsale_status');
is($st->status, 200, '/flashsale_status answers after the respawn');
my $z;
ok(poll_until(10, sub {
    $z = zst($t, 'z');
    ($z->{tickets_issued} // 0) > $before->{tickets_issued}
        && ($z->{admitted} // 0) > $before->{admitted}
        && ($z->{reservations}{reserved} // 0) > $before->{reservations}{reserved}
}), 'tickets_issued, admitted and reserved keep increasing after the kill')
    or diag(explain([$before, $z]));

# ---- the probe slot of the dead worker is reclaimed
$store->set(status => 200, delay => 0);
my ($closed_at, @pr);
poll_until(8, sub {
    my $x = reserve_as($t, '/probe/again', zone => 'p');
    push @pr, [ time - $probe_t0, $x->status ];
    if (zst($t, 'p')->{breaker}{state} eq 'closed') { $closed_at = time; return 1 }
    return 0;
}, 0.1);
ok($closed_at, 'zone p: a new probe got through and the breaker closed')
    or diag(join ' ', map { sprintf '%.2f:%d', @$_ } @pr);
my ($first_ok) = grep { $_->[1] == 200 } @pr;
ok($first_ok && $first_ok->[0] >= 0.95,
   sprintf('the slot was reclaimed no sooner than 1 s after the probe started (%.2f s)',
           $first_ok ? $first_ok->[0] : -1));
cmp_ok($closed_at - $probe_t0, '<', 5, 'and not much later (the breaker is not stuck)')
    if $closed_at;
$pz = zst($t, 'p');
is($pz->{breaker}{trips}, 1, 'zone p: trips still 1 (a dead probe is not a failure)');

# let the load run a little past the respawn, then stop it
ok(poll_until(10, sub {
    scalar(grep { $_->[0] eq 'reserve' && $_->[2] > $kill_t + 0.5 && $_->[1] == 200 } load_lines()) >= 10
}), 'reservations keep succeeding after the respawn');
$t->write_file('stop-load', '');
for my $l (@load) {
    my $done = poll_until(10, sub { waitpid($l->[0], WNOHANG) == $l->[0] });
    ok($done, "load client $l->[0] stopped");
    kill 'KILL', $l->[0] unless $done;
}

my @lines = load_lines();
my @drop = grep { $_->[0] eq 'drop' } @lines;
my @res = grep { $_->[0] eq 'reserve' } @lines;
my %ds; $ds{ $_->[1] }++ for @drop;
my %rs; $rs{ $_->[1] }++ for @res;
note('waiting room: ' . join(', ', map { "$_ x$ds{$_}" } sort keys %ds));
note('reservations: ' . join(', ', map { "$_ x$rs{$_}" } sort keys %rs));
is(scalar(grep { $_ != 200 && $_ != 0 } keys %ds), 0, 'waiting room: every answer is 200');
is(scalar(grep { $_ != 200 && $_ != 0 } keys %rs), 0, 'reservations: every answer is 200 (stock not exhausted)');
cmp_ok(($ds{0} // 0) + ($rs{0} // 0), '<=', 2,
       'at most the requests in flight on the killed worker lost their answer');

# ---- no oversell
my $g = $t->get('/stock?sku=A1');
my $sj = $g->json // {};
is($sj->{stock} + $sj->{holds}, $STOCK, "no oversell: stock $sj->{stock} + holds $sj->{holds} = $STOCK");
my $ok200 = $rs{200} // 0;
cmp_ok($sj->{holds}, '>=', $ok200, "holds >= the $ok200 answered 200s");
cmp_ok($sj->{holds}, '<=', $ok200 + ($rs{0} // 0), 'holds <= 200s + lost answers');
is(cli($t, 'HLEN', qty_key('z', 'A1')), $sj->{holds}, 'Redis: one qty entry per hold');

$store->stop;
$t->finish(allow_5xx => 1);
