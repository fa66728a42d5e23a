package ReserveTest;

# Helpers for the reservation tests (issue 3) on top of FlashsaleTest:
# redis-cli access, INFO commandstats, forged passes, a keep-alive load
# client in forked processes, requests that can be left hanging or
# abandoned, and a second redis-server with a password.

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;
use IO::Select;
use POSIX qw(WNOHANG);
use Errno qw(EINTR EAGAIN EWOULDBLOCK EINPROGRESS);
use Time::HiRes qw(time sleep);
use FlashsaleTest ();

our @EXPORT = qw(
    cli commandstats evalsha_calls bearer pass_headers reserve_req
    zone_stats load_run open_request read_response parse_http
    start_aux_redis stock_key holds_key qty_key
    reserve_script script_call add_holds redis_commands
);

sub stock_key { my ($zone, $sku) = @_; return "fs:{$zone:$sku}:stock" }
sub holds_key { my ($zone, $sku) = @_; return "fs:{$zone:$sku}:holds" }
sub qty_key   { my ($zone, $sku) = @_; return "fs:{$zone:$sku}:qty" }

# cli($t, @args) or cli({ port => , n => , a => , s => }, @args):
# redis-cli's raw output, trailing newline removed. Dies when redis-cli
# fails to run.
sub cli {
    my ($to, @args) = @_;
    my %o = ref $to eq 'HASH' ? %$to : (port => $to->redis_port);
    my @cmd = ('redis-cli', '--no-auth-warning');
    if ($o{s}) {
        push @cmd, '-s', $o{s};
    } else {
        push @cmd, '-h', '127.0.0.1', '-p', $o{port};
    }
    push @cmd, '-n', $o{n} if defined $o{n};
    push @cmd, '-a', $o{a} if defined $o{a};
    my ($rc, $out) = FlashsaleTest::run_cmd(10, @cmd, @args);
    die "redis-cli @args: exit $rc: $out" if $rc;
    $out =~ s/\n\z//;
    return $out;
}

# { evalsha => { calls => N, rejected_calls => N, failed_calls => N }, ... }
sub commandstats {
    my ($to) = @_;
    my %s;
    for my $l (split /\r?\n/, cli($to, 'INFO', 'commandstats')) {
        next unless $l =~ /^cmdstat_([^:]+):(.*)$/;
        my ($name, $rest) = ($1, $2);
        for my $kv (split /,/, $rest) {
            my ($k, $v) = split /=/, $kv, 2;
            $s{$name}{$k} = $v;
        }
    }
    return \%s;
}

# every EVALSHA Redis saw, whatever became of it
sub evalsha_calls {
    my ($to) = @_;
    my $e = commandstats($to)->{evalsha} or return 0;
    return ($e->{calls} // 0) + ($e->{rejected_calls} // 0);
}

# a pass for $sub in $zone, as "Authorization: Bearer"
sub bearer {
    my ($t, $sub, %o) = @_;
    my $tok = $t->forge(zone => $o{zone} // 'z', sub => $sub, tkt => $o{tkt} // 1,
                        adm => 1);
    return "Bearer $tok";
}

sub pass_headers {
    my ($t, $sub, %o) = @_;
    return (Accept => 'application/json', Authorization => bearer($t, $sub, %o));
}

# $t->get of a reservation for shopper $sub (JSON)
sub reserve_req {
    my ($t, $path, $sub, %o) = @_;
    return $t->get($path, pass_headers($t, $sub, %o));
}

# the status object of one zone
sub zone_stats {
    my ($t, $zone, $path) = @_;
    return $t->status($path // '/flashsale_status')->{ $zone // 'z' } || {};
}

# the reservation's Lua script, as the C string literals of
# ngx_http_flashsale_script in src/ngx_http_flashsale_reserve.c give it
# (as bench/bench.pl reads it)
my $SCRIPT;
sub reserve_script {
    return $SCRIPT if defined $SCRIPT;
    my $file = "$FlashsaleTest::ROOT/src/ngx_http_flashsale_reserve.c";
    open my $fh, '<', $file or die "$file: $!";
    my $src = do { local $/; <$fh> };
    close $fh;
    my ($block) = $src =~ /ngx_http_flashsale_script\s*=\s*\{\s*ngx_string\((.*?)\),\s*\{\s*0\s*\}\s*\};/s
        or die "the script is not where ReserveTest expects it in $file";
    my $text = '';
    while ($block =~ /"((?:[^"\\]|\\.)*)"/g) {
        my $lit = $1;
        $lit =~ s/\\(n|t|r|\\|"|')/{ n => "\n", t => "\t", r => "\r", '\\' => '\\', '"' => '"', "'" => "'" }->{$1}/ge;
        $text .= $lit;
    }
    return $SCRIPT = $text;
}

