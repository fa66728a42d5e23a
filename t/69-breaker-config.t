# Issue 4: flashsale_breaker parameters checked by nginx -t.
# Bad values (failures outside 1..100, window outside 1s..60s, half_open
# outside 1..32, min_calls 0, slow/open 0 or not a time, unknown watch or
# parameter) fail naming flashsale_breaker and the bad parameter; the
# limits themselves pass. One breaker per zone: two locations of a zone
# with different parameters fail naming flashsale_breaker; the same
# parameters (or one http-level directive) pass. A zone without a breaker
# reports state "off" and a zone with one "closed".
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;
use BreakerTest;

my $t = FlashsaleTest->new;
$t->write_keys;

sub conf_with {
    my ($http, $loc1, $loc2) = @_;
    $loc1 //= '';
    $loc2 //= '';
    return <<"EOF";
flashsale_zone z:1m;
flashsale_zone y:1m;
flashsale_secret_file %%KEYS%%;
$http
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=1r/s; $loc1 }
    location /shop/ { flashsale zone=z; $loc2 }
    location /other/ { flashsale zone=y rate=1r/s; }
}
EOF
}

my @bad = (
    'failures=0', 'failures=101', 'failures=101%', 'failures=abc', 'failures=',
    'failures=-5%', 'window=0s', 'window=61s', 'window=2m', 'window=abc',
    'min_calls=0', 'min_calls=x', 'slow=0', 'slow=abc', 'open=0', 'open=x',
    'half_open=0', 'half_open=33', 'half_open=x', 'watch=redis,upstream',
    'watch=store', 'watch=', 'bogus=1', 'failures',
);
for my $p (@bad) {
    my ($rc, $out) = $t->nginx_t(conf_with("flashsale_breaker $p;"));
    isnt($rc, 0, "flashsale_breaker $p: nginx -t fails");
    ok($rc < 128, "flashsale_breaker $p: a clean failure, no crash") or diag("exit $rc");
    like($out, qr/\[emerg\].*flashsale_breaker/, "flashsale_breaker $p: the message names flashsale_breaker")
        or diag($out);
    like($out, qr/\Q$p\E/, "flashsale_breaker $p: and the parameter") or diag($out);
}

my @good = (
    '', 'failures=1', 'failures=100', 'failures=100%', 'failures=50',
    'window=1s', 'window=60s', 'window=1m', 'half_open=1', 'half_open=32',
    'min_calls=1', 'slow=1ms', 'open=1s', 'open=10m',
    'watch=redis', 'watch=upstream', 'watch=both',
    'failures=30% window=10s min_calls=20 slow=500ms open=30s half_open=5 watch=redis',
);
for my $p (@good) {
    my ($rc, $out) = $t->nginx_t(conf_with("flashsale_breaker $p;"));
    is($rc, 0, "flashsale_breaker $p: nginx -t passes") or diag($out);
}

# one breaker per zone
my ($rc, $out) = $t->nginx_t(conf_with('',
    'flashsale_breaker failures=50% open=2s;', 'flashsale_breaker failures=60% open=2s;'));
isnt($rc, 0, 'two locations of zone z with different breakers: nginx -t fails');
like($out, qr/\[emerg\].*flashsale_breaker/, 'naming flashsale_breaker') or diag($out);
like($out, qr/zone=z|"z"/, 'and the zone') or diag($out);

($rc, $out) = $t->nginx_t(conf_with('', 'flashsale_breaker open=2s;', ''));
is($rc, 0, 'a breaker in one location of the zone only: passes') or diag($out);

($rc, $out) = $t->nginx_t(conf_with('',
    'flashsale_breaker failures=50% open=2s;', 'flashsale_breaker open=2s failures=50%;'));
is($rc, 0, 'the same parameters in another order: passes') or diag($out);

($rc, $out) = $t->nginx_t(conf_with('flashsale_breaker failures=50% open=2s;',
    '', 'flashsale_breaker failures=60% open=2s;'));
isnt($rc, 0, 'http-level breaker and a different one in a location of the same zone: fails');
like($out, qr/flashsale_breaker/, 'naming flashsale_breaker') or diag($out);

($rc, $out) = $t->nginx_t(conf_with('flashsale_breaker open=2s;', 'flashsale_breaker open=2s;'));
is($rc, 0, 'http-level breaker repeated identically in a location: passes') or diag($out);

($rc, $out) = $t->nginx_t(conf_with('', 'flashsale_breaker open=2s; flashsale_breaker open=3s;'));
isnt($rc, 0, 'flashsale_breaker twice in one location: fails');
like($out, qr/flashsale_breaker/, 'naming flashsale_breaker') or diag($out);

# a running nginx: the breaker is per zone, "off" without the directive
$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_zone y:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=1r/s; flashsale_breaker open=2s; }
    location /other/ { flashsale zone=y rate=1r/s; }
    location = /flashsale_status { flashsale_status; }
}
EOF
my $st = $t->status;
is($st->{z}{breaker}{state}, 'closed', 'zone z with a breaker: closed');
is($st->{y}{breaker}{state}, 'off', 'zone y without one: off');
is_deeply([ sort keys %{ $st->{z}{breaker} } ],
          [qw(retry_after state trips window_calls window_failures)],
          'breaker fields: state, window_calls, window_failures, trips, retry_after');

$t->finish;
