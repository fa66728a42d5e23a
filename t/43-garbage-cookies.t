# Garbage in the flashsale cookie is "no token": the waiting answer, never
# a 500, never a crash.
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
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/ { flashsale zone=z rate=0r/s; }
}
EOF

my @pids = $t->worker_pids;
my $b64 = \&FlashsaleTest::b64u;
my $hdr = $b64->('{"alg":"HS256","typ":"JWT"}');

sub signed_raw {      # correctly signed, odd claims text
    my ($claims) = @_;
    return jwt_encode(undef, $key, raw_claims => $claims);
}

my @cookies = (
    [ 'flashsale='                 => 'flashsale=' ],
    [ 'flashsale=a.b.c'            => 'flashsale=a.b.c' ],
    [ 'flashsale=..'               => 'flashsale=..' ],
    [ 'flashsale=.'                => 'flashsale=.' ],
    [ 'flashsale=a'                => 'flashsale=a' ],
    [ 'flashsale without ='        => 'flashsale' ],
    [ 'flashsale="quoted"'         => 'flashsale="a.b.c"' ],
    [ 'flashsale=; flashsale=a.b.c' => 'flashsale=; flashsale=a.b.c' ],
    [ 'very long (7000 bytes)'     => 'flashsale=' . ('x' x 7000) ],
    [ 'very long with dots'        => 'flashsale=' . join('.', ('y' x 2300) x 3) ],
    [ 'base64 of "{"'              => "flashsale=$hdr." . $b64->('{') . '.sig' ],
    [ 'header not JSON'            => 'flashsale=' . $b64->('not json') . '.' . $b64->('{}') . '.x' ],
    [ 'header JSON array'          => 'flashsale=' . $b64->('[1,2]') . '.' . $b64->('{}') . '.x' ],
    [ 'signed: claims are an array' => 'flashsale=' . signed_raw('[1,2,3]') ],
    [ 'signed: claims are a number' => 'flashsale=' . signed_raw('42') ],
    [ 'signed: claims empty object' => 'flashsale=' . signed_raw('{}') ],
    [ 'signed: claims not JSON'    => 'flashsale=' . signed_raw('{"iss":') ],
    [ 'signed: tkt negative'       => 'flashsale=' . $t->forge(zone => 'z', tkt => -1) ],
    [ 'signed: tkt zero'           => 'flashsale=' . $t->forge(zone => 'z', tkt => 0) ],
    [ 'signed: tkt huge'           => 'flashsale=' . $t->forge(zone => 'z', tkt => 1e30) ],
    [ 'signed: tkt 2^64'           => 'flashsale=' . signed_raw('{"iss":"flashsale","aud":"z","sub":"0123456789abcdef0123456789abcdef","tkt":18446744073709551616,"iat":' . time . ',"exp":' . (time + 600) . '}') ],
    [ 'signed: tkt float'          => 'flashsale=' . $t->forge(zone => 'z', tkt => 1.5) ],
    [ 'signed: tkt null'           => 'flashsale=' . signed_raw('{"iss":"flashsale","aud":"z","sub":"0123456789abcdef0123456789abcdef","tkt":null,"iat":' . time . ',"exp":' . (time + 600) . '}') ],
    [ 'signed: no tkt'             => 'flashsale=' . $t->forge(zone => 'z', tkt => undef) ],
    [ 'signed: sub not hex'        => 'flashsale=' . $t->forge(zone => 'z', tkt => 1, sub => '<script>alert(1)</script>') ],
    [ 'signed: sub very long'      => 'flashsale=' . $t->forge(zone => 'z', tkt => 1, sub => 'a' x 3000) ],
    [ 'signed: sub a number'       => 'flashsale=' . $t->forge(zone => 'z', tkt => 1, sub => 12345) ],
    [ 'signed: exp huge'           => 'flashsale=' . $t->forge(zone => 'z', tkt => 1, exp => 1e300) ],
    [ 'signed: iat huge'           => 'flashsale=' . $t->forge(zone => 'z', tkt => 1, iat => 9e18) ],
    [ 'signed: iat negative'       => 'flashsale=' . $t->forge(zone => 'z', tkt => 1, iat => -5) ],
    [ 'signed: adm false'          => 'flashsale=' . signed_raw('{"adm":false,"iss":"flashsale","aud":"z","sub":"0123456789abcdef0123456789abcdef","tkt":1,"iat":' . time . ',"exp":' . (time + 600) . '}') ],
);
# random bytes (no CR, LF, NUL: those end or break the header line)
for my $n (1 .. 20) {
    my $v = join '', map { my $c; do { $c = int rand 256 } while ($c == 10 || $c == 13 || $c == 0); chr $c } 1 .. (10 + int rand 400);
    push @cookies, [ "random bytes #$n" => "flashsale=$v" ];
}

my $fail = 0;
for my $c (@cookies) {
    my ($name, $cookie) = @$c;
    my $j = $t->get_json('/drop/item.html', Cookie => $cookie);
    my $h = $t->get('/drop/item.html', Cookie => $cookie);
    my $ok = $j->status == 429 && ($j->json // {})->{state} eq 'waiting'
          && $h->status == 200 && $h->body ne "CONTENT\n"
          && ($h->header('content-type') // '') =~ m{^text/html};
    # nginx itself may refuse a header line it cannot parse; never a 5xx
    if (!$ok && $j->status == 400 && $h->status == 400 && $name =~ /^random/) {
        $ok = 1;
        note("$name: nginx refused the header line itself (400)");
    }
    ok($ok, "cookie $name: the waiting answer (JSON 429, HTML 200)")
        or diag("JSON: " . $j->describe . "\nHTML: " . $h->status);
    $fail++ if $j->status >= 500 || $h->status >= 500 || $j->status == 0 || $h->status == 0;
}
is($fail, 0, 'no garbage cookie ever got a 5xx or a dropped connection');
is_deeply([ $t->worker_pids ], \@pids, 'the workers are the same ones afterwards');

$t->finish;
