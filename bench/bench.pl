#!/usr/bin/env perl
# bench/bench.pl — hot-path benchmarks of ngx_http_flashsale_module against
# baselines measured in the same run (issue 6). Run through `make bench`,
# which builds the module first; see bench/README.md.
#
#   perl bench/bench.pl                  the whole table (about 3.5 minutes)
#   perl bench/bench.pl --paths pass,sold_out
#                                        some paths only (no shm/RSS verdict
#                                        for the million tickets unless
#                                        "waiting" is among them)
#   perl bench/bench.pl --profile pass   nginx in one process under
#                                        valgrind --tool=callgrind, driven by
#                                        wrk with the same requests (4
#                                        connections); prints
#                                        callgrind_annotate's top functions
#                                        and instructions per request, for
#                                        the path and its baseline
#   perl bench/bench.pl --perf pass      the 2 workers as benchmarked, sampled
#                                        by `perf record -e cpu-clock` (a
#                                        software clock: this VM has no
#                                        hardware counters) while wrk runs
#
# Environment: BENCH_DURATION (10 s measured per side), BENCH_WARMUP (2 s),
# BENCH_SEGMENTS (5 alternating segments per side), BENCH_CONNECTIONS (32),
# BENCH_THREADS (1), BENCH_TICKETS (1000000), BENCH_RESERVE_TOKENS
# (distinct visitors for "reserve", 200000), BENCH_MANY_PASSES (50000),
# BENCH_KEEP=1 keeps the run directory, BENCH_NO_RESULTS=1 writes no file,
# --profile-seconds N for --profile/--perf (15/10).
#
# Everything runs on 127.0.0.1 on free ports; everything started here is
# stopped here (END block and INT/TERM handlers).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

use Cwd qw(abs_path);
use File::Path qw(make_path remove_tree);
use File::Temp ();
use Getopt::Long qw(GetOptions);
use IO::Socket::INET;
use IO::Select;
use JSON::PP ();
use POSIX qw(strftime WNOHANG);
use Time::HiRes qw(time sleep);
use Digest::SHA qw(sha1_hex);

# JWT helpers of the test suite: forged passes and tickets with the test key
use FlashsaleTest qw(jwt_encode);

$| = 1;

my $ROOT   = abs_path("$FindBin::Bin/..");
my $BENCH  = "$ROOT/bench";
my $NGINX  = $ENV{FLASHSALE_NGINX} // '/usr/sbin/nginx';
my $MODULE = $ENV{FLASHSALE_MODULE} // "$ROOT/build/ngx_http_flashsale_module.so";
my $LUA    = "$BENCH/wrk/bench.lua";

my %O = (
    duration    => $ENV{BENCH_DURATION}       // 10,
    warmup      => $ENV{BENCH_WARMUP}         // 2,
    connections => $ENV{BENCH_CONNECTIONS}    // 32,
    threads     => $ENV{BENCH_THREADS}        // 1,
    tickets     => $ENV{BENCH_TICKETS}        // 1_000_000,
    rtokens     => $ENV{BENCH_RESERVE_TOKENS} // 200_000,
    segments    => $ENV{BENCH_SEGMENTS}       // 5,
    many        => $ENV{BENCH_MANY_PASSES}    // 50_000,
);

my @ALL_PATHS = qw(pass pass_many waiting returning reserve sold_out breaker);
my ($opt_paths, $opt_profile, $opt_profile_secs, $opt_perf);
GetOptions('paths=s' => \$opt_paths, 'profile=s' => \$opt_profile,
           'profile-seconds=i' => \$opt_profile_secs, 'perf=s' => \$opt_perf)
    or die "usage: $0 [--paths p1,p2] [--profile path,...] [--perf path,...]\n";
my @PATHS = $opt_paths ? split(/,/, $opt_paths) : @ALL_PATHS;
for my $p (@PATHS, map { $_ ? split(/,/, $_) : () } $opt_profile, $opt_perf) {
    die "unknown path '$p' (known: @ALL_PATHS)\n" unless grep { $_ eq $p } @ALL_PATHS;
}

my $CLK_TCK = `getconf CLK_TCK` + 0 || 100;
my $NCPU    = `nproc` + 0 || 1;

for my $tool ('wrk', 'redis-server', 'redis-cli', 'redis-benchmark',
              $opt_profile ? ('valgrind', 'callgrind_annotate') : ()) {
    next if system("command -v $tool >/dev/null 2>&1") == 0;
    die "bench: $tool not found; `make deps` installs wrk, redis-server and "
        . "redis-tools (valgrind: apt-get install valgrind)\n";
}
die "bench: $MODULE not built; run `make build`\n" unless -f $MODULE;

###########################################################################
# run directory, processes, cleanup

my $RUN = File::Temp::tempdir('flashsale-bench-XXXXXXXX', TMPDIR => 1,
                              CLEANUP => !$ENV{BENCH_KEEP});
chmod 0755, $RUN;      # workers run as nobody and read html/ from here
print "bench: run directory $RUN\n" if $ENV{BENCH_KEEP};

my %STARTED;           # pid => what, for everything we started

sub spawn {
    my ($what, $log, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    $STARTED{$pid} = $what;
    return $pid;
}

sub wait_exit {
    my ($pid, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        my $r = waitpid($pid, WNOHANG);
        return 1 if $r == $pid || $r == -1;
        sleep 0.02;
    }
    return 0;
}

sub stop_pid {
    my ($pid, $sig, $timeout) = @_;
    return unless $pid && $STARTED{$pid};
    kill $sig, $pid;
    unless (wait_exit($pid, $timeout)) {
        kill 'TERM', $pid;
        unless (wait_exit($pid, 5)) {
            kill 'KILL', $pid;
            wait_exit($pid, 5);
        }
    }
    delete $STARTED{$pid};
}

my ($NGINX_PID, $REDIS_PID);

sub stop_all {
    stop_pid($NGINX_PID, 'QUIT', 20) if $NGINX_PID;
    stop_pid($REDIS_PID, 'TERM', 10) if $REDIS_PID;
    # anything else still running that we started (wrk, redis-benchmark)
    for my $pid (keys %STARTED) {
        stop_pid($pid, 'TERM', 5);
    }
    undef $NGINX_PID;
    undef $REDIS_PID;
}

END {
    my $rc = $?;
    stop_all();
    $? = $rc;
}
$SIG{INT} = $SIG{TERM} = sub { print STDERR "bench: interrupted\n"; stop_all(); exit 130 };

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return undef;
    local $/;
    my $c = <$fh>;
    return $c;
}

sub spew {
    my ($f, $c, $mode) = @_;
    open my $fh, '>', $f or die "write $f: $!";
    print $fh $c;
    close $fh or die "close $f: $!";
    chmod $mode, $f if defined $mode;
}

# run a command, return (exit code, stdout+stderr); stdin /dev/null
sub run {
    my (@cmd) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    $STARTED{$pid} = $cmd[0];
    local $/;
    my $out = <$fh> // '';
    close $fh;
    my $rc = $? >> 8;
    delete $STARTED{$pid};
    return ($rc, $out);
}

###########################################################################
# /proc

sub proc_ticks {             # utime + stime of a process, in clock ticks
    my ($pid) = @_;
    my $st = slurp("/proc/$pid/stat") // return 0;
    $st =~ s/^.*\)\s+//s;
    my @f = split ' ', $st;
    return $f[11] + $f[12];
}

