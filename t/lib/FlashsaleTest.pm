package FlashsaleTest;

# A small test harness for ngx_http_flashsale_module, in the spirit of
# nginx-tests' Test::Nginx (which is not installable here).
#
#   my $t = FlashsaleTest->new;              # temp dir, free ports
#   $t->write_keys;                          # 48-byte random key in DIR/keys
#   $t->run_nginx(<<'EOF');                  # http-block template
#   flashsale_zone z:1m;
#   flashsale_secret_file %%KEYS%%;
#   server { listen 127.0.0.1:%%PORT%%; ... }
#   EOF
#   my $r = $t->get('/drop/a.html', Accept => 'application/json');
#   $t->finish;                              # stops servers, scans error.log,
#                                            # calls done_testing
#
# Every wait is a poll with a deadline. FLASHSALE_KEEP=1 keeps the temp dir.
# FLASHSALE_NGINX overrides the nginx binary, FLASHSALE_MODULE the module.
# FLASHSALE_ASAN=1 (or SANITIZE=address) preloads libasan and libubsan into
# nginx for a module built with SANITIZE=address scripts/build.sh; their
# reports go to files (log_path) that finish() turns into a failed test.
# FLASHSALE_VALGRIND=1 runs nginx under valgrind memcheck in single-process
# mode (master_process off): see "valgrind" below; finish() fails the test
# on any error valgrind reports. FLASHSALE_ASAN_NGINX=1 runs the nginx and
# module that scripts/fuzz.sh builds (ASan+UBSan, NGX_DEBUG_PALLOC).

use strict;
use warnings;

use Exporter 'import';
use Test::More ();
use File::Temp ();
use File::Basename qw(dirname);
use File::Path qw(make_path);
use Cwd qw(abs_path);
use IO::Socket::INET;
use IO::Select;
use POSIX qw(WNOHANG);
use Errno qw(EINTR EAGAIN EWOULDBLOCK EINPROGRESS);
use Time::HiRes qw(time sleep);
use Digest::SHA qw(hmac_sha256 hmac_sha384 hmac_sha512);
use MIME::Base64 qw(encode_base64url decode_base64url);
use JSON::PP ();

our @EXPORT = qw(
    jwt_encode jwt_decode jwt_claims jwt_verify b64u b64u_decode
    parse_set_cookie random_string poll_until json_decode
    make_claims sleep_until
);

our $ROOT   = abs_path(dirname(__FILE__) . '/../..');
# FLASHSALE_ASAN_NGINX=1: nginx and the module as scripts/fuzz.sh builds them
# (clang, ASan+UBSan in both, NGX_DEBUG_PALLOC): make test-asan-nginx
our $ASAN_NGINX = $ENV{FLASHSALE_ASAN_NGINX} ? 1 : 0;
our $NGINX  = $ENV{FLASHSALE_NGINX}
    // ($ASAN_NGINX ? "$ROOT/build/nginx-src-fuzz/objs/nginx" : '/usr/sbin/nginx');
our $MODULE = $ENV{FLASHSALE_MODULE}
    // ($ASAN_NGINX ? "$ROOT/build/nginx-src-fuzz/objs/ngx_http_flashsale_module.so"
        : ($ENV{SANITIZE} // '') eq 'address' || $ENV{FLASHSALE_ASAN}
        ? "$ROOT/build/ngx_http_flashsale_module-asan.so"
        : "$ROOT/build/ngx_http_flashsale_module.so");
our $REDIS_SERVER = $ENV{FLASHSALE_REDIS_SERVER} // 'redis-server';
our $VALGRIND = $ENV{FLASHSALE_VALGRIND} ? 1 : 0;
our $SAN_DIR;

my $JSON = JSON::PP->new->canonical->allow_nonref;
my @INSTANCES;
my %PORTS_TAKEN;

###########################################################################
# construction, files, ports

sub new {
    my ($class, %o) = @_;

    my $keep = $ENV{FLASHSALE_KEEP} ? 1 : 0;
    my $dir = File::Temp::tempdir('fst-XXXXXXXX', TMPDIR => 1,
                                  CLEANUP => !$keep);
    # workers run as "nobody" and serve static files from here
    chmod 0755, $dir;

    my $self = bless {
        dir       => $dir,
        ports     => {},
        workers   => $o{workers} // 2,
        log_level => $o{log_level} // 'info',
        killed    => [],
        keys      => [],
        nt        => 0,
    }, $class;

    Test::More::diag("test dir: $dir (kept)") if $keep;
    _valgrind_skip() if $VALGRIND;
    push @INSTANCES, $self;
    return $self;
}

sub dir { $_[0]{dir} }
sub workers { $_[0]{workers} }

sub path {
    my ($self, $name) = @_;
    return $name =~ m{^/} ? $name : "$self->{dir}/$name";
}

