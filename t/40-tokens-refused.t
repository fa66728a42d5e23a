# Tokens that must be refused even though they look fine: alg "none" and
# other algorithms, expired/not-yet-valid, wrong audience, no issuer.
# A refused token is treated as absent: a new ticket at the back, no 500,
# nothing logged above info.  Field cases: token-alg-none, token-expired.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use FlashsaleTest;

my $t = FlashsaleTest->new;
my $key = $t->write_keys;
$t->write_file('html/drop/item.html', "CONTENT\n");

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_zone y:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/  { flashsale zone=z rate=1r/s; }
    location /other/ { flashsale zone=y rate=1r/s; }
    location = /flashsale_status { flashsale_status; }
}
EOF

# A queue of 60 ahead, so a refused shopper (a newcomer) cannot be admitted
# during this test: at 1r/s a new ticket waits about a minute.
my @q = $t->parallel([ map { { path => '/drop/item.html',
                               headers => [ Accept => 'application/json' ] } } 1 .. 60 ]);
cmp_ok(scalar(grep { $_->status == 429 } @q), '>=', 58, 'a queue of about 60 is waiting');

my $now = int(time);
my $b64 = \&FlashsaleTest::b64u;
my $JSON = JSON::PP->new->canonical;

sub pass_claims { make_claims(zone => 'z', tkt => 1, adm => 1, exp => $now + 3600, @_) }

# the field case literally: base64url({"alg":"none"}) . claims . (empty)
my $none_literal = $b64->('{"alg":"none"}') . '.' . $b64->($JSON->encode(pass_claims())) . '.';

my @refused = (
    [ 'alg "none", empty signature (the field case)' => $none_literal ],
    [ 'alg "none" with typ JWT' => jwt_encode(pass_claims(), $key, alg => 'none') ],
    [ 'alg "None"' => jwt_encode(pass_claims(), $key, header => { alg => 'None', typ => 'JWT' }, sign_with => 'none') ],
    [ 'alg "none" with a valid HS256 signature' =>
        jwt_encode(pass_claims(), $key, header => { alg => 'none', typ => 'JWT' }, sign_with => 'HS256') ],
    [ 'HS384 signed with the right key' => jwt_encode(pass_claims(), $key, alg => 'HS384') ],
    [ 'HS512 signed with the right key' => jwt_encode(pass_claims(), $key, alg => 'HS512') ],
    [ 'RS256 header with an HMAC signature' =>
        jwt_encode(pass_claims(), $key, header => { alg => 'RS256', typ => 'JWT' }, sign_with => 'HS256') ],
    [ 'no alg at all' => jwt_encode(pass_claims(), $key, header => { typ => 'JWT' }, sign_with => 'HS256') ],
    [ 'HS256 signed with another key' => jwt_encode(pass_claims(), 'X' x 48) ],
    [ 'HS256 with the signature cut off' => do { my $x = jwt_encode(pass_claims(), $key); $x =~ s/\.[^.]+$/./; $x } ],
    [ 'HS256 with a flipped signature byte' => do {
        my $x = jwt_encode(pass_claims(), $key);
        substr($x, -2, 1) = substr($x, -2, 1) eq 'A' ? 'B' : 'A'; $x } ],
    [ 'claims changed after signing' => do {
        my $x = jwt_encode(pass_claims(tkt => 2), $key);
        my @p = split /\./, $x;
        $p[1] = $b64->($JSON->encode(pass_claims(tkt => 1)));
        join '.', @p } ],
    # token-expired, all six inputs
    [ 'exp = now - 60 s' => $t->forge(%{ { zone => 'z', tkt => 1, adm => 1, exp => $now - 60 } }) ],
    [ 'no exp claim' => $t->forge(zone => 'z', tkt => 1, adm => 1, exp => undef) ],
    [ 'exp as a string "9999999999"' => $t->forge(zone => 'z', tkt => 1, adm => 1, exp => '9999999999') ],
    [ 'nbf = now + 120 s' => $t->forge(zone => 'z', tkt => 1, adm => 1, nbf => $now + 120) ],
    [ "aud = another zone's name" => $t->forge(zone => 'y', tkt => 1, adm => 1) ],
    [ 'no iss' => $t->forge(zone => 'z', tkt => 1, adm => 1, iss => undef) ],
    # and a few more of the same kind
    [ 'iss = "someone-else"' => $t->forge(zone => 'z', tkt => 1, adm => 1, iss => 'someone-else') ],
    [ 'no aud' => $t->forge(zone => undef, tkt => 1, adm => 1) ],
    [ 'aud as an array ["z"]' => $t->forge(zone => 'z', tkt => 1, adm => 1, aud => ['z']) ],
    [ 'exp = now - 10 s (beyond the 5 s leeway)' => $t->forge(zone => 'z', tkt => 1, adm => 1, exp => $now - 10) ],
    [ 'nbf = now + 30 s' => $t->forge(zone => 'z', tkt => 1, adm => 1, nbf => $now + 30) ],
    [ 'tkt as a string' => $t->forge(zone => 'z', tkt => '1', adm => 1) ],
);

