# Exact stock accounting under load (issue 3, field case oversell-concurrent):
# stock 1000, 20000 attempts from 20000 distinct admitted shoppers over
# keep-alive connections with bounded concurrency: exactly 1000 reservations
# (200), 19000 sold out (409), stock ends at 0 and is never seen negative,
# 1000 holds, one per shopper who got a 200.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use FlashsaleTest;
use ReserveTest;

my $STOCK = 1000;
my $ATTEMPTS = 20000;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->start_redis;

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=3s pool=16;
server {
    listen 127.0.0.1:%%PORT%%;
    keepalive_requests 100000;
    location /drop/ { flashsale zone=z rate=0r/s; }
    # latch=0: every attempt goes to Redis (no sold-out answer from memory)
    location = /cart/add {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty hold=10m latch=0;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    # the default sold-out latch
    location = /cart/latched {
        flashsale zone=z;
        flashsale_reserve sku=$arg_sku qty=$arg_qty hold=10m;
        add_header X-Reservation $flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /stock { flashsale_stock; }
    location = /flashsale_status { flashsale_status; }
}
EOF

my $put = $t->http(method => 'PUT', path => "/stock?sku=A1&qty=$STOCK");
is($put->status, 200, "PUT /stock?sku=A1&qty=$STOCK: 200") or diag($put->describe);
is(cli($t, 'GET', stock_key('z', 'A1')), $STOCK, "Redis has stock $STOCK");

# passes made up front: signing is not part of what is measured
my $t0 = time;
my @subs = map { sprintf 'shopper-%05d', $_ } 1 .. $ATTEMPTS;
my @reqs = map {
    "GET /cart/add?sku=A1&qty=1 HTTP/1.1\r\nHost: localhost\r\n"
    . "Accept: application/json\r\nAuthorization: " . bearer($t, $_) . "\r\n\r\n"
} @subs;
note(sprintf 'signed %d passes in %.1f s', $ATTEMPTS, time - $t0);

# a sampler watches the stock key while the load runs
my $sample_file = $t->path('stock-samples');
my $stop_file = $t->path('stop-sampler');
my $sampler = fork;
die "fork: $!" unless defined $sampler;
if ($sampler == 0) {
    my ($min, $n) = (undef, 0);
    my $deadline = time + 90;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->redis_port,
                                  Proto => 'tcp', Timeout => 2);
    my $key = stock_key('z', 'A1');
    my $cmd = "*2\r\n\$3\r\nGET\r\n\$" . length($key) . "\r\n$key\r\n";
    while ($s && !-e $stop_file && time < $deadline) {
        syswrite($s, $cmd);
        my $buf = '';
        while ($buf !~ /\r\n.*\r\n/s && $buf !~ /^\$-1\r\n/) {
            last unless sysread($s, $buf, 4096, length $buf);
        }
        if ($buf =~ /^\$\d+\r\n(-?\d+)\r\n/) {
            $min = $1 if !defined $min || $1 < $min;
            $n++;
        }
        sleep 0.005;
    }
    open my $fh, '>', $sample_file;
    print $fh ($min // 'none'), " $n\n";
    close $fh;
    POSIX::_exit(0);
}

my $ev0 = evalsha_calls($t);
$t0 = time;
my @res = load_run(port => $t->port, reqs => \@reqs, procs => 4, conns => 16,
                   timeout => 60, dir => $t->dir);
my $took = time - $t0;
note(sprintf '%d attempts in %.1f s (%.0f/s)', $ATTEMPTS, $took, $ATTEMPTS / $took);

$t->write_file('stop-sampler', '');
waitpid($sampler, 0);

my %by;
$by{ $_->[0] }++ for @res;
is(scalar(@res), $ATTEMPTS, "$ATTEMPTS answers collected");
is($by{200} // 0, $STOCK, "exactly $STOCK attempts reserved (200)")
    or diag(explain(\%by));
is($by{409} // 0, $ATTEMPTS - $STOCK, 'all the others sold out (409)')
    or diag(explain(\%by));
my @odd = grep { $res[$_][0] != 200 && $res[$_][0] != 409 } 0 .. $#res;
is(scalar(@odd), 0, 'no other status (no 503, no 500, no lost answer)')
    or diag(join "\n", map { "$subs[$_]: @{$res[$_]}[0,2]" } @odd[0 .. ($#odd > 9 ? 9 : $#odd)]);

# every 200 carries its own shopper's reservation
my @ok = grep { $res[$_][0] == 200 } 0 .. $#res;
my @bad_hdr = grep {
    $res[$_][1] !~ /^sku=A1&qty=1&visitor=\Q$subs[$_]\E&expires=\d{13}$/
} @ok;
is(scalar(@bad_hdr), 0, 'each 200 has X-Reservation sku=A1&qty=1&visitor=<its shopper>&expires=<ms>')
    or diag(join "\n", map { "$subs[$_]: $res[$_][1]" } @bad_hdr[0 .. ($#bad_hdr > 4 ? 4 : $#bad_hdr)]);
is(scalar(grep { $res[$_][2] ne "RESERVED\n" && $res[$_][2] ne 'RESERVED ' } @ok), 0,
   "each 200 is the location's content");

my @sold = grep { $res[$_][0] == 409 } 0 .. $#res;
my @bad409 = grep {
    my $j = json_decode($res[$_][2]);
    !(ref $j eq 'HASH' && ($j->{state} // '') eq 'sold_out' && ($j->{sku} // '') eq 'A1'
      && $res[$_][3] =~ m{^application/json} && $res[$_][4] eq 'no-store')
} @sold;
is(scalar(@bad409), 0, 'each 409 is JSON {"state":"sold_out","sku":"A1"} with Cache-Control: no-store')
    or diag(join "\n", map { "@{$res[$_]}" } @bad409[0 .. ($#bad409 > 4 ? 4 : $#bad409)]);

# Redis state
is(cli($t, 'GET', stock_key('z', 'A1')), '0', 'stock key ends at 0');
is(cli($t, 'ZCARD', holds_key('z', 'A1')), $STOCK, "holds zset has $STOCK members");
is(cli($t, 'HLEN', qty_key('z', 'A1')), $STOCK, "qty hash has $STOCK fields");
my %holders = map { $_ => 1 } split /\n/, cli($t, 'ZRANGE', holds_key('z', 'A1'), 0, -1);
my %winners = map { $subs[$_] => 1 } @ok;
is_deeply(\%holders, \%winners, 'the holders in Redis are exactly the shoppers who got 200');
my @qtys = split /\n/, cli($t, 'HVALS', qty_key('z', 'A1'));
my $sum = 0;
$sum += $_ for @qtys;
is($sum, $STOCK, "held quantities add up to $STOCK");

my ($min, $samples) = split ' ', ($t->read_file('stock-samples') // 'none 0');
ok($samples > 10, "the stock key was sampled during the run ($samples samples)");
cmp_ok($min, '>=', 0, "the stock key was never seen negative (min $min)");

my $g = $t->get('/stock?sku=A1');
is($g->status, 200, 'GET /stock: 200');
is_deeply($g->json, { sku => 'A1', stock => 0, holds => $STOCK },
          "GET /stock: {sku A1, stock 0, holds $STOCK}") or diag($g->body);

cmp_ok(evalsha_calls($t) - $ev0, '>=', $ATTEMPTS, "every attempt reached Redis (>= $ATTEMPTS EVALSHA)");

my $z = zone_stats($t);
is($z->{reservations}{reserved}, $STOCK, "status reservations.reserved = $STOCK");
is($z->{reservations}{sold_out}, $ATTEMPTS - $STOCK, 'status reservations.sold_out = ' . ($ATTEMPTS - $STOCK));
is($z->{reservations}{errors}, 0, 'status reservations.errors = 0');
is($z->{redis}{errors}, 0, 'status redis.errors = 0');
is($z->{redis}{timeouts}, 0, 'status redis.timeouts = 0');
cmp_ok($took, '<', 60, 'the run stayed under 60 s');

# the same with the sold-out latch on: 100 units, 2000 attempts
cli($t, 'SET', stock_key('z', 'L1'), 100);
my @lreqs = map {
    "GET /cart/latched?sku=L1&qty=1 HTTP/1.1\r\nHost: localhost\r\n"
    . "Accept: application/json\r\nAuthorization: " . bearer($t, "latched-$_") . "\r\n\r\n"
} 1 .. 2000;
my @lres = load_run(port => $t->port, reqs => \@lreqs, procs => 4, conns => 16,
                    timeout => 30, dir => $t->dir);
my %lby;
$lby{ $_->[0] }++ for @lres;
is($lby{200} // 0, 100, 'with the sold-out latch: exactly 100 of 2000 reserved');
is($lby{409} // 0, 1900, 'with the sold-out latch: 1900 sold out');
is(cli($t, 'GET', stock_key('z', 'L1')), '0', 'with the sold-out latch: stock 0');
is(cli($t, 'ZCARD', holds_key('z', 'L1')), '100', 'with the sold-out latch: 100 holds');

$t->finish;
