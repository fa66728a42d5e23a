package FakeUpstream;

# A tiny HTTP upstream for breaker tests: a forked child serving a loopback
# port, one forked handler per connection (so slow answers overlap),
# stopped by PID, bounded in time, recording every request it receives
# before it answers.
#
#   my $u = FakeUpstream->new(status => 500, delay => 0);
#   ... proxy_pass http://127.0.0.1:$u->{port}; ...
#   $u->set(status => 200, delay => 1);   # takes effect for the next request
#   $u->hits;                             # requests received so far
#   $u->records;                          # ({ t, path, worker }, ...)
#   $u->stop;                             # TERM (then KILL); also at END
#
# A request's "worker" is its X-Worker header (proxy_set_header X-Worker
# $pid), so a test can tell which nginx worker holds an upstream request.

use strict;
use warnings;

use IO::Socket::INET;
use IO::Select;
use POSIX qw(WNOHANG);
use File::Temp ();
use Time::HiRes qw(time sleep);

my @ALL;
my $N = 0;

sub new {
    my ($class, %o) = @_;
    my $dir = $o{dir}
        // File::Temp::tempdir('fakeup-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    $N++;
    my $self = bless {
        record   => "$dir/fakeup-$$-$N.rec",
        modefile => "$dir/fakeup-$$-$N.mode",
        max_time => $o{max_time} // 120,
    }, $class;
    $self->set(status => $o{status} // 200, delay => $o{delay} // 0);
    open my $fh, '>', $self->{record} or die "FakeUpstream: $self->{record}: $!";
    close $fh;
    push @ALL, $self;
    $self->_start;
    return $self;
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }

# the answer to the next requests: status code and delay (seconds)
sub set {
    my ($self, %o) = @_;
    my $tmp = "$self->{modefile}.tmp";
    open my $fh, '>', $tmp or die "FakeUpstream: $tmp: $!";
    print $fh ($o{status} // 200), ' ', ($o{delay} // 0), "\n";
    close $fh;
    rename $tmp, $self->{modefile} or die "FakeUpstream: rename: $!";
}

sub _mode {
    my ($self) = @_;
    open my $fh, '<', $self->{modefile} or return (200, 0);
    my $l = <$fh> // '';
    close $fh;
    my ($s, $d) = split ' ', $l;
    return ($s // 200, $d // 0);
}

sub records {
    my ($self) = @_;
    open my $fh, '<', $self->{record} or return ();
    my @r;
    while (my $l = <$fh>) {
        chomp $l;
        my ($t, $path, $worker) = split /\t/, $l, -1;
        push @r, { t => $t, path => $path, worker => $worker };
    }
    close $fh;
    return @r;
}

sub hits { scalar(my @r = $_[0]->records) }

sub _start {
    my ($self) = @_;
    my $ls = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', Listen => 128, ReuseAddr => 1)
        or die "FakeUpstream: listen: $!";
    $self->{port} = $ls->sockport;
    my $pid = fork;
    die "FakeUpstream: fork: $!" unless defined $pid;
    if ($pid == 0) {
        eval { $self->_serve($ls) };
        POSIX::_exit(0);
    }
    close $ls;
    $self->{pid} = $pid;
}

sub _serve {
    my ($self, $ls) = @_;
    my $parent = getppid;
    $SIG{TERM} = $SIG{INT} = sub { POSIX::_exit(0) };
    $SIG{ALRM} = sub { POSIX::_exit(0) };
    $SIG{PIPE} = 'IGNORE';
    $SIG{CHLD} = 'IGNORE';          # handlers reap themselves
    alarm($self->{max_time});
    my $sel = IO::Select->new($ls);
    my $server = $$;
    while (1) {
        POSIX::_exit(0) if getppid != $parent;
        next unless $sel->can_read(0.25);
        my $c = $ls->accept or next;
        my $h = fork;
        if (defined $h && $h == 0) {
            close $ls;
            $SIG{TERM} = $SIG{INT} = 'DEFAULT';
            alarm(60);
            $self->_handle($c, $server);
            POSIX::_exit(0);
        }
        close $c;
    }
}

sub _handle {
    my ($self, $c, $server) = @_;
    my $buf = '';
    my $sel = IO::Select->new($c);
    my $deadline = time + 10;
    while (index($buf, "\r\n\r\n") < 0) {
        my $left = $deadline - time;
        return if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($c, $buf, 65536, length $buf);
        return unless $n;
    }
    my ($line) = $buf =~ /^(\S+ \S+)/;
    my ($path) = ($line // '') =~ / (\S+)$/;
    my ($worker) = $buf =~ /^X-Worker:\s*(\d+)/mi;
    open my $rec, '>>', $self->{record} or return;
    syswrite($rec, sprintf("%.3f\t%s\t%s\n", time, $path // '', $worker // ''));
    close $rec;

    my ($status, $delay) = $self->_mode;
    # a slow answer, given up when the server is stopped
    my $until = time + $delay;
    while (time < $until) {
        return if getppid != $server;
        sleep(($until - time) > 0.05 ? 0.05 : ($until - time));
    }
    my $body = "upstream $status\n";
    my $out = "HTTP/1.1 $status X\r\nContent-Type: text/plain\r\n"
            . 'Content-Length: ' . length($body) . "\r\nConnection: close\r\n\r\n"
            . $body;
    while (length $out) {
        my $n = syswrite($c, $out);
        last unless $n;
        substr($out, 0, $n, '');
    }
    close $c;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    my $deadline = time + 5;
    while (time < $deadline) {
        my $r = waitpid($pid, WNOHANG);
        return if $r == $pid || $r == -1;
        sleep 0.01;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

END {
    my $rc = $?;
    for my $u (@ALL) {
        eval { $u->stop } if $u->{pid};
    }
    $? = $rc;
}

1;