my $issued = $t->status->{z}{tickets_issued};
for my $case (@refused) {
    my ($name, $tok) = @$case;
    my $forged_sub = (jwt_claims($tok) // {})->{sub} // '';
    for my $how ('cookie', 'bearer') {
        my $mark = $t->log_mark;
        my @h = $how eq 'cookie' ? (Cookie => "flashsale=$tok")
                                 : (Authorization => "Bearer $tok");
        my $r = $t->get_json('/drop/item.html', @h);
        my $h = $t->get('/drop/item.html', @h);
        my $log = $t->log_since($mark);
        subtest "$name ($how): refused, treated as no token" => sub {
            is($r->status, 429, 'JSON: 429 waiting, not admitted');
            is(($r->json // {})->{state}, 'waiting', 'JSON: state waiting');
            my $c = jwt_claims($r->json->{token} // '') // {};
            cmp_ok($c->{tkt} // 0, '>', 50, 'a new ticket at the back of the queue');
            isnt($c->{sub} // '', $forged_sub, 'with a new visitor id');
            ok(!$c->{adm}, 'not a pass');
            is($h->status, 200, 'HTML: 200');
            isnt($h->body, "CONTENT\n", 'HTML: the waiting page, not the content');
            my @loud = grep { /\[(notice|warn|error|crit|alert|emerg)\]/ } split /\n/, $log;
            is(scalar(@loud), 0, 'nothing logged above info') or diag(join "\n", @loud);
            is(index($log, $tok), -1, 'the token is not logged');
        };
    }
}
is($t->status->{z}{tickets_issued}, $issued + 4 * @refused,
   'every refused request counted as a newcomer (one new ticket each)');
is($t->status->{z}{admitted}, 1, 'nobody was admitted by a refused token');

# accepted: within the leeway
my @accepted = (
    [ 'nbf = now + 2 s (within the leeway)' => $t->forge(zone => 'z', tkt => 1, adm => 1, nbf => int(time) + 2) ],
    [ 'exp = now - 2 s (within the leeway)' => $t->forge(zone => 'z', tkt => 1, adm => 1, exp => int(time) - 2) ],
    [ 'a correct pass' => $t->forge(zone => 'z', tkt => 1, adm => 1) ],
);
for my $case (@accepted) {
    my ($name, $tok) = @$case;
    my $r = $t->get('/drop/item.html', Cookie => "flashsale=$tok");
    is($r->body, "CONTENT\n", "$name: accepted (cookie)");
    $r = $t->get_json('/drop/item.html', Authorization => "Bearer $tok");
    is($r->status, 200, "$name: accepted (Bearer)");
}

$t->finish;
