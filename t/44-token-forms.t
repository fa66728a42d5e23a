# A token is read the same whatever JSON its key holder wrote.  The module
# reads the compact JSON our issuer writes itself (issue 6: libjwt's decode
# was two thirds of a first check) and hands anything else to libjwt, so
# each claim here is written both ways - as our issuer writes it and in a
# form only libjwt reads (another header, escapes, spaces, nesting) - and
# every form must give the same answer: the content (a pass), a place in
# the queue (refused or not a pass), and the same visitor.
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
    location /drop/ {
        flashsale zone=z rate=0r/s;
        add_header X-Visitor $flashsale_visitor always;
        add_header X-State $flashsale_state always;
    }
}
EOF

my $now = time;
my $exp = $now + 600;
my $old = $now - 600;
my $b64 = \&FlashsaleTest::b64u;

# libjwt's header, and the same one as another issuer may write it
my $ours  = '{"alg":"HS256","typ":"JWT"}';
my $other = '{ "typ" : "JWT", "alg" : "HS256" }';

sub tok {
    my ($claims, $header) = @_;
    return jwt_encode(undef, $key, raw_header => $header // $ours, raw_claims => $claims);
}

sub body {
    my (%o) = @_;
    my $sub = $o{sub} // '"visitor1"';
    my $adm = exists $o{adm} ? $o{adm} : 'true';
    my $tkt = $o{tkt} // 1;
    my $expv = $o{exp} // $exp;
    my $s = '{' . join(',', grep { defined }
        (defined $adm ? qq{"adm":$adm} : undef),
        qq{"aud":"z"}, qq{"exp":$expv}, qq{"iat":$now}, qq{"iss":"flashsale"},
        qq{"sub":$sub}, qq{"tkt":$tkt}, $o{extra}) . '}';
    return $s;
}

my $P = 'pass';     # the content, visitor1
my $Q = 'queued';   # the waiting room: refused, or not a pass

my @cases = (
    [ 'as our issuer writes it',                  body(),                               $P ],
    [ 'the same claims under another header',     body(),                               $P, $other ],
    [ 'header without typ',                       body(),                               $P, '{"alg":"HS256"}' ],
    [ 'spaces and newlines between tokens',
      qq{ {\n "adm" : true ,\t"aud":"z",\r\n"exp": $exp, "iat":$now ,"iss":"flashsale","sub":"visitor1","tkt":1 } \n}, $P ],
    [ 'keys in another order',
      qq{{"tkt":1,"sub":"visitor1","iss":"flashsale","iat":$now,"exp":$exp,"aud":"z","adm":true}}, $P ],
    [ 'an escape in sub (libjwt reads it: visitor1)', body(sub => '"visit\u006fr1"'),  $P ],
    [ 'an escape in an unknown claim',            body(extra => '"note":"a\"b"'),       $P ],
    [ 'UTF-8 in an unknown claim',                body(extra => qq{"name":"caf\xc3\xa9"}), $P ],
    [ 'an object and an array in unknown claims', body(extra => '"x":{"a":[1,{"b":null}]},"y":[]'), $P ],
    [ 'null, false and a negative number',        body(extra => '"n":null,"f":false,"m":-5,"z":-0'), $P ],
    [ 'a 19-digit ticket number',                 body(tkt => '1234567890123456789'), $P ],
    [ 'an empty unknown name',                    body(extra => '"":1'),                $P ],
    [ 'exp twice, the valid one last',            body(extra => qq{"exp":$exp}, exp => $old), $P ],
    [ 'exp twice, the expired one last',          body(extra => qq{"exp":$old}),        $Q ],
    [ 'iss twice, the right one last',            body(extra => '"iss":"flashsale"') =~ s/"iss":"flashsale"/"iss":"other"/r, $P ],
    [ 'iss twice, a wrong one last',              body(extra => '"iss":"other"'),       $Q ],
    [ 'adm true then false',                      body(extra => '"adm":false', tkt => 999999), $Q ],
    [ 'adm false then true',                      body(adm => 'false', extra => '"adm":true', tkt => 999999), $P ],
    [ 'adm 1 is not true',                        body(adm => '1', tkt => 999999),       $Q ],
    [ 'adm "true" is not true',                   body(adm => '"true"', tkt => 999999),  $Q ],
    [ 'exp as a fraction',                        body(exp => "$exp.0"),                $Q ],
    [ 'exp with an exponent',                     body(exp => '2e9'),                   $Q ],
    [ 'exp as a string',                          body(exp => qq{"$exp"}),              $Q ],
    [ 'exp null',                                 body(exp => 'null'),                  $Q ],
    # libjwt 1.10 reads an integer claim of another type as 0, so does ours
    [ 'iat as a string reads as 0',               body() =~ s/"iat":\d+/"iat":"x"/r,  $P ],
    [ 'tkt as true reads as 0',                   body(tkt => 'true'),                  $Q ],
    [ 'aud as a number',                          body() =~ s/"aud":"z"/"aud":5/r,      $Q ],
    [ 'sub as a number',                          body(sub => '7'),                     $Q ],
    [ 'sub with a space',                         body(sub => '"a b"'),                 $Q ],
    [ 'sub of 65 characters',                     body(sub => '"' . ('v' x 65) . '"'),  $Q ],
    [ 'tkt 0',                                    body(tkt => 0),                       $Q ],
    [ 'tkt with a leading zero (not JSON)',       body(tkt => '01'),                    $Q ],
    [ 'tkt -1',                                   body(tkt => '-1'),                    $Q ],
    [ 'a number too big for 64 bits',             body(extra => '"big":99999999999999999999'), $Q ],
    [ 'bytes after the object',                   body() . 'x',                         $Q ],
    [ 'a second object after the first',          body() . '{}',                        $Q ],
    [ 'a comma before the end',                   body() =~ s/\}$/,}/r,                 $Q ],
    [ 'no closing brace',                         body() =~ s/\}$//r,                   $Q ],
    [ 'an array, not an object',                  '[' . body() . ']',                   $Q ],
    [ 'a raw control byte in a string',           body(extra => qq{"c":"a\x01b"}),      $Q ],
    [ 'an empty object',                          '{}',                                 $Q ],
);