sub proc_rss_kb {
    my ($pid) = @_;
    my $s = slurp("/proc/$pid/status") // return 0;
    return $s =~ /^VmRSS:\s+(\d+)\s+kB/m ? $1 : 0;
}

# resident kB of a process by kind of mapping: malloc's [heap], anonymous
# mappings (large malloc()s, libraries' arenas, shared memory zones are
# "shm"), files (binaries, libraries) and the rest
sub proc_rss_parts {
    my ($pid) = @_;
    my $s = slurp("/proc/$pid/smaps") // return {};
    my (%k, $kind);
    for (split /\n/, $s) {
        if (/^[0-9a-f]+-[0-9a-f]+\s+\S+\s+\S+\s+\S+\s+\d+\s*(.*)$/) {
            my $name = $1;
            $kind = $name eq '[heap]' ? 'heap'
                  : $name eq '' ? 'anon'
                  : $name =~ m{^/dev/zero|^/SYSV|\(deleted\)} ? 'shm'
                  : $name =~ m{^/} ? 'file' : 'other';
        } elsif (/^Rss:\s+(\d+) kB/ && $kind) {
            $k{$kind} += $1;
        }
    }
    return \%k;
}

sub system_busy_ticks {      # all CPUs, since boot
    my $s = slurp('/proc/stat');
    my ($user, $nice, $sys, $idle, $iow, $irq, $sirq, $steal) =
        $s =~ /^cpu\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m;
    return $user + $nice + $sys + $irq + $sirq + $steal;
}

sub children_of {
    my ($ppid) = @_;
    my @r;
    opendir(my $dh, '/proc') or return;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $st = slurp("/proc/$p/stat") // next;
        next unless $st =~ /^.*\)\s+(\S)\s+(\d+)/s;
        push @r, $p + 0 if $2 == $ppid && $1 ne 'Z';
    }
    closedir $dh;
    @r = sort { $a <=> $b } @r;
    return @r;
}

sub loadavg { (split ' ', slurp('/proc/loadavg'))[0] }

###########################################################################
# ports, redis, nginx

my %TAKEN;
sub free_port {
    for (1 .. 500) {
        my $p = 20000 + int(rand(12000));
        next if $TAKEN{$p};
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $p,
                                      Proto => 'tcp', Listen => 1, ReuseAddr => 1)
            or next;
        close $s;
        $TAKEN{$p} = 1;
        return $p;
    }
    die "no free port";
}

my $PORT       = free_port();
my $REDIS_PORT = free_port();
my $DEAD_PORT  = free_port();   # nothing listens here: the "Redis that is down"

sub cli {
    my (@args) = @_;
    my ($rc, $out) = run('redis-cli', '-h', '127.0.0.1', '-p', $REDIS_PORT, @args);
    die "redis-cli @args: exit $rc: $out" if $rc;
    $out =~ s/\n\z//;
    return $out;
}

# calls per command from INFO commandstats; "info" itself is left out
sub redis_calls {
    my %c;
    for my $l (split /\r?\n/, cli('INFO', 'commandstats')) {
        next unless $l =~ /^cmdstat_([^:]+):calls=(\d+)/;
        $c{$1} = $2 unless $1 eq 'info';
    }
    return \%c;
}
sub redis_info {
    my ($section) = @_;
    my %i;
    for my $l (split /\r?\n/, cli('INFO', $section)) {
        $i{$1} = $2 if $l =~ /^(\w+):(.*)$/;
    }
    return \%i;
}

sub sum_calls { my $c = shift; my $s = 0; $s += $_ for values %$c; $s }

sub start_redis {
    $REDIS_PID = spawn('redis-server', "$RUN/redis.out", 'redis-server',
        '--port', $REDIS_PORT, '--bind', '127.0.0.1', '--save', '',
        '--appendonly', 'no', '--daemonize', 'no', '--dir', $RUN,
        '--logfile', "$RUN/redis.log");
    for (1 .. 250) {
        my ($rc, $out) = run('redis-cli', '-h', '127.0.0.1', '-p', $REDIS_PORT, 'PING');
        return if $rc == 0 && $out =~ /PONG/;
        die "redis-server exited: " . (slurp("$RUN/redis.log") // '')
            if waitpid($REDIS_PID, WNOHANG) == $REDIS_PID;
        sleep 0.04;
    }
    die "redis-server did not answer PING";
}

my $KEY = join '', map { ('A'..'Z', 'a'..'z', '0'..'9')[rand 62] } 1 .. 48;

sub nginx_conf {
    my (%o) = @_;
    my $main = $o{profile}
        ? "master_process off;\ndaemon off;\nworker_processes 1;"
        : "worker_processes 2;";
    return <<"EOF";
load_module $MODULE;
$main
worker_rlimit_nofile 16384;
pid $RUN/nginx.pid;
error_log $RUN/error.log warn;

events {
    worker_connections 8192;
}

http {
    client_body_temp_path $RUN/client_body_temp;
    proxy_temp_path       $RUN/proxy_temp;
    fastcgi_temp_path     $RUN/fastcgi_temp;
    uwsgi_temp_path       $RUN/uwsgi_temp;
    scgi_temp_path        $RUN/scgi_temp;
    access_log            off;

    types { text/html html; }
    default_type text/plain;

    # wrk keeps its connections for the whole run, path and baseline alike
    keepalive_requests 100000000;
    keepalive_timeout  120s;

    flashsale_zone        pz:1m;        # pass
    flashsale_zone        wz:1m;        # waiting and returning waiters
    flashsale_zone        rz:1m;        # reserve and sold out (latched)
    flashsale_zone        bz:1m;        # breaker open
    flashsale_secret_file $RUN/keys;
    flashsale_redis       127.0.0.1:$REDIS_PORT timeout=1s pool=16;

    server {
        listen 127.0.0.1:$PORT backlog=4096;
        root   $RUN/html;

        # the baseline: the same small file, no flashsale
        location /static/ { }

        location /p/ {
            flashsale zone=pz rate=1r/s;
            alias $RUN/html/static/;
        }

        # everyone waits: one admission a minute
        location /w/ {
            flashsale zone=wz rate=1r/m;
            alias $RUN/html/static/;
        }

        location = /r/cart {
            flashsale zone=rz rate=1r/s;
            flashsale_reserve sku=\$arg_sku qty=\$arg_qty hold=10m;
            alias $RUN/html/static/item.html;
        }

        location = /s/cart {
            flashsale zone=rz;
            flashsale_reserve sku=\$arg_sku qty=\$arg_qty hold=10m latch=60s;
            alias $RUN/html/static/item.html;
        }

        location /b/ {
            flashsale zone=bz rate=1r/s;
            flashsale_breaker min_calls=1 open=600s;
            alias $RUN/html/static/;
        }

        # one failed reservation against a Redis that is down opens bz's breaker
        location = /b-trip {
            flashsale zone=bz;
            flashsale_breaker min_calls=1 open=600s;
            flashsale_redis 127.0.0.1:$DEAD_PORT connect_timeout=100ms timeout=250ms;
            flashsale_reserve sku=\$arg_sku qty=\$arg_qty;
            alias $RUN/html/static/item.html;
        }

        location = /flashsale_status { flashsale_status; }
        location = /stock { flashsale_stock zone=rz; }
    }
}
EOF
}

sub nginx_workers {
    return $_[0] ? ($NGINX_PID) : children_of($NGINX_PID);
}

sub start_nginx {
    my (%o) = @_;
    spew("$RUN/nginx.conf", nginx_conf(%o));
    my ($rc, $out) = run($NGINX, '-t', '-q', '-p', $RUN, '-c', "$RUN/nginx.conf");
    die "nginx -t failed:\n$out" if $rc;
    my @cmd = ($NGINX, '-p', $RUN, '-c', "$RUN/nginx.conf");
    if ($o{profile}) {
        @cmd = ('valgrind', '--tool=callgrind', '--trace-children=no',
                "--callgrind-out-file=$o{profile}", @cmd);
    } else {
        push @cmd, '-g', 'daemon off;';
    }
    $NGINX_PID = spawn('nginx', "$RUN/nginx.out", @cmd);
    my $ok;
    for (1 .. ($o{profile} ? 1500 : 250)) {
        die "nginx exited: " . (slurp("$RUN/error.log") // '') . (slurp("$RUN/nginx.out") // '')
            if waitpid($NGINX_PID, WNOHANG) == $NGINX_PID;
        my $r = eval { http_get('/flashsale_status?format=json') };
        my @w = nginx_workers();
        if ($r && $r->{status} == 200 && ($o{profile} || @w == 2))
        {
            $ok = 1;
            last;
        }
        sleep 0.04;
    }
    die "nginx did not come up" unless $ok;
}

###########################################################################
# a small HTTP/1.1 client (one connection per call, or a kept one)

my $JSON = JSON::PP->new->canonical;

sub http_req {
    my ($sock, $path, %h) = @_;
    my $req = "GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    $req .= "$_: $h{$_}\r\n" for sort keys %h;
    $req .= "\r\n";
    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite($sock, $req, length($req) - $off, $off);
        die "write: $!" unless defined $n;
        $off += $n;
    }
    my $buf = '';
    my $sel = IO::Select->new($sock);
    my $deadline = time + 30;
    my ($status, %hdr, $hlen);
    while (1) {
        if (!defined $hlen && (my $i = index($buf, "\r\n\r\n")) >= 0) {
            $hlen = $i + 4;
            my @l = split /\r\n/, substr($buf, 0, $i);
            ($status) = (shift @l) =~ m{^HTTP/1\.\d (\d{3})} or die "bad status line";
            for (@l) {
                my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
                push @{ $hdr{lc $k} }, $v;
            }
        }
        if (defined $hlen) {
            my $cl = $hdr{'content-length'} ? $hdr{'content-length'}[0] : 0;
            if (length($buf) >= $hlen + $cl) {
                my $body = substr($buf, $hlen, $cl);
                substr($buf, 0, $hlen + $cl, '');
                return { status => $status, headers => \%hdr, body => $body };
            }
        }
        my $left = $deadline - time;
        die "http read timeout ($path)" if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($sock, $buf, 65536, length $buf);
        die "http: connection closed ($path)" unless $n;
    }
}

sub http_conn {
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $PORT,
                                 Proto => 'tcp', Timeout => 5)
        // die "connect 127.0.0.1:$PORT: $!";
}

