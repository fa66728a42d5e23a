# Fault injection (issue 7): a short sale under load from a pool of Perl
# clients, each reservation by an admitted shopper of its own (a forged
# pass), while one fault at a time hits the system:
#
#   kill -9 a worker, nginx -s reload (HUP), Redis stopped and started again,
#   a slow Redis (DEBUG SLEEP 0.3 with timeout=250ms), SCRIPT FLUSH,
#   CLIENT KILL TYPE normal
#
# After each fault the clients stop, every shopper whose answer was lost
# or was a 503 asks again (same pass, SKU and qty: a live hold is returned,
# never taken twice) until the answer is a 200 or a 409, and then the
# accounting must be exact for both SKUs (one that cannot sell out, one
# that does):
#
#   holds (zset) == qty hash fields == the shoppers answered 200
#   each hold's qty == what that shopper asked for
#   stock + sum(qty) == initial stock, stock >= 0 (no oversell)
#
# and no answer was a 500 (or any 5xx but 503), and error.log has no
# [alert], [crit], [emerg] nor "exited on signal" but the worker killed
# on purpose. Redis runs with an append-only file (fsync always) so that
# stopping it loses nothing.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(WNOHANG);
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);
use FlashsaleTest;
use ReserveTest qw(cli stock_key holds_key qty_key);

my $t = FlashsaleTest->new(workers => 2);
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");

my @REDIS_ARGS = ('--appendonly', 'yes', '--appendfsync', 'always',
                  '--enable-debug-command', 'local');
$t->start_redis(@REDIS_ARGS);

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=250ms connect_timeout=200ms pool=4;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty hold=10m;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF

# BIG never sells out; SMALL does, early on
my %INITIAL = (BIG => 1_000_000, SMALL => 60);
cli($t, 'SET', stock_key('z', $_), $INITIAL{$_}) for keys %INITIAL;

my $CLIENTS = 4;
my $PORT = $t->port;
my $DIR = $t->dir;

# every shopper ever sent: sub => { sku, qty, token, status (last) }
my %shopper;
my %seen_status;        # status => count, over every answer

###########################################################################
# the client pool

sub request {
    my ($s) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $PORT,
                                      Proto => 'tcp', Timeout => 3)
        or return 0;
    my $req = "GET /cart/add?sku=$s->{sku}&qty=$s->{qty} HTTP/1.1\r\n"
            . "Host: localhost\r\nAccept: application/json\r\n"
            . "Authorization: Bearer $s->{token}\r\nConnection: close\r\n\r\n";
    local $SIG{PIPE} = 'IGNORE';
    my $ok = eval {
        my $off = 0;
        while ($off < length $req) {
            my $n = syswrite($sock, $req, length($req) - $off, $off);
            die "write\n" unless defined $n;
            $off += $n;
        }
        1;
    };
    my $buf = '';
    my $sel = IO::Select->new($sock);
    my $deadline = time + 5;
    while ($ok) {
        my $left = $deadline - time;
        last if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($sock, $buf, 65536, length $buf);
        last unless $n;
    }
    close $sock;
    return $buf =~ m{^HTTP/1\.1 (\d{3}) } ? $1 : 0;
}

my $phase_no = 0;

sub new_shopper {
    my ($phase, $c, $n) = @_;
    my $sku = ($n % 3 == 0) ? 'SMALL' : 'BIG';
    my $sub = sprintf('f%d-%d-%d', $phase, $c, $n);
    return { sub => $sub, sku => $sku, qty => 1 + ($n % 2),
             token => $t->forge(zone => 'z', sub => $sub, tkt => 1, adm => 1) };
}

# Start $CLIENTS forked clients; each sends reservations of new shoppers one
# after another until "$DIR/stop" appears (or 30 s, or 3000 requests), and
# writes "sub sku qty status" lines.
sub start_load {
    my ($phase) = @_;
    unlink "$DIR/stop";
    my @kids;
    for my $c (1 .. $CLIENTS) {
        my $file = "$DIR/load-$phase-$c.out";
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            open my $out, '>', $file or POSIX::_exit(1);
            $out->autoflush(1);
            my $end = time + 30;
            for my $n (1 .. 3000) {
                last if -e "$DIR/stop" || time > $end;
                my $s = new_shopper($phase, $c, $n);
                my $st = request($s);
                print $out join("\t", $s->{sub}, $s->{sku}, $s->{qty}, $st,
                                $s->{token}), "\n";
            }
            close $out;
            POSIX::_exit(0);    # no END blocks: they would stop nginx
        }
        push @kids, [ $pid, $file ];
    }
    return \@kids;
}

sub stop_load {
    my ($kids) = @_;
    open my $fh, '>', "$DIR/stop";
    close $fh;
    my $n = 0;
    for my $k (@$kids) {
        my ($pid, $file) = @$k;
        my $deadline = time + 20;
        while (waitpid($pid, WNOHANG) == 0) {
            if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); last }
            sleep 0.02;
        }
        open my $in, '<', $file or next;
        while (my $l = <$in>) {
            chomp $l;
            my ($sub, $sku, $qty, $st, $token) = split /\t/, $l;
            next unless defined $token;
            $shopper{$sub} = { sku => $sku, qty => $qty, status => $st,
                               token => $token };
            $seen_status{$st}++;
            $n++;
        }
        close $in;
    }
    return $n;
}

# every shopper without a final answer (503, or none) asks again until it
# gets one; returns the number still unresolved
sub resolve {
    my $deadline = time + 25;
    while (1) {
        my @open = grep { $shopper{$_}{status} != 200 && $shopper{$_}{status} != 409 }
            sort keys %shopper;
        return 0 unless @open;
        return scalar @open if time > $deadline;
        for my $sub (@open) {
            my $st = request({ %{ $shopper{$sub} }, sub => $sub });
            $shopper{$sub}{status} = $st;
            $seen_status{$st}++;
        }
        sleep 0.2;
    }
}

