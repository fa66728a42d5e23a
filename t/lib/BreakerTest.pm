package BreakerTest;

# Helpers for the breaker / latch / status tests (issue 4), on top of
# FlashsaleTest and ReserveTest.

use strict;
use warnings;

use Exporter 'import';
use Test::More ();
use Time::HiRes qw(time sleep);
use IO::Select;
use FlashsaleTest ();
use ReserveTest ();

our @EXPORT = qw(
    zst wait_state shopper reserve_as access_statuses no_500 log_count
    retry_ok read_all
);

my $SHOPPER = 0;

# a fresh shopper id
sub shopper { sprintf 'shopper-%d-%05d', $$, ++$SHOPPER }

# the status object of one zone (fresh GET)
sub zst {
    my ($t, $zone) = @_;
    return ReserveTest::zone_stats($t, $zone);
}

# poll /flashsale_status until the zone's breaker state is $state;
# returns the zone object or undef
sub wait_state {
    my ($t, $zone, $state, $timeout) = @_;
    my $z;
    my $ok = FlashsaleTest::poll_until($timeout // 10, sub {
        $z = zst($t, $zone);
        return ($z->{breaker}{state} // '') eq $state;
    }, 0.05);
    return $ok ? $z : undef;
}

# a request with a fresh pass for $zone as JSON (or html => 1)
#   reserve_as($t, '/cart/add?sku=A1&qty=1', zone => 'z', sub => ..., html => 1)
sub reserve_as {
    my ($t, $path, %o) = @_;
    my $sub = $o{sub} // shopper();
    my @h = (Authorization => ReserveTest::bearer($t, $sub, zone => $o{zone} // 'z'));
    push @h, Accept => ($o{html} ? 'text/html' : 'application/json');
    return $t->get($path, @h);
}

# the statuses of access.log (main log) as a list
sub access_statuses {
    my ($t, $file) = @_;
    my $acc = $t->read_file($file // 'access.log') // '';
    return map { /" (\d{3}) / ? $1 : () } split /\n/, $acc;
}

# no 500 in the main access.log (503 retry answers are expected here)
sub no_500 {
    my ($t, $name) = @_;
    my @s = grep { $_ == 500 } access_statuses($t);
    Test::More::is(scalar(@s), 0, $name // 'access.log shows no 500');
}

sub log_count {
    my ($t, $re) = @_;
    return scalar grep { $_ =~ $re } split /\n/, $t->error_log;
}

# a breaker/Redis retry answer: 503, Retry-After in [min, max],
# JSON {"state":"retry","retry_after":same}; returns true when all hold
sub retry_ok {
    my ($r, $min, $max) = @_;
    return 0 unless $r->status == 503;
    my $ra = $r->header('Retry-After') // return 0;
    return 0 unless $ra =~ /^\d+$/ && $ra >= $min && $ra <= $max;
    my $j = $r->json or return 0;
    return 0 unless ref $j eq 'HASH' && ($j->{state} // '') eq 'retry'
        && defined $j->{retry_after} && $j->{retry_after} == $ra;
    return 1;
}

# read_all(\@handles, $timeout): the answers to requests sent with
# ReserveTest::open_request, read concurrently, so that each {elapsed} is
# the time its own answer took. Same order as the handles.
sub read_all {
    my ($hs, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    my @st = map { +{ h => $_, buf => '', res => undef } } @$hs;
    my %by = map { fileno($_->{h}{sock}) => $_ } @st;
    my $sel = IO::Select->new(map { $_->{h}{sock} } @st);
    while ($sel->count) {
        my $left = $deadline - time;
        last if $left <= 0;
        for my $s ($sel->can_read($left > 0.2 ? 0.2 : $left)) {
            my $e = $by{ fileno $s };
            my $n = sysread($s, $e->{buf}, 65536, length $e->{buf});
            my $eof = !$n;
            my ($res) = eval { ReserveTest::parse_http(\$e->{buf}, $eof) };
            if ($res) {
                $res->{elapsed} = time - $e->{h}{t0};
                $e->{res} = $res;
            } elsif ($eof) {
                $e->{res} = { status => 0, error => 'closed: ' . substr($e->{buf}, 0, 200),
                              elapsed => time - $e->{h}{t0} };
            }
            if ($e->{res}) {
                $sel->remove($s);
                close $s;
            }
        }
    }
    for my $e (@st) {
        next if $e->{res};
        $sel->remove($e->{h}{sock});
        close $e->{h}{sock};
        $e->{res} = { status => 0, error => 'timeout', elapsed => time - $e->{h}{t0} };
    }
    return map { $_->{res} } @st;
}

1;
