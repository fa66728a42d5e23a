# Field case zone-too-small (issue 4): flashsale_zone z:32k and 5000
# distinct SKUs found sold out (stock 0 each: 2500 short names, then 2500
# of the longest allowed, 64 characters, so latches of two sizes compete
# for the little memory there is). Reservations with bounded concurrency.
# Every request gets a defined answer (409, never 500/503/lost), the status
# still answers with sane shm numbers, the latch keeps working for recent
# SKUs, and error.log has at most a few "could not allocate" lines naming
# the zone, at warn, and no [crit]/[alert] (no slab "no memory" line).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use IO::Select;
use FlashsaleTest;
use ReserveTest;
use BreakerTest;

my $N = 5000;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->start_redis;

$t->run_nginx(<<'EOF');
flashsale_zone z:32k;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=3s pool=16;
flashsale_breaker failures=50% window=5s min_calls=20 open=2s half_open=2;
server {
    listen 127.0.0.1:%%PORT%%;
    keepalive_requests 100000;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty latch=60s;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF

my @skus = ((map { sprintf 'S%04d', $_ } 1 .. $N / 2),
            (map { sprintf('L%04d', $_) . ('x' x 59) } 1 .. $N / 2));
is(length($skus[-1]), 64, 'long SKUs are 64 characters');

# pre-load stock 0 for every SKU in one pipeline
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->redis_port,
                                  Proto => 'tcp', Timeout => 5) or die "redis: $!";
    my $out = join '', map {
        my $k = stock_key('z', $_);
        "*3\r\n\$3\r\nSET\r\n\$" . length($k) . "\r\n$k\r\n\$1\r\n0\r\n"
    } @skus;
    my $sel = IO::Select->new($s);
    my ($in, $deadline) = ('', time + 20);
    while ((length $out || ($in =~ tr/\n//) < $N) && time < $deadline) {
        if (length $out && $sel->can_write(0)) {
            my $n = syswrite($s, $out, 65536);
            substr($out, 0, $n, '') if $n;
        }
        if ($sel->can_read(length $out ? 0 : 1)) {
            sysread($s, $in, 65536, length $in) or last;
        }
    }
    close $s;
    is(scalar(() = $in =~ /^\+OK\r$/mg), $N, "$N stock keys set to 0");
}
is(cli($t, 'DBSIZE'), $N, "Redis holds $N keys");

my $z0 = zst($t, 'z');
is($z0->{shm}{size}, 32768, 'shm.size 32768');

my $pass = bearer($t, 'shopper-1');
my @reqs = map {
    "GET /cart/add?sku=$_&qty=1 HTTP/1.1\r\nHost: localhost\r\n"
    . "Accept: application/json\r\nAuthorization: $pass\r\n\r\n"
} @skus;
my $t0 = time;
my @res = load_run(port => $t->port, reqs => \@reqs, procs => 4, conns => 4,
                   timeout => 60, dir => $t->dir);
note(sprintf '%d reservations in %.1f s', $N, time - $t0);

my %by;
$by{ $_->[0] }++ for @res;
note('statuses: ' . join(', ', map { "$_ x$by{$_}" } sort keys %by));
is(scalar(@res), $N, "$N answers");
is($by{409} // 0, $N, 'every one is a defined 409 sold out (no 500, 503 or lost answer)')
    or diag(explain(\%by));
my @bad = grep {
    my $j = json_decode($res[$_][2]);
    !(ref $j eq 'HASH' && ($j->{state} // '') eq 'sold_out' && ($j->{sku} // '') eq $skus[$_])
} grep { $res[$_][0] == 409 } 0 .. $#res;
is(scalar(@bad), 0, 'each 409 names its own SKU');

my $z = zst($t, 'z');
ok(defined $z->{zone}, 'the status still answers');
is($z->{reservations}{sold_out}, $N, "reservations.sold_out $N");
is($z->{redis}{errors} + $z->{redis}{timeouts}, 0, 'no Redis error or timeout');
is($z->{breaker}{state}, 'closed', 'breaker closed (sold out is Redis working)');
cmp_ok($z->{shm}{used}, '<=', $z->{shm}{size}, "shm.used $z->{shm}{used} <= shm.size $z->{shm}{size}");
cmp_ok(scalar(@{ $z->{sold_out_skus} }), '>', 0, 'some SKUs are latched');
cmp_ok(scalar(@{ $z->{sold_out_skus} }), '<=', 100, 'sold_out_skus lists at most 100');
my %known = map { $_ => 1 } @skus;
is(scalar(grep { !$known{$_} } @{ $z->{sold_out_skus} }), 0, 'every listed SKU is one of ours');

# the most recent SKUs are latched: answered without Redis
my @recent = grep { $_ =~ /^L/ } @{ $z->{sold_out_skus} };
@recent = @recent[0 .. 9] if @recent > 10;
my $e0 = evalsha_calls($t);
my @again = map { reserve_as($t, "/cart/add?sku=$_&qty=1") } @recent;
is(scalar(grep { $_->status == 409 } @again), scalar(@recent),
   scalar(@recent) . ' latched SKUs asked again: 409');
is(evalsha_calls($t), $e0, 'answered from the latch, no EVALSHA');

# an old SKU (evicted) is asked of Redis again and still answered
$e0 = evalsha_calls($t);
my $r = reserve_as($t, "/cart/add?sku=$skus[0]&qty=1");
is($r->status, 409, 'an evicted SKU is still answered 409');
is(evalsha_calls($t), $e0 + 1, 'by asking Redis');

my @nomem = grep { /could not allocate/ } split /\n/, $t->error_log;
note(scalar(@nomem) . ' "could not allocate" line(s)');
cmp_ok(scalar(@nomem), '<=', 3, 'at most a few "could not allocate" lines, not one per request');
is(scalar(grep { !/flashsale zone "z"/ } @nomem), 0, 'each names the zone');
is(scalar(grep { !/\[warn\]/ } @nomem), 0, 'each at warn');
unlike($t->error_log, qr/ngx_slab_alloc\(\) failed/, 'no slab "no memory" line');

$t->finish;
