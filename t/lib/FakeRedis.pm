package FakeRedis;

# A scriptable fake Redis for fault tests: a forked child serving a loopback
# port, stopped by PID, bounded in time, recording what it received.
#
#   my $f = FakeRedis->new(mode => 'silent');          # forks at once
#   ... flashsale_redis 127.0.0.1:$f->{port} ...
#   $f->count('EVALSHA');      # commands of that name received so far
#   $f->count('SCRIPT LOAD');  # SCRIPT, CLIENT, CONFIG... also by subcommand
#   $f->connections;           # connections accepted so far
#   $f->set(mode => 'busy', on => {...});  # new rules for the next commands
#   $f->stop;                  # TERM (then KILL) by PID; also at END
#
# What the fake answers to each command it parses, first rule that applies:
#   answers    => [ REPLY, ... ]   the first answers, consumed in order over
#                                  all connections ("script" mode);
#   conn_modes => [ MODE, ... ]    connection i (0-based, accept order)
#                                  behaves as MODE for every command; an
#                                  entry may also be { NAME => REPLY,
#                                  '*' => REPLY } for that connection only
#                                  (a NAME it lacks, without '*', falls
#                                  through to 'on' and 'mode');
#   on         => { NAME => REPLY } a fixed answer for a command name
#                                  ('EVALSHA', 'SCRIPT LOAD', 'SCRIPT', ...);
#   mode       => MODE             everything else (default 'silent').
# MODE is one of
#   silent  read, never write;
#   busy    -BUSY Redis is busy running a script. You can only call SCRIPT
#           KILL or SHUTDOWN NOSCRIPT.
#   error   -ERR something
#   close   read one command, close the socket (nothing written);
#   half    write the first half of a reservation reply ("*4 :3 :1"), close.
# REPLY is raw RESP ("+OK\r\n", FakeRedis::bulk($s), FakeRedis::array(...))
# or one of the MODE words. mode => 'script' is accepted as a synonym of
# giving answers => [...] (then mode 'silent' unless then => MODE).
#
# Other options: port => N (default: a free loopback port chosen by the
# kernel and held from bind to fork, so nothing can take it), max_time => S
# (default 120: the child exits by itself after S seconds), delay => S (wait
# S seconds before writing each answer), dir => path (for the record file).

use strict;
use warnings;

use IO::Socket::INET;
use IO::Select;
use POSIX qw(WNOHANG);
use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use File::Temp ();
use Time::HiRes qw(time sleep);
use JSON::PP ();

our $BUSY = 'BUSY Redis is busy running a script. You can only call SCRIPT '
          . 'KILL or SHUTDOWN NOSCRIPT.';
our $ERR  = 'ERR something';

my %MODES = map { $_ => 1 } qw(silent busy error close half);
my @ALL;
my $N = 0;

sub bulk   { my ($s) = @_; return defined $s ? '$' . length($s) . "\r\n$s\r\n" : "\$-1\r\n" }
sub int_   { return ':' . $_[0] . "\r\n" }
sub status { return '+' . $_[0] . "\r\n" }
sub err    { return '-' . $_[0] . "\r\n" }

# array(':3', ':1', ...) with ints as plain numbers: array(3, 1, 170..., 9)
sub array {
    my (@e) = @_;
    my $s = '*' . scalar(@e) . "\r\n";
    for my $e (@e) {
        $s .= $e =~ /^-?\d+$/ ? ":$e\r\n" : $e;
    }
    return $s;
}

sub new {
    my ($class, %o) = @_;
    my $mode = $o{mode} // 'silent';
    if ($mode eq 'script') {
        $mode = $o{then} // 'silent';
    }
    die "FakeRedis: unknown mode '$mode'" unless $MODES{$mode};
    for my $m (@{ $o{conn_modes} || [] }) {
        next if !defined $m || ref $m eq 'HASH';
        die "FakeRedis: unknown mode '$m'" unless $MODES{$m};
    }
    my $dir = $o{dir}
        // File::Temp::tempdir('fakeredis-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $self = bless {
        mode       => $mode,
        answers    => [ @{ $o{answers} || [] } ],
        conn_modes => [ @{ $o{conn_modes} || [] } ],
        on         => { map { uc($_) => $o{on}{$_} } keys %{ $o{on} || {} } },
        max_time   => $o{max_time} // 120,
        delay      => $o{delay} // 0,
        record     => "$dir/fakeredis-$$-" . ++$N . '.rec',
        want_port  => $o{port},
    }, $class;
    push @ALL, $self;
    $self->start;
    return $self;
}