for my $c (@cases) {
    my ($name, $claims, $want, $header) = @$c;
    my $token = tok($claims, $header);
    subtest "$name: $want" => sub {
        # twice: the first check, then the worker's cache of checked tokens
        for my $round (1, 2) {
            my $r = $t->get_json('/drop/item.html', Cookie => "flashsale=$token");
            if ($want eq $P) {
                is($r->status, 200, "round $round: 200");
                is($r->body, "CONTENT\n", "round $round: the content");
                is($r->header('x-visitor'), 'visitor1', "round $round: visitor1");
                is($r->header('x-state'), 'admitted', "round $round: admitted");
            } else {
                is($r->status, 429, "round $round: 429");
                is(($r->json // {})->{state}, 'waiting', "round $round: waiting");
                isnt($r->body, "CONTENT\n", "round $round: not the content");
            }
        }
    } or diag($claims);
}

# A pass both workers have cached, then the same token with one character
# of its signature changed, at each of the 43 places: each is another
# signature, never the cached one (the cache compares a word at a time).
# The change flips the character's top bit, so the bytes it decodes to
# differ even at the last place, whose two low bits are padding.
{
    my $good = tok(body());
    for (1 .. 12) {
        my $r = $t->get_json('/drop/item.html', Cookie => "flashsale=$good");
        is($r->status, 200, 'the pass, sent again') if $_ == 1;
    }
    my $alpha = join '', 'A' .. 'Z', 'a' .. 'z', 0 .. 9, '-', '_';
    my ($signed, $sig) = $good =~ /^(.*\.)([^.]+)$/;
    my @wrong;
    for my $i (0 .. length($sig) - 1) {
        my $v = index($alpha, substr($sig, $i, 1));
        my $bad = $sig;
        substr($bad, $i, 1) = substr($alpha, $v ^ 32, 1);
        my $r = $t->get_json('/drop/item.html', Cookie => "flashsale=$signed$bad");
        push @wrong, $i + 1 unless $r->status == 429;
    }
    is(length $sig, 43, 'an HS256 signature of 43 characters');
    is("@wrong", '', 'a signature changed at any one place is refused, the pass being cached');
}

# A signature both workers have cached, on a signed part it was not made
# for.  The cache is found by the signature, but what it stands for is the
# signed part it was checked with: the store behind us gets the cookie as
# sent, and a waiting API client gets its token back in the body.
{
    my $good = tok(body());
    for (1 .. 12) {
        my $r = $t->get_json('/drop/item.html', Cookie => "flashsale=$good");
        is($r->status, 200, 'the pass, cached') if $_ == 1;
    }
    my ($sig) = $good =~ /\.([^.]+)$/;
    my $h = $b64->($ours);
    my @forged = (
        [ 'another sub', $h . '.' . $b64->(body(sub => '"mallory"')) . ".$sig" ],
        [ 'an extra claim of the same length',
          $h . '.' . $b64->(body() =~ s/"tkt":1/"tkt":2/r) . ".$sig" ],
        [ 'one character more in the header', "${h}A." . ($good =~ /\.([^.]+)\./)[0] . ".$sig" ],
    );
    for my $f (@forged) {
        my ($name, $tok) = @$f;
        my @got;
        for (1 .. 6) {
            my $r = $t->get_json('/drop/item.html', Cookie => "flashsale=$tok");
            push @got, join ' ', $r->status, $r->header('x-state') // '-',
                $r->header('x-visitor') eq 'visitor1' ? 'visitor1' : 'other';
        }
        is("@got[0 .. 5]", join(' ', ('429 waiting other') x 6),
           "a cached signature on $name: refused by both workers, six times");
    }
}

# A waiting API client gets its ticket back as sent while it is young.
# With a cached ticket's signature on a header of our own making, which
# would have been written into the JSON as it stood, the answer is a new
# ticket: signed by us, the body still JSON.
{
    my $r = $t->get_json('/drop/item.html');
    my $ticket = ($r->json // {})->{token} // '';
    like($ticket, qr/^[\w-]+\.[\w-]+\.[\w-]{43}$/, 'a waiting ticket in the JSON');
    for (1 .. 12) {
        $r = $t->get_json('/drop/item.html', Authorization => "Bearer $ticket");
        is(($r->json // {})->{token}, $ticket, 'a young ticket, sent back as it came')
            if $_ == 1;
    }
    my ($rest) = $ticket =~ /^[^.]+\.(.*)$/;
    my $forged = qq{x","admitted":true,"y":"z.$rest};
    my @bad;
    for (1 .. 6) {
        $r = $t->get_json('/drop/item.html', Authorization => "Bearer $forged");
        my $j = $r->json;
        push @bad, !$j ? 'not JSON: ' . $r->body
                 : ($j->{token} // '') eq $forged ? 'the forged bytes echoed'
                 : ($j->{token} // '') eq $ticket ? 'the cached ticket'
                 : ($j->{token} // '') !~ /^[\w-]+\.[\w-]+\.[\w-]{43}$/ ? "token $j->{token}"
                 : $r->status != 429 ? 'status ' . $r->status
                 : ();
    }
    is("@bad", '', 'a cached ticket signature on forged bytes: a new ticket, six times');
}

# the same pass by Authorization: Bearer reads the same
my $bearer = tok(body(extra => '"x":[1]'));
my $r = $t->get_json('/drop/item.html', Authorization => "Bearer $bearer");
is($r->status, 200, 'a pass only libjwt reads, as a bearer token: 200');
is($r->header('x-visitor'), 'visitor1', 'and visitor1');

unlike($t->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, 'nothing above error logged');

$t->finish;
