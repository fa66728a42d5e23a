# A worker killed with -9 under load: the master respawns it, the status
# answers, and the queue counters keep moving (nothing stuck).
# Field case: worker-killed (the waiting-room part).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(WNOHANG);
use FlashsaleTest;

my $wrk = -x '/usr/bin/wrk' ? '/usr/bin/wrk' : undef;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/drop/item.html', "CONTENT\n");

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%% reuseport;
    root %%DIR%%/html;
    location /drop/ { flashsale zone=z rate=50r/s; }
    location = /flashsale_status { flashsale_status; }
}
EOF

my $before = $t->status->{z}{tickets_issued};

# steady load from wrk (or from our own parallel requests without it)
my $load;
if ($wrk) {
    $load = fork // die "fork: $!";
    if (!$load) {
        open STDOUT, '>', $t->dir . '/wrk.out';
        open STDERR, '>&', \*STDOUT;
        { no warnings "exec"; exec $wrk, '-t1', '-c16', '-d3s', 'http://127.0.0.1:' . $t->port . '/drop/item.html'; }
        POSIX::_exit(127);
    }
    sleep 0.5;
} else {
    $t->parallel([ map { { path => '/drop/item.html' } } 1 .. 100 ]);
}

my ($killed, @new) = $t->kill_worker;
ok($killed, "worker $killed killed with -9 under load");
is(scalar(@new), 2, 'the master brings the worker count back to 2');

if ($load) {
    my $done = poll_until(10, sub { waitpid($load, WNOHANG) == $load });
    ok($done, 'the load generator finished');
    kill 'KILL', $load unless $done;
}

my $mid = $t->status->{z};
ok(defined $mid->{tickets_issued}, 'the status answers after the respawn');
cmp_ok($mid->{tickets_issued}, '>', $before, 'tickets were issued under load');

# every worker still takes new shoppers: the shared lock is not stuck
my @r = $t->parallel([ map { { path => '/drop/item.html', headers => [ Accept => 'application/json' ] } } 1 .. 40 ],
                     timeout => 10);
is(scalar(grep { $_->status == 200 || $_->status == 429 } @r), 40,
   'forty new shoppers after the respawn all get an answer');
my @tkt = sort { $a <=> $b } map { ($_->claims // {})->{tkt} // 0 } @r;
my %u = map { $_ => 1 } @tkt;
is(scalar(keys %u), 40, 'with forty distinct tickets');
cmp_ok($tkt[0], '>', $mid->{tickets_issued} - 1, 'numbered after the ones before');
is($t->status->{z}{tickets_issued}, $mid->{tickets_issued} + 40, 'and counted in the status');

$t->finish;