# Change 'mode' and/or 'on' of the running fake; the child reads them before
# its next answer (answers and conn_modes are kept).
sub set {
    my ($self, %o) = @_;
    if (defined $o{mode}) {
        die "FakeRedis: unknown mode '$o{mode}'" unless $MODES{ $o{mode} };
        $self->{mode} = $o{mode};
    }
    $self->{on} = { map { uc($_) => $o{on}{$_} } keys %{ $o{on} } } if $o{on};
    my $ctl = "$self->{record}.ctl";
    open my $fh, '>', "$ctl.tmp" or die "FakeRedis: $ctl.tmp: $!";
    print $fh JSON::PP->new->encode({ mode => $self->{mode}, on => $self->{on},
                                      n => ++$self->{ctl_n} });
    close $fh;
    rename "$ctl.tmp", $ctl or die "FakeRedis: rename: $!";
}

sub _reload_ctl {
    my ($self) = @_;
    my $ctl = "$self->{record}.ctl";
    my @st = stat $ctl or return;
    my $sig = "$st[9] $st[7] $st[1]";
    return if defined $self->{ctl_sig} && $self->{ctl_sig} eq $sig;
    $self->{ctl_sig} = $sig;
    open my $fh, '<', $ctl or return;
    local $/;
    my $c = eval { JSON::PP->new->decode(<$fh> // '') } or return;
    $self->{mode} = $c->{mode} if $c->{mode};
    $self->{on} = $c->{on} if $c->{on};
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub address { '127.0.0.1:' . $_[0]{port} }

sub start {
    my ($self) = @_;
    die "FakeRedis already running" if $self->{pid};
    my $ls;
    my $deadline = time + 5;
    while (1) {
        $ls = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => $self->{want_port} // 0,
            Proto => 'tcp', Listen => 128, ReuseAddr => 1);
        last if $ls;
        die "FakeRedis: bind: $!" if time > $deadline;
        sleep 0.05;
    }
    $self->{port} = $ls->sockport;
    open my $fh, '>', $self->{record} or die "FakeRedis: $self->{record}: $!";
    close $fh;

    my $pid = fork;
    die "FakeRedis: fork: $!" unless defined $pid;
    if ($pid == 0) {
        # never run the parent's END blocks (they stop nginx and redis)
        eval { $self->_serve($ls) };
        POSIX::_exit(0);
    }
    close $ls;
    $self->{pid} = $pid;
    return $self->{port};
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

sub running {
    my ($self) = @_;
    return 0 unless $self->{pid};
    return waitpid($self->{pid}, WNOHANG) == 0 ? 1 : 0;
}

# the record: lines "conn I", "cmd I NAME", "reply I WHAT", "close I"
sub _lines {
    my ($self) = @_;
    open my $fh, '<', $self->{record} or return ();
    my @l = <$fh>;
    close $fh;
    chomp @l;
    return @l;
}

sub connections {
    my ($self) = @_;
    return scalar grep { /^conn / } $self->_lines;
}

sub closed {
    my ($self) = @_;
    return scalar grep { /^close / } $self->_lines;
}

# count('EVALSHA'), count('SCRIPT LOAD'), count('SCRIPT') (any subcommand)
sub count {
    my ($self, $name) = @_;
    $name = uc $name;
    my $n = 0;
    for ($self->_lines) {
        next unless /^cmd \d+ (.*)$/;
        my $c = $1;
        $n++ if $c eq $name || index($c, "$name ") == 0;
    }
    return $n;
}

# { NAME => n } with NAME as recorded (e.g. 'EVALSHA', 'SCRIPT LOAD')
sub counts {
    my ($self) = @_;
    my %c;
    for ($self->_lines) {
        $c{$1}++ if /^cmd \d+ (.*)$/;
    }
    return \%c;
}

# the commands of one connection, in order
sub commands {
    my ($self, $conn) = @_;
    return map { /^cmd \d+ (.*)$/ ? $1 : () }
        grep { defined $conn ? /^cmd $conn / : 1 } $self->_lines;
}

###########################################################################
# the child

# One command from $$buf: (\@args, consumed) or () when incomplete; dies on
# garbage. Arrays of bulk strings as clients send them, and inline commands.
sub parse_command {
    my ($buf) = @_;
    return unless length $$buf;
    if (substr($$buf, 0, 1) ne '*') {
        my $e = index($$buf, "\n");
        return if $e < 0;
        my $line = substr($$buf, 0, $e);
        $line =~ s/\r$//;
        return ([ split ' ', $line ], $e + 1);
    }
    my $e = index($$buf, "\r\n");
    return if $e < 0;
    my $n = substr($$buf, 1, $e - 1);
    die "bad multibulk count '$n'" unless $n =~ /^-?\d+$/;
    my $pos = $e + 2;
    my @a;
    for (1 .. $n) {
        my $le = index($$buf, "\r\n", $pos);
        return if $le < 0;
        die "expected bulk string" unless substr($$buf, $pos, 1) eq '$';
        my $len = substr($$buf, $pos + 1, $le - $pos - 1);
        die "bad bulk length '$len'" unless $len =~ /^\d+$/;
        $pos = $le + 2;
        return if length($$buf) < $pos + $len + 2;
        push @a, substr($$buf, $pos, $len);
        $pos += $len + 2;
    }
    return (\@a, $pos);
}

sub command_name {
    my ($args) = @_;
    my $name = uc($args->[0] // '');
    if ($name =~ /^(SCRIPT|CLIENT|CONFIG|DEBUG|OBJECT|COMMAND|FUNCTION)$/
        && defined $args->[1])
    {
        $name .= ' ' . uc $args->[1];
    }
    return $name;
}

sub _serve {
    my ($self, $ls) = @_;
    $SIG{TERM} = $SIG{INT} = sub { POSIX::_exit(0) };
    $SIG{ALRM} = sub { POSIX::_exit(0) };
    $SIG{PIPE} = 'IGNORE';
    alarm($self->{max_time});
    my $parent = getppid;

    open my $rec, '>>', $self->{record} or POSIX::_exit(1);
    select((select($rec), $| = 1)[0]);

    $ls->blocking(0);
    my $sel = IO::Select->new($ls);
    my %c;                      # fileno => { sock, n, buf }
    my $nconn = 0;

    while (1) {
        POSIX::_exit(0) if getppid != $parent;
        my @ready = $sel->can_read(0.25);
        for my $s (@ready) {
            if ($s == $ls) {
                while (my $cs = $ls->accept) {
                    $cs->blocking(0);
                    my $i = $nconn++;
                    $c{ fileno $cs } = { sock => $cs, n => $i, buf => '' };
                    $sel->add($cs);
                    print $rec "conn $i\n";
                }
                next;
            }
            my $st = $c{ fileno $s } or next;
            my $n = sysread($s, $st->{buf}, 65536, length $st->{buf});
            if (!defined $n) {
                next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            }
            if (!$n) {
                print $rec "close $st->{n} peer\n";
                $sel->remove($s);
                delete $c{ fileno $s };
                close $s;
                next;
            }
            my $closed = 0;
            while (1) {
                my ($args, $used) = eval { parse_command(\$st->{buf}) };
                if ($@) {
                    print $rec "garbage $st->{n}\n";
                    $closed = 1;
                    last;
                }
                last unless $used;
                substr($st->{buf}, 0, $used, '');
                my $name = command_name($args);
                print $rec "cmd $st->{n} $name\n";
                $self->_reload_ctl;
                my $what = $self->_answer_for($st->{n}, $name);
                if ($what eq 'silent') {
                    next;
                }
                if ($what eq 'close') {
                    $closed = 1;
                    last;
                }
                my $out = $what eq 'busy'  ? err($BUSY)
                        : $what eq 'error' ? err($ERR)
                        : $what eq 'half'  ? "*4\r\n:3\r\n:1\r\n"
                        : $what;
                sleep $self->{delay} if $self->{delay};
                _write_all($s, $out);
                print $rec "reply $st->{n} " . ($MODES{$what} ? $what : 'raw') . "\n";
                if ($what eq 'half') {
                    $closed = 1;
                    last;
                }
            }
            if ($closed) {
                print $rec "close $st->{n} fake\n";
                $sel->remove($s);
                delete $c{ fileno $s };
                close $s;
            }
        }
    }
}

sub _answer_for {
    my ($self, $conn, $name) = @_;
    return shift @{ $self->{answers} } if @{ $self->{answers} };
    my ($first) = split / /, $name;
    my $cm = $self->{conn_modes}[$conn];
    if (ref $cm eq 'HASH') {
        my %m = map { uc($_) => $cm->{$_} } keys %$cm;
        return $m{$name} if exists $m{$name};
        return $m{$first} if exists $m{$first};
        return $m{'*'} if exists $m{'*'};
    } elsif (defined $cm) {
        return $cm;
    }
    return $self->{on}{$name} if exists $self->{on}{$name};
    return $self->{on}{$first} if exists $self->{on}{$first};
    return $self->{mode};
}

sub _write_all {
    my ($s, $out) = @_;
    my $sel = IO::Select->new($s);
    my $deadline = time + 5;
    while (length $out) {
        return unless $sel->can_write($deadline - time);
        my $n = syswrite($s, $out);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return;
        }
        substr($out, 0, $n, '');
    }
}

END {
    my $rc = $?;
    for my $f (@ALL) {
        eval { $f->stop } if $f->{pid};
    }
    $? = $rc;
}

1;