# script_call($t, op => 'reserve', sku =>, visitor =>, qty => 1,
#             hold => ms, holders => cap, zone => 'z'): the script run
# with EVAL straight in Redis, as another nginx node sharing the Redis
# would run it; its reply (an array ref, or { error => ... })
sub script_call {
    my ($t, %o) = @_;
    my $zone = $o{zone} // 'z';
    my $sku = $o{sku} // die 'script_call: sku';
    return $t->redis('EVAL', reserve_script(), 3, stock_key($zone, $sku),
                     holds_key($zone, $sku), qty_key($zone, $sku),
                     $o{op} // 'reserve', $o{visitor} // '-', $o{qty} // 1,
                     $o{hold} // 600_000, 100, $o{holders} // 0);
}

# add_holds($t, $sku, $prefix, $n, $ms, zone => 'z'): $n live holds of 1
# unit for visitors "$prefix1" .. "$prefix$n", expiring $ms after Redis'
# now, written in one EVAL (stock untouched); returns the holds' count
sub add_holds {
    my ($t, $sku, $prefix, $n, $ms, %o) = @_;
    my $zone = $o{zone} // 'z';
    my $lua = <<'LUA';
local t = redis.call('TIME')
local e = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          + tonumber(ARGV[3])
for i = 1, tonumber(ARGV[2]) do
  redis.call('ZADD', KEYS[1], e, ARGV[1] .. i)
  redis.call('HSET', KEYS[2], ARGV[1] .. i, 1)
end
return redis.call('ZCARD', KEYS[1])
LUA
    return $t->redis('EVAL', $lua, 2, holds_key($zone, $sku), qty_key($zone, $sku),
                     $prefix, $n, $ms);
}

# every command Redis ran (INFO commandstats: calls, those inside scripts
# included), but INFO itself
sub redis_commands {
    my ($to) = @_;
    my $st = commandstats($to);
    my $n = 0;
    for my $c (keys %$st) {
        next if $c eq 'info';
        $n += ($st->{$c}{calls} // 0) + ($st->{$c}{rejected_calls} // 0);
    }
    return $n;
}

###########################################################################
# HTTP responses

# parse_http(\$buf, $eof) -> ({status, headers => {lc => value}, body}, used)
# or () when incomplete
sub parse_http {
    my ($buf, $eof, $head_only) = @_;
    my $he = index($$buf, "\r\n\r\n");
    return if $he < 0;
    my @lines = split /\r\n/, substr($$buf, 0, $he);
    my $sl = shift @lines;
    my ($status) = $sl =~ m{^HTTP/\d\.\d\s+(\d{3})} or die "bad status line: $sl";
    my %h;
    for (@lines) {
        my ($n, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        $h{ lc $n } = exists $h{ lc $n } ? "$h{lc $n}, $v" : $v;
    }
    my $pos = $he + 4;
    my $body = '';
    if ($head_only || $status == 204 || $status == 304) {
    } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        while (1) {
            my $e = index($$buf, "\r\n", $pos);
            return if $e < 0;
            my $size = hex(substr($$buf, $pos, $e - $pos));
            $pos = $e + 2;
            if ($size == 0) {
                return if length($$buf) < $pos + 2;
                $pos += 2;
                last;
            }
            return if length($$buf) < $pos + $size + 2;
            $body .= substr($$buf, $pos, $size);
            $pos += $size + 2;
        }
    } elsif (defined $h{'content-length'}) {
        return if length($$buf) < $pos + $h{'content-length'};
        $body = substr($$buf, $pos, $h{'content-length'});
        $pos += $h{'content-length'};
    } else {
        return unless $eof;
        $body = substr($$buf, $pos);
        $pos = length $$buf;
    }
    return ({ status => $status + 0, headers => \%h, body => $body }, $pos);
}

sub _request_text {
    my (%r) = @_;
    my $req = ($r{method} // 'GET') . " $r{path} HTTP/1.1\r\nHost: localhost\r\n";
    my @h = @{ $r{headers} || [] };
    for (my $i = 0; $i < @h; $i += 2) { $req .= "$h[$i]: $h[$i+1]\r\n" }
    $req .= "Connection: close\r\n" unless $r{keepalive};
    return "$req\r\n";
}

# open_request(port => , path => , headers => [...]): sends the request and
# returns a handle { sock, t0 } without waiting for the answer.
sub open_request {
    my (%r) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $r{port},
                                  Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    my $out = _request_text(%r);
    my $t0 = time;
    while (length $out) {
        my $n = syswrite($s, $out);
        die "write: $!" unless defined $n;
        substr($out, 0, $n, '');
    }
    return { sock => $s, t0 => $t0 };
}

# read_response($h, $timeout) -> response hash with {elapsed} (seconds since
# the request was sent) or { status => 0, error => ... }
sub read_response {
    my ($h, $timeout) = @_;
    my $s = $h->{sock};
    my $sel = IO::Select->new($s);
    my $deadline = time + ($timeout // 10);
    my $buf = '';
    my $eof = 0;
    while (1) {
        my ($res) = eval { parse_http(\$buf, $eof) };
        if ($res) {
            $res->{elapsed} = time - $h->{t0};
            close $s;
            return $res;
        }
        if ($eof) {
            close $s;
            return { status => 0, error => 'closed: ' . substr($buf, 0, 200),
                     elapsed => time - $h->{t0} };
        }
        my $left = $deadline - time;
        if ($left <= 0 || !$sel->can_read($left)) {
            close $s;
            return { status => 0, error => 'timeout', elapsed => time - $h->{t0} };
        }
        my $n = sysread($s, $buf, 65536, length $buf);
        $eof = 1 unless $n;
    }
}

###########################################################################
# load: many requests over keep-alive connections from forked clients

# load_run(port => N, reqs => [ raw request text, ... ] (HTTP/1.1, keep-alive),
#          procs => 4, conns => 16 (per process), timeout => 60, dir => path)
# Returns a list (same order as reqs) of [status, x-reservation, body,
# content-type, cache-control]; status 0 means no answer (with the error in
# the body).
sub load_run {
    my (%o) = @_;
    my $reqs = $o{reqs};
    my $procs = $o{procs} // 4;
    my $conns = $o{conns} // 16;
    my $timeout = $o{timeout} // 60;
    my $dir = $o{dir} // die "load_run: dir";
    my @pids;
    for my $p (0 .. $procs - 1) {
        my @mine = grep { $_ % $procs == $p } 0 .. $#$reqs;
        my $file = "$dir/load-$$-$p.out";
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            my $ok = eval {
                _load_child($o{port}, $reqs, \@mine, $conns, $timeout, $file);
                1;
            };
            if (!$ok) {
                open my $fh, '>>', $file;
                print $fh "ERROR\t$@\n";
            }
            POSIX::_exit(0);
        }
        push @pids, [$pid, $file];
    }
    my @res;
    my $deadline = time + $timeout + 10;
    for my $pf (@pids) {
        my ($pid, $file) = @$pf;
        while (waitpid($pid, WNOHANG) == 0) {
            if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); last }
            sleep 0.02;
        }
        open my $fh, '<', $file or next;
        while (my $l = <$fh>) {
            chomp $l;
            my @f = split /\t/, $l, -1;
            if ($f[0] eq 'ERROR') {
                die "load client failed: $f[1]";
            }
            $res[$f[0]] = [ @f[1 .. 5] ];
        }
        close $fh;
        unlink $file;
    }
    for my $i (0 .. $#$reqs) {
        $res[$i] //= [ 0, '', 'no result', '', '' ];
    }
    return @res;
}

sub _load_child {
    my ($port, $reqs, $mine, $nconns, $timeout, $file) = @_;
    $SIG{PIPE} = 'IGNORE';
    open my $out, '>', $file or die "$file: $!";
    my @queue = @$mine;
    my $deadline = time + $timeout;
    my %c;                              # fileno => state
    my $sel_r = IO::Select->new;
    my $sel_w = IO::Select->new;

    my $open = sub {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      Proto => 'tcp', Blocking => 0)
            or die "connect: $!";
        $c{ fileno $s } = { sock => $s, out => '', in => '', idx => undef,
                            retries => 0 };
        return $c{ fileno $s };
    };
    my $drop = sub {
        my ($st) = @_;
        $sel_r->remove($st->{sock});
        $sel_w->remove($st->{sock});
        delete $c{ fileno $st->{sock} };
        close $st->{sock};
    };
    my $record = sub {
        my ($idx, @f) = @_;
        s/[\t\r\n]+/ /g for @f;
        print $out join("\t", $idx, @f), "\n";
    };
    my $next = sub {
        my ($st) = @_;
        my $idx = shift @queue;
        if (!defined $idx) { $drop->($st); return }
        $st->{idx} = $idx;
        $st->{out} = $reqs->[$idx];
        $st->{in} = '';
        $st->{fresh} = 0;
        $sel_w->add($st->{sock});
        $sel_r->add($st->{sock});
    };

    for (1 .. $nconns) {
        last unless @queue;
        my $st = $open->();
        $next->($st);
    }

    while (%c) {
        my $left = $deadline - time;
        if ($left <= 0) {
            for my $st (values %c) {
                $record->($st->{idx}, 0, '', 'timeout', '', '') if defined $st->{idx};
                $drop->($st);
            }
            $record->($_, 0, '', 'timeout (not sent)', '', '') for @queue;
            last;
        }
        my ($rr, $wr) = IO::Select->select($sel_r, $sel_w, undef, $left > 1 ? 1 : $left);
        for my $s (@{ $wr || [] }) {
            my $st = $c{ fileno $s } or next;
            my $n = syswrite($s, $st->{out});
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR
                    || $! == EINPROGRESS;
                $st->{werr} = "write: $!";
                $st->{out} = '';
            } else {
                substr($st->{out}, 0, $n, '');
            }
            $sel_w->remove($s) unless length $st->{out};
        }
        for my $s (@{ $rr || [] }) {
            my $st = $c{ fileno $s } or next;
            my $n = sysread($s, $st->{in}, 65536, length $st->{in});
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            }
            my $eof = !$n;
            my ($res, $used) = eval { parse_http(\$st->{in}, $eof) };
            if ($res) {
                my $h = $res->{headers};
                $record->($st->{idx}, $res->{status}, $h->{'x-reservation'} // '',
                          $res->{body}, $h->{'content-type'} // '',
                          $h->{'cache-control'} // '');
                substr($st->{in}, 0, $used, '');
                if ($eof || ($h->{connection} // '') =~ /close/i) {
                    $drop->($st);
                    $next->($open->()) if @queue;
                } else {
                    $next->($st);
                }
                next;
            }
            if ($eof) {
                $record->($st->{idx}, 0, '', 'connection closed without an answer'
                          . ($st->{werr} ? " ($st->{werr})" : ''), '', '');
                $drop->($st);
                $next->($open->()) if @queue;
            }
        }
    }
    close $out;
}

