# /flashsale_status: JSON per zone, GET and HEAD only, access control by
# allow/deny, never a secret in the body.  Field case: status-exposure.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;

my $t = FlashsaleTest->new;
my $key = $t->write_keys;
$t->write_file('html/drop/item.html', "CONTENT\n");

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_zone slow:64k;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/ { flashsale zone=z rate=60r/m burst=3 session=10m; }
    location /slow/ { flashsale zone=slow rate=0r/s; }
    location = /flashsale_status {
        flashsale_status;
        allow 127.0.0.2;
        deny all;
    }
    location = /open_status {
        flashsale_status;
    }
}
EOF

my @tokens;
my @r = $t->parallel([ map { { path => '/drop/item.html',
                               headers => [ Accept => 'application/json' ] } } 1 .. 8 ]);
push @tokens, grep { defined } map { $_->token } @r;
push @tokens, grep { defined } map { $_->token } $t->get('/slow/item.html');
is(scalar(@tokens), 9, 'nine tokens handed out');

# --- access control
my $d = $t->get('/flashsale_status');
is($d->status, 403, 'a denied address (127.0.0.1) gets 403');
unlike($d->body, qr/tickets_issued/, 'the 403 carries no status data');

my $g = $t->get('/flashsale_status', local_addr => '127.0.0.2');
is($g->status, 200, 'the allowed address (127.0.0.2) gets 200');

# --- the document
is($g->header('content-type'), 'application/json', 'Content-Type application/json');
is($g->header('cache-control'), 'no-store', 'Cache-Control: no-store');
is($g->header('content-length'), length($g->body), 'Content-Length matches');
my $j = $g->json;
ok($j, 'the body is valid JSON') or diag($g->body);
is(ref $j->{zones}, 'ARRAY', 'a "zones" array');
my %z = map { $_->{zone} => $_ } @{ $j->{zones} };
is_deeply([ sort keys %z ], [ 'slow', 'z' ], 'one object per zone');
for my $f (qw(zone rate burst session tickets_issued admitted waiting eta_new)) {
    ok(exists $z{z}{$f}, "zone object has \"$f\"");
}
like($g->body, qr/"rate":1\.000\b/, 'rate is admissions per second with 3 decimals (60r/m = 1.000)');
is($z{z}{burst}, 3, 'burst 3');
is($z{z}{session}, 600, 'session 600 s');
is($z{z}{tickets_issued}, 8, 'tickets_issued 8');
is($z{z}{admitted}, 4, 'admitted 4 (1 + burst 3)');
is($z{z}{waiting}, 4, 'waiting 4');
ok($z{z}{eta_new} >= 4 && $z{z}{eta_new} <= 5, "eta_new about 5 s for a newcomer (got $z{z}{eta_new})");
is($z{slow}{tickets_issued}, 1, 'the paused zone has its own counters');
ok(exists $z{slow}{eta_new} && !defined $z{slow}{eta_new}, 'eta_new is null when paused');
if ($z{slow}{shm}) {
    is($z{slow}{shm}{size}, 64 * 1024, 'shm.size is the zone size');
    ok($z{slow}{shm}{used} > 0 && $z{slow}{shm}{used} <= 64 * 1024, 'shm.used is within the zone');
}

# --- methods
my $h = $t->http(method => 'HEAD', path => '/open_status');
is($h->status, 200, 'HEAD: 200');
is($h->body, '', 'HEAD: headers only');
is($h->header('content-type'), 'application/json', 'HEAD: Content-Type application/json');
is($h->header('cache-control'), 'no-store', 'HEAD: Cache-Control: no-store');

for my $m (qw(POST PUT DELETE)) {
    my $p = $t->http(method => $m, path => '/open_status', body => 'x=1');
    is($p->status, 405, "$m: 405");
}
my $pd = $t->http(method => 'POST', path => '/flashsale_status', body => 'x=1');
ok($pd->status == 403 || $pd->status == 405, 'POST from a denied address: 403 or 405, never data');

# --- nothing secret, ever
my @bodies = map { $_->body } $g, $t->get('/open_status'),
    $t->get('/open_status?format=json'), $pd;
my $leak = 0;
for my $b (@bodies) {
    $leak++ if index($b, $key) >= 0;
    $leak++ if index($b, $t->keys_file) >= 0;   # the key file path
    for my $tok (@tokens) {
        my ($sig) = $tok =~ /\.([^.]+)$/;
        $leak++ if index($b, $tok) >= 0 || index($b, $sig) >= 0;
    }
}
is($leak, 0, 'no status body contains a key, the key file, a token or a signature');

$t->finish;