###########################################################################
# the accounting

sub redis_state {
    my ($sku) = @_;
    my $stock = cli($t, 'GET', stock_key('z', $sku));
    my %holds = split /\n/, cli($t, 'ZRANGE', holds_key('z', $sku), 0, -1, 'WITHSCORES');
    my %qty = split /\n/, cli($t, 'HGETALL', qty_key('z', $sku));
    return ($stock, \%holds, \%qty);
}

sub check_accounting {
    my ($what) = @_;
    for my $sku (sort keys %INITIAL) {
        my ($stock, $holds, $qty) = redis_state($sku);
        my @won = sort grep { $shopper{$_}{sku} eq $sku && $shopper{$_}{status} == 200 }
            keys %shopper;
        my $sum = 0;
        $sum += $_ for values %$qty;

        is_deeply([ sort keys %$holds ], \@won,
                  "$what: $sku: the holds are exactly the shoppers answered 200 ("
                  . scalar(@won) . ")")
            or diag('holds without a 200: ' . join(' ', grep { !$shopper{$_}
                     || $shopper{$_}{status} != 200 } keys %$holds)
                    . "\n200 without a hold: " . join(' ', grep { !exists $holds->{$_} } @won));
        is_deeply([ sort keys %$qty ], [ sort keys %$holds ],
                  "$what: $sku: the qty hash has one field per hold");
        my @wrong = grep { ($qty->{$_} // -1) != $shopper{$_}{qty} } @won;
        is(scalar(@wrong), 0, "$what: $sku: every hold has the qty its shopper asked for")
            or diag(join ' ', map { "$_=$qty->{$_}" } @wrong[0 .. ($#wrong > 5 ? 5 : $#wrong)]);
        cmp_ok($stock, '>=', 0, "$what: $sku: stock $stock is not negative (no oversell)");
        is($stock + $sum, $INITIAL{$sku},
           "$what: $sku: stock $stock + held $sum = initial $INITIAL{$sku}");
    }
}

sub check_log {
    my ($what, $mark) = @_;
    my %killed = map { $_ => 1 } @{ $t->{killed} };
    my @bad = grep {
        (/\[(alert|crit|emerg)\]/ || /exited on signal/)
            && !(/worker process (\d+) exited on signal 9/ && $killed{$1})
    } split /\n/, $t->log_since($mark);
    is(scalar(@bad), 0, "$what: error.log has no [alert], [crit], [emerg] or crash")
        or diag(join "\n", @bad[0 .. ($#bad > 9 ? 9 : $#bad)]);
}

# run a phase: load, the fault in the middle of it, stop, resolve, check
sub phase {
    my ($what, $fault) = @_;
    $phase_no++;
    my $mark = $t->log_mark;
    my $t0 = time;
    my $kids = start_load($phase_no);
    sleep 0.7;
    $fault->();
    sleep 1.0;
    my $n = stop_load($kids);
    my $left = resolve();
    my %by;
    $by{ $shopper{$_}{status} }++ for grep { /^f$phase_no-/ } keys %shopper;
    note(sprintf '%s: %d requests, final %s, %.1f s', $what, $n,
         join(' ', map { "$_:$by{$_}" } sort keys %by), time - $t0);
    cmp_ok($n, '>', 0, "$what: the clients sent requests");
    is($left, 0, "$what: every shopper got a final answer (200 or 409) on asking again");
    check_accounting($what);
    check_log($what, $mark);
}

###########################################################################

phase('baseline (no fault)', sub { });

phase('kill -9 a worker', sub {
    my @r = $t->kill_worker;
    ok(scalar @r, 'the master replaced the killed worker');
});

phase('nginx -s reload', sub {
    my %old = map { $_ => 1 } $t->worker_pids;
    my ($rc, $out) = FlashsaleTest::run_cmd(20, $FlashsaleTest::NGINX, '-p', "$DIR/",
        '-c', "$DIR/nginx.conf", '-e', "$DIR/error.log", '-s', 'reload');
    is($rc, 0, 'nginx -s reload') or diag($out);
    my $ok = FlashsaleTest::poll_until(20, sub {
        my @w = $t->worker_pids;
        return @w == 2 && !grep({ $old{$_} } @w) && !grep({ kill 0, $_ } keys %old);
    });
    ok($ok, 'new workers replaced the old ones, which exited');
});

phase('Redis stopped and started', sub {
    $t->stop_redis;
    sleep 0.5;
    $t->start_redis(@REDIS_ARGS);
});

phase('DEBUG SLEEP 0.3 (timeout=250ms)', sub {
    my $r = $t->redis('DEBUG', 'SLEEP', '0.3');
    is($r, 'OK', 'DEBUG SLEEP 0.3');
});

phase('SCRIPT FLUSH', sub {
    is($t->redis('SCRIPT', 'FLUSH'), 'OK', 'SCRIPT FLUSH');
});

phase('CLIENT KILL TYPE normal', sub {
    my $n = $t->redis('CLIENT', 'KILL', 'TYPE', 'normal');
    cmp_ok($n, '>=', 1, "CLIENT KILL TYPE normal killed $n connections");
});

# over the whole sale
ok(!grep({ $_ >= 500 && $_ != 503 } keys %seen_status), 'no 500 (no 5xx but 503) at any time')
    or diag(explain(\%seen_status));
ok($seen_status{409}, 'SMALL sold out on the way (409 answers)');
ok($seen_status{200}, 'reservations were made');
note('all answers: ' . join(' ', map { "$_:$seen_status{$_}" } sort keys %seen_status));

$t->finish(allow_5xx => 1);
