# Odd Authorization headers are "no token": the waiting page or JSON,
# never a 500, never a crashed worker.  Field case: authorization-header-shapes.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/drop/item.html', "CONTENT\n");

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/ { flashsale zone=z rate=0r/s; }
}
EOF

my @pids = $t->worker_pids;

my @shapes = (
    [ 'Authorization: X'                      => 'X' ],
    [ 'Authorization: Bearer'                 => 'Bearer' ],
    [ 'Authorization: Bearer (trailing space)' => 'Bearer ' ],
    [ 'Authorization: Bearer a.b'             => 'Bearer a.b' ],
    [ 'Authorization: Basic Zm9vOmJhcg=='     => 'Basic Zm9vOmJhcg==' ],
    [ 'Authorization: 7000 bytes of A'        => 'A' x 7000 ],
    [ 'Authorization: Bearer + 7000 bytes of A' => 'Bearer ' . ('A' x 7000) ],
    [ 'Authorization: Bearer with two spaces'  => 'Bearer  a.b.c' ],
    [ 'Authorization: bearer (lowercase) a.b.c' => 'bearer a.b.c' ],
    [ 'Authorization: Bearer ...'             => 'Bearer ...' ],
    [ 'Authorization: Bearer .'               => 'Bearer .' ],
    [ 'Authorization: Bearer a.b.c.d'         => 'Bearer a.b.c.d' ],
    [ 'Authorization: Bearer with high bytes' => "Bearer \xff\xfe.\x80\x81.\xc3\xa9" ],
    [ 'Authorization: Bearer of base64 junk'  => 'Bearer ' . join('.', map { FlashsaleTest::b64u(join '', map { chr rand 256 } 1 .. 40) } 1 .. 3) ],
);

for my $s (@shapes) {
    my ($name, $value) = @$s;
    my $raw = "GET /drop/item.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            . "Authorization: $value\r\n";
    my $j = $t->http(raw => $raw . "Accept: application/json\r\n\r\n");
    my $h = $t->http(raw => $raw . "\r\n");
    subtest "$name: treated as no token" => sub {
        is($j->status, 429, 'JSON: 429 waiting');
        is(($j->json // {})->{state}, 'waiting', 'JSON: state waiting');
        ok(defined(($j->json // {})->{token}), 'JSON: a fresh ticket');
        is($h->status, 200, 'HTML: 200');
        like($h->header('content-type') // '', qr{^text/html}, 'HTML: the waiting page');
        isnt($h->body, "CONTENT\n", 'HTML: not the content');
    } or diag($j->describe);
}

# also on top of a valid-looking cookie of garbage
my $r = $t->get_json('/drop/item.html', Authorization => 'A' x 7000,
                     Cookie => 'flashsale=' . ('B' x 500));
is($r->status, 429, '7000-byte Authorization plus a garbage cookie: 429');

is_deeply([ $t->worker_pids ], \@pids, 'the worker processes are the same ones afterwards');
unlike($t->error_log, qr/exited on signal/, 'no worker exited on a signal');

$t->finish;