###########################################################################
# a second redis-server (e.g. with --requirepass), not managed by the harness

my @AUX;

# start_aux_redis($t, password => 'pw', args => [...]) -> { port, pid, a }
sub start_aux_redis {
    my ($t, %o) = @_;
    my $port = FlashsaleTest::free_port();
    my $name = "aux-redis-$port";
    my $dir = $t->dir;
    my @cmd = ($FlashsaleTest::REDIS_SERVER, '--port', $port, '--bind', '127.0.0.1',
               '--save', '', '--appendonly', 'no', '--daemonize', 'no',
               '--dir', $dir, '--logfile', "$dir/$name.log");
    push @cmd, '--requirepass', $o{password} if defined $o{password};
    push @cmd, @{ $o{args} || [] };
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$dir/$name.out";
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    my $r = { port => $port, pid => $pid, a => $o{password} };
    push @AUX, $r;
    my $ok = FlashsaleTest::poll_until(10, sub {
        die "aux redis-server exited" if waitpid($pid, WNOHANG) == $pid;
        my $pong = eval { cli($r, 'PING') } // '';
        return $pong eq 'PONG';
    }, 0.05);
    die "aux redis-server on $port did not answer PING" unless $ok;
    return $r;
}

sub stop_aux_redis {
    my ($r) = @_;
    my $pid = delete $r->{pid} or return;
    kill 'TERM', $pid;
    my $deadline = time + 10;
    while (time < $deadline) {
        return if waitpid($pid, WNOHANG) != 0;
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

END {
    my $rc = $?;
    stop_aux_redis($_) for @AUX;
    $? = $rc;
}

1;