sub write_file {
    my ($self, $name, $content, $mode) = @_;
    my $path = $self->path($name);
    make_path(dirname($path));
    open my $fh, '>:raw', $path or die "write $path: $!";
    print $fh $content;
    close $fh or die "close $path: $!";
    chmod($mode // 0644, $path);
    return $path;
}

sub read_file {
    my ($self, $name) = @_;
    my $path = $self->path($name);
    open my $fh, '<:raw', $path or return undef;
    local $/;
    my $c = <$fh>;
    return $c // '';
}

sub _port_free {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

# A free loopback port, below the ephemeral range so that client sockets
# never take it between the check and nginx's bind.
sub free_port {
    for (1 .. 500) {
        my $p = 20000 + int(rand(12000));
        next if $PORTS_TAKEN{$p};
        next unless _port_free($p);
        $PORTS_TAKEN{$p} = 1;
        return $p;
    }
    die "no free port found";
}

# port(1) is %%PORT%%, port(2) is %%PORT2%%, ...
sub port {
    my ($self, $n) = @_;
    $n //= 1;
    return $self->{ports}{$n} //= free_port();
}

sub random_string {
    my ($len, $alphabet) = @_;
    $alphabet //= join '', 'A' .. 'Z', 'a' .. 'z', '0' .. '9', '-', '_';
    return join '', map { substr($alphabet, int(rand(length $alphabet)), 1) }
        1 .. $len;
}

# Keys file: one key per line, line 1 signs. With no arguments one random
# 48-byte key. Returns the first key.
sub write_keys {
    my ($self, @keys) = @_;
    @keys = (random_string(48)) unless @keys;
    $self->{keys} = [@keys];
    $self->{keys_file} = $self->write_file('keys', join('', map { "$_\n" } @keys),
                                           0600);
    return $keys[0];
}

sub key {
    my ($self, $n) = @_;
    $self->write_keys unless @{ $self->{keys} };
    return $self->{keys}[$n // 0];
}

sub keys_file {
    my ($self) = @_;
    $self->write_keys unless $self->{keys_file};
    return $self->{keys_file};
}

###########################################################################
# processes

sub poll_until {
    my ($timeout, $cb, $interval) = @_;
    my $deadline = time + $timeout;
    $interval //= 0.02;
    while (1) {
        my @r = $cb->();
        return wantarray ? @r : $r[0] if $r[0];
        return if time > $deadline;
        sleep $interval;
    }
}

# In a child about to exec nginx: preload libasan for a module built with
# SANITIZE=address (nginx itself is not instrumented).
# SANITIZE=address builds the module with ASan and UBSan: both runtimes are
# preloaded (libasan first). ASan writes its reports into files under
# san_dir() (log_path), one per process; gcc's UBSan, next to ASan, writes
# to stderr whatever log_path says, which is error.log in nginx (with a
# stack: scripts/san-options.c). finish() and END look at both.
sub _asan_env {
    return unless sanitizing();
    my $d = san_dir();
    if ($ASAN_NGINX) {
        # clang's runtime is linked in, UBSan's reports share ASan's file
        $ENV{ASAN_OPTIONS} = join ':', ($ENV{ASAN_OPTIONS} // 'detect_leaks=0'),
            "log_path=$d/san";
        $ENV{UBSAN_OPTIONS} = join ':', ($ENV{UBSAN_OPTIONS}
            // 'print_stacktrace=1:halt_on_error=1'), "log_path=$d/san",
            "suppressions=$ROOT/fuzz/ubsan.supp";
        return;
    }
    my @pre = _san_runtimes();
    $ENV{LD_PRELOAD} = join(' ', @pre) if @pre;
    $ENV{ASAN_OPTIONS} = join ':', ($ENV{ASAN_OPTIONS}
        // 'detect_leaks=0:abort_on_error=0'), "log_path=$d/asan";
    $ENV{UBSAN_OPTIONS} //= 'print_stacktrace=1:halt_on_error=1';
}

sub _spawn {
    my ($self, $out, @cmd) = @_;
    san_dir() if sanitizing();
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        _asan_env() if $cmd[0] eq $NGINX;
        { no warnings "exec"; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    return $pid;
}

# Run a command, capture stdout+stderr, bounded in time: (exit code, output).
sub run_cmd {
    my ($timeout, @cmd) = @_;
    san_dir() if sanitizing();
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $r;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $w or POSIX::_exit(126);
        open STDERR, '>&', $w or POSIX::_exit(126);
        _asan_env() if $cmd[0] eq $NGINX;
        { no warnings "exec"; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    close $w;
    my $out = '';
    my $sel = IO::Select->new($r);
    my $deadline = time + $timeout;
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0) {
            kill 'KILL', $pid;
            $out .= "\n[harness: killed after ${timeout}s]\n";
            last;
        }
        next unless $sel->can_read($left);
        my $n = sysread($r, my $chunk, 65536);
        last unless $n;
        $out .= $chunk;
    }
    close $r;
    waitpid($pid, 0);
    return ($? >> 8, $out) if ($? & 127) == 0;
    return (128 + ($? & 127), $out);
}

sub _wait_exit {
    my ($pid, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        my $r = waitpid($pid, WNOHANG);
        return 1 if $r == $pid || $r == -1;
        sleep 0.02;
    }
    return 0;
}

sub _stop_pid {
    my ($pid, $first, $timeout) = @_;
    return unless $pid;
    kill $first, $pid;
    return if _wait_exit($pid, $timeout);
    kill 'TERM', $pid;
    return if _wait_exit($pid, 5);
    kill 'KILL', $pid;
    _wait_exit($pid, 5);
}

# children of a pid, as [pid, cmdline]
sub _children {
    my ($ppid) = @_;
    my @r;
    opendir(my $dh, '/proc') or return;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        open(my $fh, '<', "/proc/$p/stat") or next;
        my $st = <$fh>;
        close $fh;
        next unless defined $st && $st =~ /^.*\)\s+(\S)\s+(\d+)/s;
        next unless $2 == $ppid && $1 ne 'Z';
        my $cmd = '';
        if (open(my $c, '<', "/proc/$p/cmdline")) {
            local $/;
            $cmd = <$c> // '';
            close $c;
        }
        $cmd =~ tr/\0/ /;
        push @r, [$p + 0, $cmd];
    }
    closedir $dh;
    return @r;
}

###########################################################################
# redis

sub redis_port {
    my ($self) = @_;
    return $self->{redis_port} //= free_port();
}

sub start_redis {
    my ($self, @extra) = @_;
    die "redis already running" if $self->{redis_pid};
    my $port = $self->redis_port;
    my $pid = $self->_spawn("$self->{dir}/redis.out", $REDIS_SERVER,
        '--port', $port, '--bind', '127.0.0.1', '--save', '',
        '--appendonly', 'no', '--daemonize', 'no', '--dir', $self->{dir},
        '--logfile', "$self->{dir}/redis.log", @extra);
    $self->{redis_pid} = $pid;
    my $ok = poll_until(10, sub {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $self->{redis_pid};
            die "redis-server exited: " . ($self->read_file('redis.log') // '')
                . ($self->read_file('redis.out') // '');
        }
        my $r = eval { $self->redis('PING') };
        return defined $r && !ref $r && $r eq 'PONG';
    });
    die "redis-server on port $port did not answer PING in 10s" unless $ok;
    return $port;
}

sub stop_redis {
    my ($self) = @_;
    my $pid = delete $self->{redis_pid} or return;
    _stop_pid($pid, 'TERM', 10);
}

sub restart_redis {
    my ($self) = @_;
    $self->stop_redis;
    return $self->start_redis;
}

sub redis_pid { $_[0]{redis_pid} }

sub _resp_encode {
    my @a = @_;
    my $s = '*' . scalar(@a) . "\r\n";
    $s .= '$' . length($_) . "\r\n$_\r\n" for @a;
    return $s;
}

# Parse one RESP value at $$buf; returns (value, consumed) or () if incomplete.
# Errors come back as { error => 'ERR ...' }.
sub _resp_parse {
    my ($buf, $pos) = @_;
    my $eol = index($$buf, "\r\n", $pos);
    return if $eol < 0;
    my $type = substr($$buf, $pos, 1);
    my $line = substr($$buf, $pos + 1, $eol - $pos - 1);
    my $next = $eol + 2;
    if ($type eq '+') { return ($line, $next) }
    if ($type eq '-') { return ({ error => $line }, $next) }
    if ($type eq ':') { return ($line + 0, $next) }
    if ($type eq '$') {
        return (undef, $next) if $line < 0;
        return if length($$buf) < $next + $line + 2;
        return (substr($$buf, $next, $line), $next + $line + 2);
    }
    if ($type eq '*') {
        return (undef, $next) if $line < 0;
        my @a;
        for (1 .. $line) {
            my ($v, $n) = _resp_parse($buf, $next);
            return unless defined $n;
            push @a, $v;
            $next = $n;
        }
        return (\@a, $next);
    }
    die "bad RESP type '$type'";
}

# One command on a fresh connection: $t->redis(qw(SET k v)).
sub redis {
    my ($self, @cmd) = @_;
    my $port = $self->{redis_port} // die "redis not started";
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 2)
        or die "redis connect: $!";
    my $out = _resp_encode(@cmd);
    my $sel = IO::Select->new($s);
    my $deadline = time + 5;
    while (length $out) {
        die "redis write timeout" unless $sel->can_write($deadline - time);
        my $n = syswrite($s, $out);
        die "redis write: $!" unless defined $n;
        substr($out, 0, $n, '');
    }
    my $buf = '';
    while (1) {
        my ($v, $n) = _resp_parse(\$buf, 0);
        if (defined $n) { close $s; return $v }
        my $left = $deadline - time;
        die "redis read timeout" if $left <= 0 || !$sel->can_read($left);
        my $r = sysread($s, $buf, 65536, length $buf);
        die "redis closed connection" unless $r;
    }
}

###########################################################################
# nginx configuration

sub subst {
    my ($self, $text) = @_;
    $text =~ s/%%PORT(\d*)%%/$self->port($1 eq '' ? 1 : $1)/ge;
    $text =~ s/%%REDIS_PORT%%/$self->redis_port/ge;
    $text =~ s/%%KEYS%%/$self->keys_file/ge;
    $text =~ s/%%DIR%%/$self->{dir}/g;
    return $text;
}

sub wrap_conf {
    my ($self, $http, $d, %o) = @_;
    $d //= $self->{dir};
    my $workers = $o{workers} // $self->{workers};
    my $level   = $o{log_level} // $self->{log_level};
    my $main    = $o{main} // '';
    $main = "master_process off;\n$main" if $VALGRIND;
    my $events  = $o{events} // 'worker_connections 1024;';
    return <<"EOF";
load_module $MODULE;
worker_processes $workers;
pid $d/nginx.pid;
error_log $d/error.log $level;
$main

events {
    $events
}

http {
    client_body_temp_path $d/client_body_temp;
    proxy_temp_path       $d/proxy_temp;
    fastcgi_temp_path     $d/fastcgi_temp;
    uwsgi_temp_path       $d/uwsgi_temp;
    scgi_temp_path        $d/scgi_temp;
    access_log            $d/access.log;

    types {
        text/html         html;
        text/plain        txt;
        application/json  json;
    }
    default_type text/plain;

$http
}
EOF
}

# Write DIR/nginx.conf from an http-block template; returns the text.
sub write_conf {
    my ($self, $template, %o) = @_;
    $self->{template} = $template;
    $self->{conf_opts} = \%o;
    my $conf = $self->wrap_conf($self->subst($template), undef, %o);
    $self->write_file('nginx.conf', $conf);
    $self->{listen_ports} = [ _listen_ports($conf) ];
    return $conf;
}

sub _listen_ports {
    my ($conf) = @_;
    my %p;
    while ($conf =~ /^\s*listen\s+(?:[\d.]+:|\[[^\]]*\]:|localhost:)?(\d+)\b/mg) {
        $p{$1} = 1;
    }
    return sort { $a <=> $b } keys %p;
}

# nginx -t on a template (wrapped like write_conf, in its own subdirectory so
# its logs never mix with the running instance's): (exit code, output).
# raw => 1 takes a complete nginx.conf instead of an http-block template.
sub nginx_t {
    my ($self, $template, %o) = @_;
    my $n = ++$self->{nt};
    my $d = "$self->{dir}/nt$n";
    make_path($d);
    my $conf = $o{raw} ? $self->subst($template)
                       : $self->wrap_conf($self->subst($template), $d, %o);
    $self->write_file("$d/nginx.conf", $conf);
    my ($rc, $out) = run_cmd(20, $NGINX, '-t', '-p', "$d/", '-c',
                             "$d/nginx.conf", '-e', "$d/error.log");
    # kept for finish(): a sanitizer report of nginx -t lands here
    $self->write_file("$d/nginx-t.out", $out) if sanitizing();
    return wantarray ? ($rc, $out, "$d/nginx.conf") : $rc;
}

###########################################################################
# nginx processes

sub nginx_pid { $_[0]{nginx_pid} }

sub run_nginx {
    my ($self, $template, %o) = @_;
    $self->write_conf($template, %o) if defined $template;
    return $self->start_nginx;
}

sub _nginx_died {
    my ($self, $why) = @_;
    my $log = $self->read_file('error.log') // '';
    my $out = $self->read_file('nginx.out') // '';
    my @l = (split(/\n/, $log))[-15 .. -1];
    die "$why\n--- error.log (tail) ---\n"
        . join("\n", grep { defined } @l) . "\n--- stderr ---\n$out\n";
}

sub start_nginx {
    my ($self) = @_;
    die "nginx already running" if $self->{nginx_pid};
    die "no nginx.conf written" unless -f "$self->{dir}/nginx.conf";
    my $pid = $self->_spawn("$self->{dir}/nginx.out", $self->_valgrind_cmd,
        $NGINX,
        '-p', "$self->{dir}/", '-c', "$self->{dir}/nginx.conf",
        '-e', "$self->{dir}/error.log", '-g', 'daemon off;');
    $self->{nginx_pid} = $pid;
    my $want = $self->{conf_opts}{workers} // $self->{workers};
    $want = 1 if $VALGRIND;     # the one process is its own worker
    my @ports = @{ $self->{listen_ports} || [] };

    my $ok = poll_until($VALGRIND ? 120 : 15, sub {
        if (waitpid($pid, WNOHANG) == $pid) {
            my $st = $?;
            delete $self->{nginx_pid};
            $self->_nginx_died("nginx exited during start (status $st)");
        }
        return 0 unless scalar($self->worker_pids) == $want;
        for my $p (@ports) {
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                PeerPort => $p, Proto => 'tcp', Timeout => 1) or return 0;
            close $s;
        }
        return 1;
    });
    $self->_nginx_died("nginx did not come up in time") unless $ok;
    $self->{started_at} = time;
    return $pid;
}

sub stop_nginx {
    my ($self) = @_;
    my $pid = delete $self->{nginx_pid} or return;
    # valgrind checks for leaks when the process exits: give it time
    _stop_pid($pid, 'QUIT', $VALGRIND ? 120 : 10);
}

# Worker processes of the running master (not old ones shutting down).
sub worker_pids {
    my ($self) = @_;
    my $m = $self->{nginx_pid} or return wantarray ? () : 0;
    if ($VALGRIND) {
        # single-process mode: nginx serves requests itself
        my @w = kill(0, $m) ? ($m) : ();
        return wantarray ? @w : scalar @w;
    }
    my @w = sort { $a <=> $b } map { $_->[0] }
        grep { $_->[1] =~ /worker process/ && $_->[1] !~ /shutting down/ }
        _children($m);
    return wantarray ? @w : scalar @w;
}

sub all_children {
    my ($self) = @_;
    my $m = $self->{nginx_pid} or return;
    return _children($m);
}

# HUP (optionally after writing a new template) and wait until a full set of
# new workers replaced the old ones and the old ones are gone. True on success.
sub reload {
    my ($self, $template, %o) = @_;
    my $m = $self->{nginx_pid} or die "nginx not running";
    if (defined $template) {
        $self->write_conf($template, %{ $self->{conf_opts} || {} }, %o);
    }
    die "reload: nginx in single-process mode (valgrind) does not serve the "
        . "new configuration after HUP\n" if $VALGRIND;
    my %old = map { $_ => 1 } $self->worker_pids;
    my $want = $self->{conf_opts}{workers} // $self->{workers};
    kill 'HUP', $m;
    my $ok = poll_until($o{timeout} // 15, sub {
        my @w = $self->worker_pids;
        return 0 unless @w == $want;
        return 0 if grep { $old{$_} } @w;
        return 0 if grep { kill 0, $_ } keys %old;
        return 1;
    });
    return $ok ? 1 : 0;
}

# kill -9 one worker and wait for the master to replace it.
# Returns (killed pid, new worker pids) or () on timeout.
sub kill_worker {
    my ($self, $pid) = @_;
    die "kill_worker: there are no worker processes under valgrind "
        . "(single-process mode)" if $VALGRIND;
    my @w = $self->worker_pids;
    $pid //= $w[0];
    die "no worker to kill" unless $pid;
    push @{ $self->{killed} }, $pid;
    kill 'KILL', $pid;
    my $want = scalar @w;
    my @new = poll_until(15, sub {
        my @n = $self->worker_pids;
        return () if grep { $_ == $pid } @n;
        return () unless @n == $want;
        return @n;
    });
    return @new ? ($pid, @new) : ();
}

sub error_log {
    my ($self) = @_;
    return $self->read_file('error.log') // '';
}

# byte offset into error.log, for log_since
sub log_mark {
    my ($self) = @_;
    return -s "$self->{dir}/error.log" // 0;
}

sub log_since {
    my ($self, $mark) = @_;
    my $log = $self->error_log;
    return length($log) > $mark ? substr($log, $mark) : '';
}

###########################################################################
# HTTP

sub _build_request {
    my ($self, $r) = @_;
    return $r->{raw} if defined $r->{raw};
    my $method = $r->{method} // 'GET';
    my $path   = $r->{path} // '/';
    my @h = ref $r->{headers} eq 'HASH' ? %{ $r->{headers} }
          : @{ $r->{headers} || [] };
    my %have;
    for (my $i = 0; $i < @h; $i += 2) { $have{ lc $h[$i] } = 1 }
    unshift @h, Host => 'localhost' unless $have{host};
    push @h, Connection => ($r->{keepalive} ? 'keep-alive' : 'close')
        unless $have{connection};
    if ($r->{jar} && !$have{cookie}) {
        my $c = $r->{jar}->header;
        push @h, Cookie => $c if defined $c;
    }
    my $body = $r->{body};
    if (defined $body && !$have{'content-length'}) {
        push @h, 'Content-Length' => length $body;
    }
    my $req = "$method $path HTTP/1.1\r\n";
    for (my $i = 0; $i < @h; $i += 2) { $req .= "$h[$i]: $h[$i+1]\r\n" }
    $req .= "\r\n";
    $req .= $body if defined $body;
    return $req;
}

# Parse one response at the start of $$buf. Returns (response, consumed) or
# () when incomplete; $eof says no more bytes will come.
sub _parse_one {
    my ($buf, $method, $eof) = @_;
    my $he = index($$buf, "\r\n\r\n");
    return if $he < 0;
    my $head = substr($$buf, 0, $he);
    my @lines = split /\r\n/, $head;
    my $sl = shift @lines;
    my ($proto, $status, $reason) = $sl =~ m{^(HTTP/\d\.\d)\s+(\d{3})\s*(.*)$}
        or die "bad status line: $sl";
    my %h;
    for my $l (@lines) {
        my ($n, $v) = $l =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $h{ lc $n } }, $v;
    }
    my $pos = $he + 4;
    my $body = '';
    my $no_body = ($method // '') eq 'HEAD' || $status == 204 || $status == 304
        || $status < 200;
    if ($no_body) {
        # nothing
    } elsif (($h{'transfer-encoding'}[0] // '') =~ /chunked/i) {
        while (1) {
            my $e = index($$buf, "\r\n", $pos);
            return if $e < 0;
            my ($size) = substr($$buf, $pos, $e - $pos) =~ /^([0-9a-fA-F]+)/;
            return unless defined $size;
            $size = hex $size;
            $pos = $e + 2;
            if ($size == 0) {
                my $te = index($$buf, "\r\n", $pos);
                return if $te < 0;
                $pos = $te + 2;
                last;
            }
            return if length($$buf) < $pos + $size + 2;
            $body .= substr($$buf, $pos, $size);
            $pos += $size + 2;
        }
    } elsif (defined $h{'content-length'}) {
        my $len = $h{'content-length'}[0];
        return if length($$buf) < $pos + $len;
        $body = substr($$buf, $pos, $len);
        $pos += $len;
    } else {
        return unless $eof;
        $body = substr($$buf, $pos);
        $pos = length $$buf;
    }
    my $res = bless {
        status  => $status + 0,
        reason  => $reason,
        proto   => $proto,
        headers => \%h,
        body    => $body,
        head    => $head,
    }, 'FlashsaleTest::Response';
    return ($res, $pos);
}

sub _error_response {
    my ($err) = @_;
    return bless { status => 0, headers => {}, body => '', head => '',
                   error => $err }, 'FlashsaleTest::Response';
}

sub _connect {
    my ($self, $r, $blocking) = @_;
    my $port = $r->{port} // $self->port(1);
    my %a = (PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp');
    $a{LocalAddr} = $r->{local_addr} if $r->{local_addr};
    if ($blocking) {
        $a{Timeout} = 5;
    } else {
        $a{Blocking} = 0;
    }
    return IO::Socket::INET->new(%a);
}

# $t->http(method =>, path =>, headers => [..] | {..}, body =>, port =>,
#          jar =>, raw =>, local_addr =>, timeout =>)
sub http {
    my ($self, %r) = @_;
    my @res = $self->parallel([ \%r ], timeout => $r{timeout} // 10);
    return $res[0];
}

sub get {
    my ($self, $path, @h) = @_;
    my %o;
    # trailing options: jar => $jar, port => N
    while (@h >= 2 && $h[-2] =~ /^(jar|port|local_addr|timeout)$/) {
        my $v = pop @h;
        my $k = pop @h;
        $o{$k} = $v;
    }
    return $self->http(path => $path, headers => \@h, %o);
}

sub get_json {
    my ($self, $path, @h) = @_;
    return $self->get($path, Accept => 'application/json', @h);
}

# Send all requests at once over separate non-blocking connections and
# collect all responses (same order) within an overall deadline. A request
# that fails gets a response with status 0 and {error}.
sub parallel {
    my ($self, $reqs, %o) = @_;
    my $deadline = time + ($o{timeout} // 30);
    my @st;
    for my $r (@$reqs) {
        my $s = $self->_connect($r, 0);
        my $e = { req => $r, out => $self->_build_request($r), in => '',
                  done => 0 };
        if (!$s) {
            $e->{done} = 1;
            $e->{error} = "connect: $!";
        } else {
            $e->{sock} = $s;
        }
        push @st, $e;
    }
    my %by_fd = map { fileno($_->{sock}) => $_ } grep { $_->{sock} } @st;

    while (1) {
        my @open = grep { !$_->{done} } @st;
        last unless @open;
        my $left = $deadline - time;
        if ($left <= 0) {
            for my $e (@open) {
                $e->{error} = 'timeout';
                $e->{done} = 1;
                close $e->{sock};
            }
            last;
        }
        my $rs = IO::Select->new(map { $_->{sock} } grep { !length $_->{out} } @open);
        my $ws = IO::Select->new(map { $_->{sock} } grep { length $_->{out} } @open);
        my ($rr, $wr) = IO::Select->select($rs, $ws, undef, $left > 0.5 ? 0.5 : $left);
        for my $s (@{ $wr || [] }) {
            my $e = $by_fd{ fileno $s };
            my $n = syswrite($s, $e->{out});
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR
                    || $! == EINPROGRESS;
                $e->{error} = "write: $!";
                # the server may have answered and closed early; read it
                $e->{out} = '';
                next;
            }
            substr($e->{out}, 0, $n, '');
        }
        for my $s (@{ $rr || [] }) {
            my $e = $by_fd{ fileno $s };
            my $n = sysread($s, $e->{in}, 65536, length $e->{in});
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                $e->{error} //= "read: $!";
                $e->{done} = 1;
                close $s;
            } elsif ($n == 0) {
                $e->{done} = 1;
                close $s;
            }
        }
    }

    my @res;
    for my $e (@st) {
        my $m = $e->{req}{method} // 'GET';
        my ($res) = length $e->{in}
            ? eval { _parse_one(\$e->{in}, $m, 1) } : ();
        if (!$res) {
            $res = _error_response($e->{error}
                // ('unparsable response: ' . substr($e->{in}, 0, 200)));
        }
        $res->{request} = $e->{req};
        $e->{req}{jar}->update($res) if $e->{req}{jar};
        push @res, $res;
    }
    return @res;
}

# Several requests on one keep-alive connection (pipelined); the last one
# closes. Returns the parsed responses in order.
sub pipeline {
    my ($self, $reqs, %o) = @_;
    my $out = '';
    for my $i (0 .. $#$reqs) {
        my %r = %{ $reqs->[$i] };
        $r{keepalive} = $i < $#$reqs ? 1 : 0;
        $out .= $self->_build_request(\%r);
    }
    return $self->_pipeline_raw($reqs, $out, %o);
}

sub _pipeline_raw {
    my ($self, $reqs, $out, %o) = @_;
    my $s = $self->_connect($reqs->[0], 1) or die "connect: $!";
    my $sel = IO::Select->new($s);
    my $deadline = time + ($o{timeout} // 10);
    while (length $out) {
        die "write timeout" unless $sel->can_write($deadline - time);
        my $n = syswrite($s, $out);
        die "write: $!" unless defined $n;
        substr($out, 0, $n, '');
    }
    my $buf = '';
    while (1) {
        my $left = $deadline - time;
        last if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    close $s;
    my @res;
    for my $r (@$reqs) {
        my ($res, $used) = eval { _parse_one(\$buf, $r->{method} // 'GET', 1) };
        last unless $res;
        substr($buf, 0, $used, '');
        $r->{jar}->update($res) if $r->{jar};
        push @res, $res;
    }
    return @res;
}

###########################################################################
# JWT

sub b64u { encode_base64url($_[0]) }

sub b64u_decode {
    my ($s) = @_;
    return undef unless defined $s && $s =~ /^[A-Za-z0-9_-]*$/;
    return decode_base64url($s);
}

sub json_decode {
    my ($s) = @_;
    return eval { $JSON->decode($s) };
}

# jwt_encode(\%claims, $key, alg => 'HS256', header => {...},
#            raw_header => '...', raw_claims => '...', signature => '...',
#            sign_with => 'HS256')
# alg goes into the header; the signature uses sign_with // alg
# ('none' gives an empty signature).
sub jwt_encode {
    my ($claims, $key, %o) = @_;
    my $alg = $o{alg} // 'HS256';
    my $header = $o{header} // { alg => $alg, typ => 'JWT' };
    my $h = b64u($o{raw_header} // $JSON->encode($header));
    my $c = b64u($o{raw_claims} // $JSON->encode($claims));
    my $input = "$h.$c";
    my $sig;
    if (exists $o{signature}) {
        $sig = $o{signature};
    } else {
        my $with = $o{sign_with} // $alg;
        $sig = $with eq 'HS256' ? hmac_sha256($input, $key)
             : $with eq 'HS384' ? hmac_sha384($input, $key)
             : $with eq 'HS512' ? hmac_sha512($input, $key)
             : '';
    }
    return "$input." . b64u($sig);
}

# (header, claims, signature bytes) — no verification
sub jwt_decode {
    my ($token) = @_;
    return unless defined $token;
    my @p = split /\./, $token, -1;
    return unless @p == 3;
    my $h = json_decode(b64u_decode($p[0]) // return);
    my $c = json_decode(b64u_decode($p[1]) // return);
    return ($h, $c, b64u_decode($p[2]));
}

sub jwt_claims {
    my ($token) = @_;
    my (undef, $c) = jwt_decode($token);
    return $c;
}

# true when $token is HS256 and signed with $key
sub jwt_verify {
    my ($token, $key) = @_;
    my ($h) = jwt_decode($token) or return 0;
    return 0 unless ref $h eq 'HASH' && ($h->{alg} // '') eq 'HS256';
    my ($hc, $sig) = $token =~ /^(.*)\.([^.]*)$/ or return 0;
    return b64u(hmac_sha256($hc, $key)) eq $sig ? 1 : 0;
}

# Standard ticket/pass claims for a zone; override or delete (undef) any.
#   make_claims(zone => 'z', tkt => 1, adm => 1, iat => ..., exp => ...)
sub make_claims {
    my (%o) = @_;
    my $now = int(time);
    my %c = (
        iss => 'flashsale',
        aud => $o{zone} // 'z',
        sub => $o{sub} // join('', map { sprintf '%02x', int rand 256 } 1 .. 16),
        tkt => $o{tkt} // 1,
        iat => $o{iat} // $now,
        exp => $o{exp} // $now + 600,
    );
    $c{adm} = JSON::PP::true if $o{adm};
    for my $k (keys %o) {
        next if $k =~ /^(zone|sub|tkt|iat|exp|adm)$/;
        $c{$k} = $o{$k};
    }
    for my $k (keys %c) { delete $c{$k} if exists $o{$k} && !defined $o{$k} }
    delete $c{aud} if exists $o{zone} && !defined $o{zone};
    return \%c;
}

# A token signed with key line $o{key_index} (default 0) of this test.
sub forge {
    my ($self, %o) = @_;
    my $ki = delete $o{key_index} // 0;
    my $key = delete $o{key} // $self->key($ki);
    my $jwt = delete $o{jwt} // {};
    return jwt_encode(make_claims(%o), $key, %$jwt);
}

sub sleep_until {
    my ($when) = @_;
    my $d = $when - time;
    sleep $d if $d > 0;
}

# /flashsale_status as { zone name => zone object }
sub status {
    my ($self, $path, %o) = @_;
    my $r = $self->get($path // '/flashsale_status', %o);
    my $j = $r->json or return {};
    return { map { $_->{zone} => $_ } @{ $j->{zones} || [] } };
}

###########################################################################
# cookies

# parse_set_cookie('a=b; Path=/; HttpOnly') ->
#   { name => 'a', value => 'b', attrs => { path => '/', httponly => 1 } }
sub parse_set_cookie {
    my ($s) = @_;
    my @parts = split /;\s*/, $s;
    my $first = shift @parts // '';
    my ($n, $v) = $first =~ /^\s*([^=]*?)\s*=\s*(.*?)\s*$/ or return;
    my %a;
    for my $p (@parts) {
        my ($an, $av) = split /=/, $p, 2;
        $an =~ s/^\s+|\s+$//g;
        $a{ lc $an } = defined $av ? $av : 1;
    }
    return { name => $n, value => $v, attrs => \%a };
}

###########################################################################
# the end of every test file

# $t->finish(allow => [qr/.../], allow_5xx => 1)
# Stops nginx and redis, then checks error.log for [alert], [emerg], [crit]
# and "exited on signal" (other than workers this test killed), that no
# configured key ever reached the log, that access.log shows no 5xx, and
# that nginx's stderr shows no sanitizer report. Then done_testing.
sub finish {
    my ($self, %o) = @_;
    my $ran = -f "$self->{dir}/error.log";
    $self->stop_nginx;
    $self->stop_redis;

    if ($ran) {
        my @allow = @{ $o{allow} || [] };
        push @allow, map { qr/worker process $_ exited on signal 9/ }
            @{ $self->{killed} };
        my $log = $self->error_log;
        my @bad = grep {
            my $l = $_;
            ($l =~ /\[(alert|emerg|crit)\]/ || $l =~ /exited on signal/)
                && !grep { $l =~ $_ } @allow
        } split /\n/, $log;
        Test::More::is(scalar(@bad), 0,
            'error.log has no [alert], [emerg], [crit] or "exited on signal"')
            or Test::More::diag(join "\n", @bad[0 .. ($#bad > 9 ? 9 : $#bad)]);

        my @leaked = grep { index($log, $_) >= 0 } @{ $self->{keys} };
        Test::More::is(scalar(@leaked), 0, 'error.log never contains a key');

        unless ($o{allow_5xx}) {
            my $acc = $self->read_file('access.log') // '';
            my @five = grep { /" 5\d\d / } split /\n/, $acc;
            Test::More::is(scalar(@five), 0, 'access.log shows no 5xx answer')
                or Test::More::diag(join "\n", @five[0 .. ($#five > 4 ? 4 : $#five)]);
        }

    }

    # nginx's stderr, and the report files of the sanitizers (also of
    # nginx -t runs, which leave no error.log here)
    my @rep = san_reports();
    my @nt;
    if (opendir(my $dh, $self->{dir})) {
        @nt = map { "$_/nginx-t.out" } sort grep { /^nt\d+$/ } readdir $dh;
        closedir $dh;
    }
    for my $f ('nginx.out', 'error.log', @nt) {
        my $text = $self->read_file($f) // '';
        my @l = grep { /AddressSanitizer|LeakSanitizer|runtime error:|^\s+#\d+ 0x/ }
            split /\n/, $text;
        @l = () unless grep { /Sanitizer|runtime error:/ } @l;
        push @rep, [ "$self->{dir}/$f", join("\n", @l) ] if @l;
    }
    Test::More::is(scalar(@rep), 0, 'no sanitizer report')
        or Test::More::diag(_report_text(@rep));

    if ($VALGRIND && $ran) {
        my @vg = $self->valgrind_errors;
        Test::More::is(scalar(@vg), 0, 'valgrind reports no error')
            or Test::More::diag(_report_text(@vg));
    }
    Test::More::done_testing();
}

END {
    my $rc = $?;
    for my $t (@INSTANCES) {
        eval { $t->stop_nginx; $t->stop_redis; };
    }
    # a report written after finish(), or by a test that never got there
    if (sanitizing() && defined $SAN_DIR) {
        my @rep = eval { san_reports() };
        if (@rep) {
            print STDERR "# sanitizer report(s) not seen by finish():\n",
                map { "# $_\n" } split /\n/, _report_text(@rep);
            $rc ||= 1;
        }
    }
    $? = $rc;
}

###########################################################################
# sanitizers (SANITIZE=address) and valgrind (FLASHSALE_VALGRIND=1)

my %SAN_SEEN;
my @SAN_RUNTIMES;

sub sanitizing {
    return ($ENV{FLASHSALE_ASAN} || $ASAN_NGINX
            || ($ENV{SANITIZE} // '') eq 'address') ? 1 : 0;
}

# One directory per test process for the ASan/UBSan report files
# (asan.PID, ubsan.PID). FLASHSALE_SAN_DIR names it; kept with
# FLASHSALE_KEEP=1.
sub san_dir {
    return $SAN_DIR if defined $SAN_DIR;
    if ($ENV{FLASHSALE_SAN_DIR}) {
        $SAN_DIR = $ENV{FLASHSALE_SAN_DIR};
        make_path($SAN_DIR);
    } else {
        $SAN_DIR = File::Temp::tempdir('fsan-XXXXXXXX', TMPDIR => 1,
                                       CLEANUP => !$ENV{FLASHSALE_KEEP});
    }
    chmod 0777, $SAN_DIR;      # workers run as "nobody"
    _san_runtimes();
    return $SAN_DIR;
}

# gcc's libasan (it must come first), build/san-options.so (hands
# UBSAN_OPTIONS to UBSan in workers: see scripts/san-options.c), libubsan
sub _san_runtimes {
    return @SAN_RUNTIMES if @SAN_RUNTIMES;
    for my $lib ('libasan.so', "$ROOT/build/san-options.so", 'libubsan.so') {
        my $p = $lib;
        if ($lib !~ m{^/}) {
            $p = `gcc -print-file-name=$lib 2>/dev/null`;
            chomp $p;
            next if $p eq $lib;
        }
        push @SAN_RUNTIMES, $p if $p ne '' && -e $p;
    }
    return @SAN_RUNTIMES;
}

# Sanitizer reports not returned before: ([file, text], ...)
sub san_reports {
    return () unless defined $SAN_DIR && -d $SAN_DIR;
    opendir(my $dh, $SAN_DIR) or return ();
    my @r;
    for my $f (sort grep { /^(asan|ubsan|san)\./ } readdir $dh) {
        my $path = "$SAN_DIR/$f";
        next if $SAN_SEEN{$path};
        open(my $fh, '<:raw', $path) or next;
        local $/;
        my $text = <$fh> // '';
        close $fh;
        next unless $text =~ /\S/;
        $SAN_SEEN{$path} = 1;
        push @r, [ $path, $text ];
    }
    closedir $dh;
    return @r;
}

sub _report_text {
    my @r = @_;
    my $out = '';
    for my $r (@r[0 .. ($#r > 4 ? 4 : $#r)]) {
        my @l = split /\n/, $r->[1];
        $#l = 59 if @l > 60;
        $out .= "--- $r->[0]\n" . join("\n", grep { defined } @l) . "\n";
    }
    $out .= "... and " . (@r - 5) . " more\n" if @r > 5;
    return $out;
}

# valgrind memcheck in front of nginx (nothing when not in valgrind mode).
# FLASHSALE_VALGRIND_OPTS adds options.
sub _valgrind_cmd {
    my ($self) = @_;
    return () unless $VALGRIND;
    die "FLASHSALE_VALGRIND and SANITIZE=address do not mix\n" if sanitizing();
    my @supp = -f "$ROOT/valgrind.suppress"
        ? ("--suppressions=$ROOT/valgrind.suppress") : ();
    return ('valgrind', '--tool=memcheck', '--leak-check=full',
            '--show-leak-kinds=definite', '--errors-for-leak-kinds=definite',
            '--num-callers=40', '--keep-debuginfo=yes', '--trace-children=no',
            '--child-silent-after-fork=yes', '--gen-suppressions=all',
            @supp, "--log-file=$self->{dir}/valgrind.%p.log",
            split(' ', $ENV{FLASHSALE_VALGRIND_OPTS} // ''));
}

# Errors in this test's valgrind logs: ([file, text], ...). A log without
# its final ERROR SUMMARY (valgrind killed) counts as an error too.
sub valgrind_errors {
    my ($self) = @_;
    my @r;
    opendir(my $dh, $self->{dir}) or return ();
    for my $f (sort grep { /^valgrind\.\d+\.log$/ } readdir $dh) {
        my $text = $self->read_file($f) // '';
        my @sum = $text =~ /ERROR SUMMARY: (\d+) errors/g;
        if (!@sum) {
            push @r, [ "$self->{dir}/$f", "no ERROR SUMMARY (valgrind did not "
                       . "finish)\n$text" ];
        } elsif ($sum[-1] > 0) {
            # the error blocks only, not the preamble
            $text =~ s/\A(?:==\d+== [^\n]*\n){0,12}?==\d+== Command:[^\n]*\n(?:==\d+== [^\n]*\n)?//;
            push @r, [ "$self->{dir}/$f", $text ];
        }
    }
    closedir $dh;
    return @r;
}

# Under valgrind there is one nginx process and no workers: a test file
# that kills workers, needs several of them or reloads is skipped, with the
# reason. t/valgrind.skip lists others ("t/NAME.t  reason", # comments):
# mostly tests of timing that a process 20-50 times slower cannot meet.
sub _valgrind_skip {
    my $file = $0;
    my $src = '';
    if (open my $fh, '<', $file) { local $/; $src = <$fh> // ''; close $fh }
    my $reason;
    if ($src =~ /->kill_worker\b/) {
        $reason = 'kills worker processes: single-process mode has none';
    } elsif ($src =~ /->reload\b|-s['", ]+reload/) {
        $reason = 'reloads nginx: with master_process off nginx rereads the '
                  . 'configuration on HUP but does not serve it';
    } elsif ($src =~ /workers\s*=>\s*[2-9]/
             || $src =~ /scalar\(\$t->worker_pids\)\s*,\s*[2-9]/)
    {
        $reason = 'needs two or more worker processes: single-process mode '
                  . 'has one process';
    } elsif (open my $sk, '<', "$ROOT/t/valgrind.skip") {
        (my $base = $file) =~ s{^.*?(t/[^/]+\.t)$}{$1};
        while (my $l = <$sk>) {
            next if $l =~ /^\s*(#|$)/;
            my ($name, $why) = $l =~ /^\s*(\S+)\s+(.*?)\s*$/ or next;
            if ($name eq $base) { $reason = $why; last }
        }
        close $sk;
    }
    return unless $reason;
    if (Test::More->builder->current_test == 0) {
        Test::More::plan(skip_all => "under valgrind: $reason");
    }
    # tests ran before the first instance: keep them, skip the rest
    Test::More::note("under valgrind: $reason: the rest of $file is skipped");
    Test::More::done_testing();
    exit 0;
}

###########################################################################

package FlashsaleTest::Response;

sub status { $_[0]{status} }
sub body   { $_[0]{body} }
sub error  { $_[0]{error} }

# first value of a header (undef when absent)
sub header {
    my ($self, $name) = @_;
    my $v = $self->{headers}{ lc $name } or return undef;
    return $v->[0];
}

# all values of a header
sub headers {
    my ($self, $name) = @_;
    return @{ $self->{headers}{ lc $name } || [] };
}

sub json {
    my ($self) = @_;
    return FlashsaleTest::json_decode($self->{body});
}

sub set_cookies {
    my ($self) = @_;
    return map { FlashsaleTest::parse_set_cookie($_) } $self->headers('set-cookie');
}

# parsed Set-Cookie for one name (last one wins)
sub cookie {
    my ($self, $name) = @_;
    my ($c) = reverse grep { $_->{name} eq $name } $self->set_cookies;
    return $c;
}

# the token this response handed out: JSON "token" or the cookie's value
sub token {
    my ($self, $cookie_name) = @_;
    $cookie_name //= 'flashsale';
    my $j = ($self->header('content-type') // '') =~ /json/ ? $self->json : undef;
    return $j->{token} if ref $j eq 'HASH' && defined $j->{token};
    my $c = $self->cookie($cookie_name);
    return $c ? $c->{value} : undef;
}

sub claims {
    my ($self, $cookie_name) = @_;
    return FlashsaleTest::jwt_claims($self->token($cookie_name));
}

sub describe {
    my ($self) = @_;
    return "error: $self->{error}" if $self->{error};
    my $b = substr($self->{body} // '', 0, 300);
    return "$self->{head}\n\n$b";
}

###########################################################################

package FlashsaleTest::Jar;

sub new {
    my ($class) = @_;
    return bless { c => {}, order => [] }, $class;
}

sub update {
    my ($self, $res) = @_;
    for my $c ($res->set_cookies) {
        my $gone = (defined $c->{attrs}{'max-age'} && $c->{attrs}{'max-age'} <= 0)
            || $c->{value} eq '';
        if ($gone) {
            delete $self->{c}{ $c->{name} };
            $self->{order} = [ grep { $_ ne $c->{name} } @{ $self->{order} } ];
            next;
        }
        push @{ $self->{order} }, $c->{name} unless exists $self->{c}{ $c->{name} };
        $self->{c}{ $c->{name} } = $c;
    }
    return $self;
}

sub set {
    my ($self, $name, $value) = @_;
    push @{ $self->{order} }, $name unless exists $self->{c}{$name};
    $self->{c}{$name} = { name => $name, value => $value, attrs => {} };
    return $self;
}

sub get {
    my ($self, $name) = @_;
    my $c = $self->{c}{$name} or return undef;
    return $c->{value};
}

sub attrs {
    my ($self, $name) = @_;
    my $c = $self->{c}{$name} or return undef;
    return $c->{attrs};
}

sub header {
    my ($self) = @_;
    my @o = @{ $self->{order} };
    return undef unless @o;
    return join '; ', map { "$_=$self->{c}{$_}{value}" } @o;
}

###########################################################################
# complete configurations: the examples and the demo (t/70, t/80)

package FlashsaleTest;

# Write DIR/nginx.conf from a complete configuration (not an http-block
# template) and remember its listen ports, so that start_nginx waits for
# them. workers => N is how many workers start_nginx waits for (default:
# the configuration's numeric worker_processes, else the harness's).
sub write_raw_conf {
    my ($self, $conf, %o) = @_;
    $o{workers} //= $1 if $conf =~ /^\s*worker_processes\s+(\d+)\s*;/m;
    $self->{template} = undef;
    $self->{conf_opts} = \%o;
    $self->write_file('nginx.conf', $conf);
    $self->{listen_ports} = [ _listen_ports($conf) ];
    return $conf;
}

sub run_nginx_raw {
    my ($self, $conf, %o) = @_;
    $self->write_raw_conf($conf, %o);
    return $self->start_nginx;
}

# The checks of finish (error.log, keys, 5xx, sanitizer) for one more
# instance of a test that has several, without ending the test.
sub finish_instance {
    my ($self, %o) = @_;
    no warnings 'redefine';
    local *Test::More::done_testing = sub { 1 };
    $self->finish(%o);
}

# examples/demo.conf rendered the way scripts/demo.sh renders it, for this
# test's directory: @MODULE@ the module under test, @DEMO_DIR@ the test dir
# (pid, logs, DIR/tmp/*, the key file DIR/flashsale.keys, written here from
# this test's keys), @EXAMPLES@ the repository's examples/, @REDIS_PORT@ the
# harness's Redis port, @USER@ "user root;" when running as root and nobody
# cannot read the store. The front's 127.0.0.1:8080 becomes %%PORT%% and the
# store's 127.0.0.1:8081 %%PORT2%% (port(1) and port(2)), unless
# keep_ports => 1.
sub demo_conf {
    my ($self, %o) = @_;
    my $tpl = $self->read_file("$ROOT/examples/demo.conf")
        // die "read $ROOT/examples/demo.conf: $!";
    my $d = $self->{dir};

    # demo.sh: sed -e '1,/^load_module/{/^#/d;/^$/d}'
    my @lines = split /(?<=\n)/, $tpl;
    my ($out, $head) = ('', 1);
    for my $l (@lines) {
        if ($head) {
            $head = 0 if $l =~ /^load_module/;
            next if $l =~ /^#/ || $l =~ /^\n?\z/;
        }
        $out .= $l;
    }

    my $user = '';
    if ($> == 0 && system('runuser', '-u', 'nobody', '--', 'test', '-r',
                          "$ROOT/examples/demo/store/index.html") != 0) {
        $user = "user root;  # demo.sh: nobody cannot read $ROOT";
    }

    make_path("$d/tmp");
    $self->key;    # writes a random key unless the test wrote its own
    $self->write_file('flashsale.keys',
                      join('', map { "$_\n" } @{ $self->{keys} }), 0600);

    $out =~ s/\@MODULE\@/$MODULE/g;
    $out =~ s/\@DEMO_DIR\@/$d/g;
    $out =~ s/\@EXAMPLES\@/$ROOT\/examples/g;
    $out =~ s/\@REDIS_PORT\@/$self->redis_port/ge;
    $out =~ s/\@USER\@/$user/g;
    unless ($o{keep_ports}) {
        $out =~ s/127\.0\.0\.1:8080\b/'127.0.0.1:' . $self->port(1)/ge;
        $out =~ s/127\.0\.0\.1:8081\b/'127.0.0.1:' . $self->port(2)/ge;
    }
    return "# Rendered by t/lib/FlashsaleTest.pm from examples/demo.conf\n\n$out";
}

1;