sub http_get {
    my ($path, %h) = @_;
    my $s = http_conn();
    my $r = http_req($s, $path, %h);
    close $s;
    return $r;
}

sub zone_status {
    my ($zone) = @_;
    my $r = http_get('/flashsale_status?format=json');
    die "status: $r->{status}" unless $r->{status} == 200;
    my $j = $JSON->decode($r->{body});
    for my $z (@{ $j->{zones} }) {
        return $z if $z->{zone} eq $zone;
    }
    die "zone $zone not in status";
}

###########################################################################
# tokens: forged with the test suite's jwt_encode and the run's key

sub hex32 { join '', map { sprintf '%02x', int rand 256 } 1 .. 16 }

sub token {
    my (%c) = @_;
    my $now = int time;
    # canonical JSON, written by hand: generating 200 000 of them must be quick
    my $claims = sprintf '{%s"aud":"%s","exp":%d,"iat":%d,"iss":"flashsale",%s"sub":"%s","tkt":%d}',
        ($c{adm} ? '"adm":true,' : ''), $c{zone}, $c{exp} // $now + 3600,
        $c{iat} // $now, (defined $c{pos} ? qq{"pos":$c{pos},} : ''),
        $c{sub} // hex32(), $c{tkt};
    return jwt_encode({}, $KEY, raw_claims => $claims);
}

sub write_tokens {
    my ($file, $n, %c) = @_;
    open my $fh, '>', $file or die "write $file: $!";
    for my $i (1 .. $n) {
        my %ci = %c;
        $ci{tkt} = ref $c{tkt} eq 'CODE' ? $c{tkt}->($i) : $c{tkt} // $i;
        $ci{pos} = $c{pos}->($i) if ref $c{pos} eq 'CODE';
        print $fh token(%ci), "\n";
    }
    close $fh or die "close $file: $!";
    return $file;
}

sub first_line { my $f = shift; open my $fh, '<', $f or die; my $l = <$fh>; chomp $l; $l }

###########################################################################
# the Lua script of the reservation, exactly as the module sends it

sub reserve_script_text {
    my $src = slurp("$ROOT/src/ngx_http_flashsale_reserve.c")
        // die "cannot read src/ngx_http_flashsale_reserve.c";
    my ($block) = $src =~ /ngx_http_flashsale_script\s*=\s*\{\s*ngx_string\((.*?)\),\s*\{\s*0\s*\}\s*\};/s
        or die "the script is not where bench.pl expects it in ngx_http_flashsale_reserve.c";
    my $text = '';
    while ($block =~ /"((?:[^"\\]|\\.)*)"/g) {
        my $lit = $1;
        $lit =~ s/\\(n|t|r|\\|"|')/{ n => "\n", t => "\t", r => "\r", '\\' => '\\', '"' => '"', "'" => "'" }->{$1}/ge;
        die "unexpected escape in the script literal" if $lit =~ /\\/ && $lit !~ /\\\\/;
        $text .= $lit;
    }
    return $text;
}

###########################################################################
# measuring

my @WORKERS;       # nginx worker pids, for CPU and RSS

sub snapshot {
    return {
        t      => time,
        worker => (eval { my $s = 0; $s += proc_ticks($_) for @WORKERS; $s }),
        redis  => proc_ticks($REDIS_PID),
        busy   => system_busy_ticks(),
        kids   => (times)[2] + (times)[3],     # seconds, reaped children
    };
}

# ticks -> microseconds per request
sub per_req_us {
    my ($ticks, $n) = @_;
    return $n ? $ticks * 1e6 / $CLK_TCK / $n : 0;
}

my %OFFSET;        # token file => how many of its tokens were used

sub wrk_run {
    my (%a) = @_;     # path, secs, tokens, accept, connections, threads
    local $ENV{BENCH_TOKENS} = $a{tokens} // '';
    local $ENV{BENCH_ACCEPT} = $a{accept} // '';
    local $ENV{BENCH_OFFSET} = $a{tokens} ? $OFFSET{$a{tokens}} // 0 : 0;
    my ($rc, $out) = run('wrk', '-t', $a{threads} // $O{threads},
        '-c', $a{connections} // $O{connections}, '-d', "$a{secs}s",
        '--timeout', '5s', '-s', $LUA, "http://127.0.0.1:$PORT$a{path}");
    die "wrk failed (exit $rc): $out" if $rc;
    my ($json) = $out =~ /^BENCH (\{.*\})$/m or die "wrk printed no BENCH line:\n$out";
    my $r = $JSON->decode($json);
    # the next run starts after these (and those still in flight at the end)
    $OFFSET{$a{tokens}} += $r->{requests} + ($a{connections} // $O{connections}) if $a{tokens};
    return $r;
}

# One side of a comparison: a runner that measures for a number of seconds,
# and the totals of its segments.
sub new_side {
    my ($kind, $runner) = @_;
    return { kind => $kind, runner => $runner, requests => 0, secs => 0, worker => 0,
             redis => 0, kids => 0, busy => 0, wall => 0, non2xx => 0, sockerr => 0,
             p50w => 0, p99w => 0 };
}

sub run_segment {
    my ($side, $secs) = @_;
    my $s0 = snapshot();
    my $r = $side->{runner}->($secs);
    my $s1 = snapshot();
    my $n = $r->{requests};
    $side->{requests} += $n;
    $side->{secs}     += $r->{secs};
    $side->{$_}       += $s1->{$_} - $s0->{$_} for qw(worker redis kids busy);
    $side->{wall}     += $s1->{t} - $s0->{t};
    $side->{non2xx}   += $r->{non2xx};
    $side->{sockerr}  += $r->{sockerr};
    # percentiles of the segments, weighted by their requests
    $side->{p50w}     += $r->{p50_ms} * $n;
    $side->{p99w}     += $r->{p99_ms} * $n;
}

sub side_result {
    my ($side) = @_;
    my $n = $side->{requests};
    my $ours = $side->{worker} + $side->{redis} + $side->{kids} * $CLK_TCK;
    return {
        kind      => $side->{kind},
        requests  => $n,
        rps       => $side->{secs} ? $n / $side->{secs} : 0,
        p50_ms    => $n ? $side->{p50w} / $n : 0,
        p99_ms    => $n ? $side->{p99w} / $n : 0,
        cpu_us    => per_req_us($side->{worker}, $n),
        redis_us  => per_req_us($side->{redis}, $n),
        wrk_us    => $n ? $side->{kids} * 1e6 / $n : 0,
        other_pct => $side->{wall} ? 100 * ($side->{busy} - $ours) / $CLK_TCK / $side->{wall} / $NCPU : 0,
        non2xx    => $side->{non2xx},
        sockerr   => $side->{sockerr},
    };
}

# Path and baseline are measured in alternating segments, A B B A A B B A
# (BENCH_SEGMENTS per side, $duration seconds per side in all), so that
# load from other processes and drift fall on both sides alike.
sub measure_pair {
    my ($a, $b) = @_;
    if ($O{warmup}) {
        $a->{runner}->($O{warmup});
        $b->{runner}->(int($O{warmup} / 2) || 1);
    }
    my $k = $O{segments};
    # wrk takes whole seconds
    my $secs = int($O{duration} / $k) || 1;
    for my $i (0 .. $k - 1) {
        my @order = ($i % 2 == 0) ? ($a, $b) : ($b, $a);
        run_segment($_, $secs) for @order;
    }
    return (side_result($a), side_result($b));
}

sub wrk_runner {
    my (%a) = @_;
    return sub {
        my ($secs) = @_;
        my $w = wrk_run(%a, secs => $secs);
        return { requests => $w->{requests}, secs => $w->{duration_us} / 1e6,
                 p50_ms => $w->{p50_us} / 1000, p99_ms => $w->{p99_us} / 1000,
                 non2xx => $w->{status},
                 sockerr => $w->{connect} + $w->{read} + $w->{write} + $w->{timeout} };
    };
}

sub redis_benchmark_runner {
    my (@cmd) = @_;
    my @base = ('redis-benchmark', '-h', '127.0.0.1', '-p', $REDIS_PORT,
                '-c', $O{connections}, '-P', '1', '-r', '100000000', '--csv');
    my $rate;
    my $bench = sub {
        my ($n) = @_;
        my $t0 = time;
        my ($rc, $out) = run(@base, '-n', $n, @cmd);
        my $t1 = time;
        die "redis-benchmark failed: $out" if $rc;
        my @l = grep { /^"/ && !/^"test"/ } split /\n/, $out;
        die "redis-benchmark: no result line:\n$out" unless @l;
        my @f = map { s/"//gr } split /,/, $l[-1];
        # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
        # "p95_latency_ms","p99_latency_ms","max_latency_ms"
        return { requests => $n, secs => $f[1] ? $n / $f[1] : $t1 - $t0,
                 p50_ms => $f[4], p99_ms => $f[6], non2xx => 0, sockerr => 0 };
    };
    return sub {
        my ($secs) = @_;
        # the first call (the warm-up) tells how many requests take $secs
        my $r = $bench->($rate ? int($rate * $secs) || 1000 : 20000);
        $rate = $r->{requests} / $r->{secs} if $r->{secs};
        return $r;
    };
}

###########################################################################
# setup shared by the benchmark and the profile mode

my %TOK;           # path => token file
my %NOTE;          # path => [notes]
my @CHECKS;        # [name, ok, detail]

sub check {
    my ($name, $ok, $detail) = @_;
    push @CHECKS, [$name, $ok ? 1 : 0, $detail // ''];
    return $ok;
}

my $ITEM = "<!DOCTYPE html>\n<html><head><title>Item</title></head><body>\n"
         . "<h1>Limited edition sneaker</h1>\n"
         . ("<p>" . ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " x 3) . "</p>\n") x 2
         . "</body></html>\n";

my $SCRIPT;        # the reservation's Lua script
my $SHA;

sub setup_files {
    make_path("$RUN/html/static");
    chmod 0755, "$RUN/html", "$RUN/html/static";
    spew("$RUN/html/static/item.html", $ITEM, 0644);
    spew("$RUN/keys", "$KEY\n", 0600);
    make_path("$RUN/tokens");

    my $t0 = time;
    $TOK{pass}     = write_tokens("$RUN/tokens/pass",     1000, zone => 'pz', adm => 1);
    $TOK{pass_many} = write_tokens("$RUN/tokens/pass_many", $O{many}, zone => 'pz', adm => 1);
    $TOK{reserve}  = write_tokens("$RUN/tokens/reserve", $O{rtokens}, zone => 'rz', adm => 1);
    $TOK{sold_out} = write_tokens("$RUN/tokens/sold_out", 1000, zone => 'rz', adm => 1);
    $TOK{breaker}  = write_tokens("$RUN/tokens/breaker",  1000, zone => 'bz', adm => 1);
    printf "bench: %d passes forged in %.1f s\n", 3000 + $O{many} + $O{rtokens}, time - $t0;
}

sub setup_redis_data {
    cli('SET', 'fs:{rz:R1}:stock', 1_000_000_000);     # reserve: large stock
    cli('SET', 'fs:{rz:B1}:stock', 1_000_000_000);     # redis-benchmark baseline
    cli('SET', 'fs:{rz:S0}:stock', 50);                # sold out by latch_s0()

    $SCRIPT = reserve_script_text();
    $SHA = cli('SCRIPT', 'LOAD', $SCRIPT);
    check('script SHA from redis-cli SCRIPT LOAD = sha1 of the text in '
          . 'ngx_http_flashsale_reserve.c', $SHA eq sha1_hex($SCRIPT), "$SHA");
}

# tickets for returning waiters: valid, still waiting, fresh (not re-signed)
sub setup_returning_tokens {
    my ($issued) = @_;
    # tickets 101..1000 of the 1 000 issued: far from the front (the zone
    # admits one a minute), so they wait for the whole run
    die "only $issued tickets issued" if $issued < 1000;
    $TOK{returning} = write_tokens("$RUN/tokens/returning", 900, zone => 'wz',
                                   tkt => sub { 100 + $_[0] }, pos => sub { 100 + $_[0] });
}

# a keep-alive loop of exactly $n new visitors on the waiting path
sub new_visitors {
    my ($n) = @_;
    my $s = http_conn();
    my $waiting = 0;
    for (1 .. $n) {
        my $r = http_req($s, '/w/item.html');
        $waiting++ if $r->{status} == 200 && $r->{body} =~ /You are in line/;
    }
    close $s;
    return $waiting;
}

# latch S0 as a real drop ends: 50 other admitted visitors reserve its 50
# units through nginx (50 live holds), then one reservation that Redis
# answers sold out latches it, with those holders. Returns (reserved, the
# latching answer); run again (profile mode) the holders get their holds back.
sub latch_s0 {
    $TOK{s0_holders} //= write_tokens("$RUN/tokens/s0_holders", 50, zone => 'rz', adm => 1);
    open my $fh, '<', $TOK{s0_holders} or die "$TOK{s0_holders}: $!";
    my $held = 0;
    while (my $tok = <$fh>) {
        chomp $tok;
        $held++ if http_get('/s/cart?sku=S0&qty=1', Cookie => "flashsale=$tok")->{status} == 200;
    }
    close $fh;
    return ($held, http_get('/s/cart?sku=S0&qty=1', Cookie => 'flashsale=' . first_line($TOK{sold_out})));
}

sub trip_breaker {
    my $pass = first_line($TOK{breaker});
    for (1 .. 20) {
        http_get('/b-trip?sku=X1&qty=1', Cookie => "flashsale=$pass");
        return 1 if zone_status('bz')->{breaker}{state} eq 'open';
        sleep 0.1;
    }
    return 0;
}

# what one request of each path answers, checked before it is measured
my %PATH = (
    pass => {
        what => 'valid pass cookie, small static file', url => '/p/item.html',
        base => '/static/item.html', base_what => 'same file, no flashsale, same cookie',
        expect => sub { $_[0]{status} == 200 && $_[0]{body} eq $ITEM && !$_[0]{headers}{'set-cookie'} },
        target => { rps => 0.85, cpu => 1.2 },
    },
    pass_many => {
        what => 'as pass, 50 000 distinct shoppers cycled', url => '/p/item.html',
        base => '/static/item.html', base_what => 'same file, no flashsale, same cookies',
        expect => sub { $_[0]{status} == 200 && $_[0]{body} eq $ITEM && !$_[0]{headers}{'set-cookie'} },
        target => { rps => 0.85, cpu => 1.2 },
    },
    waiting => {
        what => 'new visitor: ticket issued, page rendered', url => '/w/item.html',
        base => '/static/item.html', base_what => 'static file',
        expect => sub { $_[0]{status} == 200 && $_[0]{body} =~ /You are in line/ && $_[0]{headers}{'set-cookie'} },
        target => { rps => 0.60 },
    },
    returning => {
        what => 'valid ticket, still waiting', url => '/w/item.html',
        base => '/static/item.html', base_what => 'static file, same cookie',
        expect => sub { $_[0]{status} == 200 && $_[0]{body} =~ /You are in line/ && !$_[0]{headers}{'set-cookie'} },
        target => { rps => 0.75 },
    },
    reserve => {
        what => 'distinct admitted visitors reserve 1 of a large stock',
        url => '/r/cart?sku=R1&qty=1',
        base_what => 'redis-benchmark EVALSHA, same script/keys shape, -P 1',
        expect => sub { $_[0]{status} == 200 && $_[0]{body} eq $ITEM },
        target => { rps => 0.80 },
    },
    sold_out => {
        what => 'admitted visitor, latched SKU (409 from memory)', url => '/s/cart?sku=S0&qty=1',
        base => '/static/item.html', base_what => 'static file, same cookie',
        expect => sub { $_[0]{status} == 409 },
        target => { rps => 0.80, redis => 0 },
    },
    breaker => {
        what => 'pass holder, breaker open (503 from memory)', url => '/b/item.html',
        base => '/static/item.html', base_what => 'static file, same cookie',
        expect => sub { $_[0]{status} == 503 && ($_[0]{headers}{'retry-after'} // [''])->[0] =~ /^\d+$/ },
        target => { rps => 0.85 },
    },
);

sub probe {
    my ($p) = @_;
    my %h;
    $h{Cookie} = 'flashsale=' . first_line($TOK{$p}) if $TOK{$p};
    my $r = http_get($PATH{$p}{url}, %h);
    return check("$p: one request answers as intended ($PATH{$p}{url} -> $r->{status})",
                 $PATH{$p}{expect}->($r), "status $r->{status}");
}

###########################################################################
# profile mode: nginx in one process under callgrind

if ($opt_profile) {
    setup_files();
    start_redis();
    setup_redis_data();
    my $profile_one = sub {
        my ($p, $url, $label) = @_;
        my $out = "$BENCH/results/callgrind.$label.out";
        unlink $out;
        start_nginx(profile => $out);
        @WORKERS = ($NGINX_PID);
        if ($p eq 'returning') {
            new_visitors(1000);
            setup_returning_tokens(1000);
        }
        latch_s0() if $p eq 'sold_out';
        trip_breaker() if $p eq 'breaker';
        probe($p) if $label eq $p;
        # the counts start here: what came before is setup
        run('callgrind_control', '--zero', $NGINX_PID);
        my $w = wrk_run(path => $url, tokens => $TOK{$p}, secs => $opt_profile_secs // 20,
                        connections => 4, threads => 1);
        stop_pid($NGINX_PID, 'QUIT', 120);
        undef $NGINX_PID;
        my ($rc, $ann) = run('callgrind_annotate', '--inclusive=no', '--threshold=100', $out);
        my ($total) = $ann =~ /^\s*([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS/m;
        (my $tn = $total // 0) =~ s/,//g;
        my $per = $w->{requests} ? $tn / $w->{requests} : 0;
        printf "== %s (%s): %d requests under callgrind, %s instructions, %.0f per request\n",
               $label, $url, $w->{requests}, $total // '?', $per;
        my @top = grep { /^\s*[\d,]+ \(/ && !/PROGRAM TOTALS/ } split /\n/, $ann;
        print "self (exclusive), top 30:\n", map { "  $_\n" } @top[0 .. ($#top < 29 ? $#top : 29)];
        ($rc, $ann) = run('callgrind_annotate', '--inclusive=yes', '--threshold=100', $out);
        @top = grep { /^\s*[\d,]+ \(/ && !/PROGRAM TOTALS/ } split /\n/, $ann;
        print "inclusive, top 45:\n", map { "  $_\n" } @top[0 .. ($#top < 44 ? $#top : 44)];
        print "\n";
        return $per;
    };
    for my $p (split /,/, $opt_profile) {
        my $per = $profile_one->($p, $PATH{$p}{url}, $p);
        if ($PATH{$p}{base}) {
            my $bper = $profile_one->($p, $PATH{$p}{base}, "$p-baseline");
            printf "== %s: %.0f instructions per request, baseline %.0f: %.2fx\n\n",
                   $p, $per, $bper, $bper ? $per / $bper : 0;
        }
    }
    exit 0;
}

###########################################################################
# perf mode: the real workers, sampled on the CPU clock

if ($opt_perf) {
    die "bench: perf not found\n" if system('command -v perf >/dev/null 2>&1');
    setup_files();
    start_redis();
    setup_redis_data();
    start_nginx();
    @WORKERS = nginx_workers();
    new_visitors(1000);
    setup_returning_tokens(1000);
    trip_breaker();
    latch_s0();
    my $secs = $opt_profile_secs // 10;
    for my $p (split /,/, $opt_perf) {
        for my $side ('path', 'baseline') {
            my $url = $side eq 'path' ? $PATH{$p}{url} : $PATH{$p}{base};
            next unless $url;
            probe($p) if $side eq 'path';
            wrk_run(path => $url, tokens => $TOK{$p}, secs => 1);
            my $data = "$RUN/perf.$p.$side.data";
            my $pid = spawn('perf', "$RUN/perf.out", 'perf', 'record', '-e', 'cpu-clock',
                            '-F', '4999', '-p', join(',', @WORKERS), '-o', $data);
            sleep 0.5;
            my $w = wrk_run(path => $url, tokens => $TOK{$p}, secs => $secs);
            stop_pid($pid, 'INT', 30);
            my ($rc, $rep) = run('perf', 'report', '-i', $data, '--stdio', '--no-children',
                                 '--sort', 'dso', '--percent-limit', '1');
            my @dso = grep { /^\s+[\d.]+%/ } split /\n/, $rep;
            ($rc, $rep) = run('perf', 'report', '-i', $data, '--stdio', '--no-children',
                              '--sort', 'dso,sym', '--percent-limit', '0.7');
            my @sym = grep { /^\s+[\d.]+%/ } split /\n/, $rep;
            printf "== perf %s %s (%s): %.0f req/s with perf attached\n", $p, $side, $url,
                   $w->{requests} / ($w->{duration_us} / 1e6);
            print "by object:\n", map { "  $_\n" } @dso[0 .. ($#dso < 11 ? $#dso : 11)];
            print "by symbol (>= 0.7%):\n", map { "  $_\n" } @sym[0 .. ($#sym < 39 ? $#sym : 39)];
            print "\n";
        }
    }
    exit 0;
}

###########################################################################
# the benchmark

my $started = time;
my $stamp = strftime('%Y%m%d-%H%M%S', localtime);
printf "bench: %s, %d CPUs, load %s, wrk -t%d -c%d, %ds measured after %ds warm-up\n",
       $stamp, $NCPU, loadavg(), $O{threads}, $O{connections}, $O{duration}, $O{warmup};

setup_files();
start_redis();
setup_redis_data();
start_nginx();
@WORKERS = nginx_workers();
check('nginx runs 2 workers', @WORKERS == 2, "@WORKERS");

my %RSS = (boot => { map { $_ => proc_rss_kb($_) } @WORKERS });
my @RSS_TRACE;

# shm after 1 000 tickets (the first 1 000 visitors of the waiting zone)
my $in_line = new_visitors(1000);
my $wz = zone_status('wz');
my %SHM = (t1 => $wz->{tickets_issued}, used1 => $wz->{shm}{used}, size => $wz->{shm}{size});
check('1 000 new visitors: 1 000 tickets issued, 999 wait', $wz->{tickets_issued} == 1000 && $in_line >= 999,
      "tickets_issued $wz->{tickets_issued}, waiting pages $in_line");
setup_returning_tokens($wz->{tickets_issued});

check('breaker of zone bz opened by one failed reservation (Redis down)', trip_breaker());
# latch S0: 50 other visitors hold its 50 units, then one reservation that
# Redis answers sold out
{
    my ($held, $r) = latch_s0();
    my $z = zone_status('rz');
    my $holds = cli('ZCARD', 'fs:{rz:S0}:holds');
    check('S0: its 50 units reserved through nginx by 50 other visitors',
          $held == 50 && $holds == 50 && cli('GET', 'fs:{rz:S0}:stock') == 0,
          "$held reserved, $holds holds in Redis");
    check('S0 latched after one sold-out answer from Redis, with its 50 holders',
          $r->{status} == 409 && grep({ $_ eq 'S0' } @{ $z->{sold_out_skus} || [] })
          && ($z->{sold_out_holders}{S0} // -1) == 50,
          "status $r->{status}, sold_out_skus @{ $z->{sold_out_skus} || [] }, "
          . 'sold_out_holders ' . ($z->{sold_out_holders}{S0} // 'null'));
}

# A warm-up of every path, then the RSS the run starts with.  The warm-up
# uses 8 times the connections of a measured run: nginx keeps a connection's
# and a parked request's memory in malloc's heap, and which worker accepts
# each of wrk's connections is chance, so a measured run could give one
# worker more connections at once than it had ever held, and its heap a
# new high-water mark that says nothing of memory per request (plain nginx
# serving a static file does the same).  After 8x (about 128 a worker), a
# measured run (32 connections, 64 for the tickets) can hardly give one
# worker more; RSS that still grows then grows with requests.
# The warm-up also sends each row's baseline (the static file at 8x too)
# and reads the status as the rows do.
for my $p (@PATHS) {
    for my $url (grep { defined } $PATH{$p}{url}, $PATH{$p}{base}) {
        wrk_run(path => $url, tokens => $TOK{$p}, secs => $O{warmup} || 1,
                connections => 8 * $O{connections});
    }
    zone_status('pz');
}
$RSS{start} = { map { $_ => proc_rss_kb($_) } @WORKERS };
$RSS{start_parts} = { map { $_ => proc_rss_parts($_) } @WORKERS };
push @RSS_TRACE, ['start', [ map { proc_rss_kb($_) } @WORKERS ]];

my %RES;
for my $p (@PATHS) {
    my $d = $PATH{$p};
    probe($p);
    my ($z0, $c0);
    my $zname = { pass => 'pz', pass_many => 'pz', waiting => 'wz', returning => 'wz', reserve => 'rz',
                  sold_out => 'rz', breaker => 'bz' }->{$p};
    $z0 = zone_status($zname);
    $c0 = redis_calls();

    printf "bench: %-9s ...", $p;
    my $side_a = new_side('wrk', wrk_runner(path => $d->{url}, tokens => $TOK{$p}));
    my $side_b = $p eq 'reserve'
        ? new_side('redis-benchmark', redis_benchmark_runner('EVALSHA', $SHA, 3,
              'fs:{rz:B1}:stock', 'fs:{rz:B1}:holds', 'fs:{rz:B1}:qty', 'reserve',
              'bbbbbbbb__rand_int____rand_int__', 1, 600000, 100))
        : new_side('wrk', wrk_runner(path => $d->{base}, tokens => $TOK{$p}));

    # Redis is counted around the path's measured segments only
    my ($cr, $zr) = (0, 0);
    if ($p eq 'reserve') {
        # reads and writes Redis made per EVALSHA, on each side
        for my $side ($side_a, $side_b) {
            my $runner = $side->{runner};
            $side->{runner} = sub {
                my $i0 = redis_info('stats');
                my $c0 = redis_calls();
                my $r = $runner->(@_);
                my $i1 = redis_info('stats');
                my $c1 = redis_calls();
                $side->{evalsha} += ($c1->{evalsha} // 0) - ($c0->{evalsha} // 0);
                $side->{reads}   += $i1->{total_reads_processed} - $i0->{total_reads_processed};
                $side->{writes}  += $i1->{total_writes_processed} - $i0->{total_writes_processed};
                return $r;
            };
        }
    }
    if ($p eq 'sold_out') {
        my $runner = $side_a->{runner};
        my $warmed = $O{warmup} ? 0 : 1;
        $side_a->{runner} = sub {
            my ($secs) = @_;
            return $runner->($secs) unless $warmed++;        # the warm-up
            my $c1 = redis_calls();
            my $z1 = zone_status($zname);
            my $r = $runner->($secs);
            $cr += sum_calls(redis_calls()) - sum_calls($c1);
            $zr += zone_status($zname)->{redis}{calls} - $z1->{redis}{calls};
            return $r;
        };
    }
    my ($m, $b) = measure_pair($side_a, $side_b);
    if ($p eq 'sold_out') {
        my $z2 = zone_status($zname);
        $m->{redis_calls} = $cr;
        push @{ $NOTE{$p} }, sprintf('Redis: %d commands in INFO commandstats during the %d measured requests '
            . '(%d with the warm-up and the baseline), redis.calls +%d; reservations.sold_out +%d; '
            . 'holds taken in zone rz before (reservations.reserved): %d',
            $cr, $m->{requests}, sum_calls(redis_calls()) - sum_calls($c0), $zr,
            $z2->{reservations}{sold_out} - $z0->{reservations}{sold_out}, $z2->{reservations}{reserved});
        check('sold out: all answers 409 (wrk non-2xx = requests)', $m->{non2xx} == $m->{requests},
              "$m->{non2xx} of $m->{requests}");
    }
    my $z1 = zone_status($zname);
    my $c1 = redis_calls();

    if ($p eq 'reserve') {
        my $reserved = $z1->{reservations}{reserved} - $z0->{reservations}{reserved};
        push @{ $NOTE{$p} }, sprintf('%d new holds taken through nginx in this run (warm-up included; %d distinct passes '
            . 'cycled); reservation errors +%d; EVALSHA calls (nginx and redis-benchmark) +%d',
            $reserved, $O{rtokens}, $z1->{reservations}{errors} - $z0->{reservations}{errors},
            ($c1->{evalsha} // 0) - ($c0->{evalsha} // 0));
        push @{ $NOTE{$p} }, sprintf('redis-server CPU %.1f us/request (nginx -> Redis)', $m->{redis_us});
        check('reserve: no errors', $z1->{reservations}{errors} == $z0->{reservations}{errors}
              && $m->{non2xx} == 0, "non-2xx $m->{non2xx}");
    }
    if ($p eq 'breaker') {
        check('breaker: stays open, all answers 503', $z1->{breaker}{state} eq 'open'
              && $m->{non2xx} == $m->{requests}, "state $z1->{breaker}{state}, non-2xx $m->{non2xx}");
        push @{ $NOTE{$p} }, sprintf('Redis commands during the run: %d, redis.calls of zone bz +%d',
            sum_calls($c1) - sum_calls($c0), $z1->{redis}{calls} - $z0->{redis}{calls});
    }
    if ($p =~ /^(pass|pass_many|waiting|returning)$/) {
        check("$p: every answer 2xx", $m->{non2xx} == 0, "non-2xx $m->{non2xx}");
    }
    if ($p eq 'waiting') {
        push @{ $NOTE{$p} }, sprintf('tickets issued during the run: %d',
            $z1->{tickets_issued} - $z0->{tickets_issued});
    }
    check("$p: no socket errors", $m->{sockerr} == 0, "socket errors $m->{sockerr}");

    if ($p eq 'reserve') {
        push @{ $NOTE{$p} }, sprintf('redis-benchmark: redis-server CPU %.1f us/request', $b->{redis_us});
        push @{ $NOTE{$p} }, sprintf('Redis socket reads/writes per EVALSHA: %.2f/%.2f from nginx, %.2f/%.2f from redis-benchmark',
            map { $_->{evalsha} ? ($_->{reads} / $_->{evalsha}, $_->{writes} / $_->{evalsha}) : (0, 0) } $side_a, $side_b);
    } else {
        check("$p baseline: every answer 2xx, no socket errors", $b->{non2xx} == 0 && $b->{sockerr} == 0,
              "non-2xx $b->{non2xx}, socket errors $b->{sockerr}");
    }
    $RES{$p} = { m => $m, b => $b };
    push @RSS_TRACE, [$p, [ map { proc_rss_kb($_) } @WORKERS ]];
    printf " %8.0f req/s vs %8.0f (%.2fx)\n", $m->{rps}, $b->{rps}, $b->{rps} ? $m->{rps} / $b->{rps} : 0;
}

# shm after 1 000 000 tickets: wrk against the waiting path until there
if (grep { $_ eq 'waiting' } @PATHS) {
    my $t0 = time;
    my $issued = zone_status('wz')->{tickets_issued};
    my $rate = $RES{waiting} ? $RES{waiting}{m}{rps} : 10000;
    while ($issued < $O{tickets} && time - $t0 < 150) {
        my $secs = int(($O{tickets} - $issued) / ($rate || 10000) * 1.05) + 1;
        $secs = 100 if $secs > 100;
        my $w = wrk_run(path => '/w/item.html', secs => $secs, threads => 2, connections => 64);
        $rate = $w->{requests} / ($w->{duration_us} / 1e6) if $w->{requests};
        $issued = zone_status('wz')->{tickets_issued};
    }
    if ($issued < $O{tickets}) {
        # the last few: exactly what is missing
        new_visitors($O{tickets} - $issued) if $O{tickets} - $issued < 50000;
    }
    $wz = zone_status('wz');
    @SHM{qw(t2 used2 secs)} = ($wz->{tickets_issued}, $wz->{shm}{used}, time - $t0);
    push @RSS_TRACE, ['tickets', [ map { proc_rss_kb($_) } @WORKERS ]];
}

$RSS{end} = { map { $_ => proc_rss_kb($_) } @WORKERS };
$RSS{end_parts} = { map { $_ => proc_rss_parts($_) } @WORKERS };
my $elog = slurp("$RUN/error.log") // '';
my @bad = grep { /\[(alert|crit|emerg)\]/ } split /\n/, $elog;
check('error.log: no [alert], [crit] or [emerg]', !@bad, scalar(@bad) . ' lines' . (@bad ? ": $bad[0]" : ''));

stop_all();

###########################################################################
# the table

sub fmt_n { my $n = sprintf '%.0f', shift; 1 while $n =~ s/^(\d+)(\d{3})/$1,$2/; $n }

my @rows;
my @verdicts;
for my $p (@PATHS) {
    my ($m, $b) = @{ $RES{$p} }{qw(m b)};
    my $t = $PATH{$p}{target};
    my $rr = $b->{rps} ? $m->{rps} / $b->{rps} : 0;
    my $cr = $b->{cpu_us} ? $m->{cpu_us} / $b->{cpu_us} : 0;
    my @tg = (sprintf('rps >= %.2fx', $t->{rps}));
    my $ok = $rr >= $t->{rps};
    if (exists $t->{cpu}) {
        push @tg, sprintf('cpu <= %.2fx', $t->{cpu});
        $ok &&= $cr <= $t->{cpu};
    }
    if (exists $t->{redis}) {
        push @tg, 'redis calls = 0';
        $ok &&= $m->{redis_calls} == 0;
    }
    my $verdict = $ok ? 'PASS' : 'MISS';
    push @verdicts, [$p, $verdict];
    push @rows, [$p, $PATH{$p}{what}, fmt_n($m->{rps}), sprintf('%.2f', $m->{p50_ms}),
                 sprintf('%.2f', $m->{p99_ms}), sprintf('%.1f', $m->{cpu_us}),
                 sprintf('%.2fx', $rr), exists $t->{cpu} ? sprintf('%.2fx', $cr) : '',
                 join(', ', @tg) . (exists $t->{redis} ? " (got $m->{redis_calls})" : ''), $verdict];
    push @rows, ['  baseline', $PATH{$p}{base_what} . ($b->{kind} eq 'wrk' ? " ($PATH{$p}{base})" : ''),
                 fmt_n($b->{rps}), sprintf('%.2f', $b->{p50_ms}), sprintf('%.2f', $b->{p99_ms}),
                 $b->{kind} eq 'wrk' ? sprintf('%.1f', $b->{cpu_us}) : '-', '', '', '', ''];
}

my @head = ('path', 'what', 'req/s', 'p50 ms', 'p99 ms', 'cpu us/req', 'rps ratio', 'cpu ratio', 'target', 'result');
my @w = map { length } @head;
for my $r (@rows) { $w[$_] = length $r->[$_] > $w[$_] ? length $r->[$_] : $w[$_] for 0 .. $#head }
my $fmt = join(' | ', map { $_ >= 2 && $_ <= 7 ? "%$w[$_]s" : "%-$w[$_]s" } 0 .. $#head) . "\n";
my $sep = join('-|-', map { '-' x $w[$_] } 0 .. $#head) . "\n";

my $out = '';
$out .= sprintf "ngx_http_flashsale_module benchmark %s (git %s%s)\n", $stamp,
    (`git -C $ROOT rev-parse --short HEAD 2>/dev/null` =~ s/\s+//r) || '?',
    (`git -C $ROOT status --porcelain -- src ngx_http_flashsale_module.c config 2>/dev/null` ? ', C sources modified' : '');
$out .= sprintf "%s; %d CPUs; nginx %s, 2 workers, access_log off; wrk -t%d -c%d, %d s measured after %d s warm-up per run; "
    . "cpu = utime+stime of the nginx workers (/proc/<pid>/stat) per request\n"
    . "path and baseline alternate in %d segments each (A B B A ...); p50/p99 are the segments' percentiles weighted by requests\n\n",
    (`uname -sr` =~ s/\s+$//r), $NCPU, (`$NGINX -v 2>&1` =~ m{nginx/(\S+)})[0] // '?',
    $O{threads}, $O{connections}, $O{duration}, $O{warmup}, $O{segments};
$out .= sprintf $fmt, @head;
$out .= $sep;
$out .= sprintf $fmt, @$_ for @rows;
$out .= "\n";

if (defined $SHM{used2}) {
    my $ok = $SHM{used1} == $SHM{used2};
    push @verdicts, ['shm', $ok ? 'PASS' : 'MISS'];
    $out .= sprintf "shm.used of zone wz (size %s bytes): %s bytes after %s tickets, %s bytes after %s tickets "
        . "(%.0f s of wrk to issue them): %s\n", fmt_n($SHM{size}), fmt_n($SHM{used1}), fmt_n($SHM{t1}),
        fmt_n($SHM{used2}), fmt_n($SHM{t2}), $SHM{secs}, $ok ? 'equal, PASS' : 'DIFFERENT, MISS';
}
{
    my @l;
    my $grew = 0;
    for my $pid (@WORKERS) {
        my ($b, $s, $e) = map { $RSS{$_}{$pid} } qw(boot start end);
        $grew ||= $e > $s;
        my ($ps, $pe) = ($RSS{start_parts}{$pid} || {}, $RSS{end_parts}{$pid} || {});
        my $parts = join ', ', map { sprintf '%s %+d', $_, ($pe->{$_} // 0) - ($ps->{$_} // 0) }
                               grep { ($pe->{$_} // 0) != ($ps->{$_} // 0) } sort keys %{ { %$ps, %$pe } };
        push @l, sprintf 'worker %d: %s kB at boot, %s kB at start (after a warm-up of each path), %s kB at the end (%+d kB%s)',
            $pid, fmt_n($b), fmt_n($s), fmt_n($e), $e - $s, $parts ? ": $parts" : '';
    }
    push @verdicts, ['rss', $grew ? 'MISS' : 'PASS'];
    # the verdict on a line of its own: it is the workers', not the last one's
    $out .= "VmRSS " . join("\n      ", @l) . "\n"
          . "VmRSS verdict: " . ($grew ? 'a worker GREW, MISS' : 'no worker grew, PASS') . "\n";
    $out .= "VmRSS kB of the workers after each phase: "
        . join(', ', map { "$_->[0] " . join('/', @{ $_->[1] }) } @RSS_TRACE) . "\n";
}
for my $p (@PATHS) {
    my ($m, $b) = @{ $RES{$p} }{qw(m b)};
    my @n = @{ $NOTE{$p} || [] };
    push @n, sprintf('wrk CPU %.1f / %.1f us per request (path / baseline); other processes on the machine used %.0f%% / %.0f%% of the CPUs',
                     $m->{wrk_us}, $b->{wrk_us}, $m->{other_pct}, $b->{other_pct});
    $out .= "$p: " . join("\n  ", @n) . "\n";
}
my @failed = grep { !$_->[1] } @CHECKS;
$out .= sprintf "checks: %d of %d passed%s\n", @CHECKS - @failed, scalar @CHECKS,
    @failed ? "; FAILED: " . join('; ', map { "$_->[0] ($_->[2])" } @failed) : '';
$out .= sprintf "verdict: %s; total time %.0f s\n",
    join(', ', map { "$_->[0] $_->[1]" } @verdicts), time - $started;

print "\n$out";

unless ($ENV{BENCH_NO_RESULTS}) {
    make_path("$BENCH/results");
    spew("$BENCH/results/$stamp.txt", $out);
    spew("$BENCH/results/latest.txt", $out);
    print "bench: written bench/results/$stamp.txt and bench/results/latest.txt\n";
}

# a run whose setup checks failed measured something else than intended
exit(@failed ? 2 : 0);
