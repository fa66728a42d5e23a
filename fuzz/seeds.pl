#!/usr/bin/env perl
# Seed corpora for the libFuzzer harnesses, from what the test suite sends:
# tokens (forged with the harness's JWT helpers), Cookie and Authorization
# shapes, SKUs, quantities and query strings, the Redis replies of the
# reservation script, and page templates.
#
#   perl fuzz/seeds.pl [DIR]     writes DIR/<harness>/<name> (default fuzz/corpus)
#
# Each file starts with the bytes its harness reads first (see the comment
# at the top of fuzz/fuzz_<harness>.c).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use File::Path qw(make_path);
use Digest::SHA qw(sha1_hex);
use FlashsaleTest qw(jwt_encode make_claims b64u);

my $dir = shift // "$FindBin::Bin/corpus";

# the keys fuzz/fuzz_token.c configures (line 1 signs)
my $KEY0 = '0123456789abcdef0123456789abcdef-fuzz-key-0';
my $KEY1 = 'another key of at least thirty-two bytes: 1';

my %n;
sub seed {
    my ($h, $name, $bytes) = @_;
    make_path("$dir/$h");
    my $i = ++$n{$h};
    my $file = sprintf('%s/%s/%03d-%s', $dir, $h, $i, $name);
    open my $fh, '>:raw', $file or die "$file: $!";
    print $fh $bytes;
    close $fh;
}

###########################################################################
# token: mode byte, then headers or JSON

my $far = 4102444800;     # 2100-01-01: seeds stay valid
my $iat = 1700000000;
my $sub = '0123456789abcdef0123456789abcdef';
my %claims = (iss => 'flashsale', aud => 'z', sub => $sub, tkt => 7,
              iat => $iat, exp => $far);
my $json = JSON::PP->new->canonical;

my $pass = jwt_encode({ %claims, adm => JSON::PP::true }, $KEY0);
my $ticket = jwt_encode({ %claims, pos => 12 }, $KEY0);
my $rotated = jwt_encode({ %claims, adm => JSON::PP::true }, $KEY1);
my $other = jwt_encode({ %claims, adm => JSON::PP::true }, 'x' x 48);

# mode 0: "Authorization\nCookie\nCookie..."
seed('token', 'bearer-pass', "\x00Bearer $pass\n");
seed('token', 'cookie-pass', "\x00\nflashsale=$pass");
seed('token', 'cookie-ticket', "\x00\na=1; flashsale=$ticket; b=2");
seed('token', 'both', "\x00Bearer $rotated\nflashsale=$ticket");
seed('token', 'bearer-case', "\x00  bEaReR   $pass  \n");
seed('token', 'bad-sig', "\x00Bearer $other\nflashsale=$other");
seed('token', 'basic', "\x00Basic dXNlcjpwYXNz\nflashsale=");
seed('token', 'two-cookies', "\x00\nflashsale=x.y.z\nflashsale=$pass");
seed('token', 'garbage-cookie', "\x00\nflashsale=\"$pass\"; ;;; =; flashsale");
seed('token', 'dots', "\x00Bearer ...\nflashsale=a.b.c.d");
seed('token', 'sig-only', "\x00Bearer a.b." . ('A' x 43) . "\n");
seed('token', 'long', "\x00Bearer " . ('a' x 100) . '.' . ('b' x 3000) . '.'
     . ('c' x 43) . "\n");
my ($h, $c, $s) = split /\./, $pass;
seed('token', 'pad-sig', "\x00Bearer $h.$c.${s}=\n");

# mode 1: "header JSON\npayload JSON", signed with key 0 (bit 2: key 1)
for my $alg ('HS256', 'none', 'HS384', 'RS256') {
    seed('token', "hdr-$alg", "\x01" . $json->encode({ alg => $alg, typ => 'JWT' })
         . "\n" . $json->encode({ %claims, adm => JSON::PP::true }));
}
seed('token', 'hdr-nokey', "\x05{\"alg\":\"HS256\"}\n" . $json->encode(\%claims));
seed('token', 'hdr-junk', "\x01{\"alg\":\"HS256\",\"kid\":[1,{}],\"typ\":null}\n"
     . $json->encode(\%claims));
seed('token', 'hdr-notjson', "\x01not json\n{}");

# mode 2 (and 3: twice, the cache) / bit 3 bearer / bit 4 noise / bit 5 zone
my @payloads = (
    { %claims, adm => JSON::PP::true },
    { %claims, pos => 3 },
    { %claims, aud => 'drop' },
    { %claims, aud => 'y' },
    { %claims, iss => 'other' },
    { %claims, exp => 'soon' },
    { %claims, exp => 1 },
    { %claims, exp => 9223372036854775807 },
    { %claims, iat => -9223372036854775807 },
    { %claims, nbf => $far },
    { %claims, tkt => 0 },
    { %claims, tkt => -1 },
    { %claims, tkt => 1.5 },
    { %claims, tkt => '3' },
    { %claims, sub => '' },
    { %claims, sub => 'a' x 64 },
    { %claims, sub => 'a' x 65 },
    { %claims, sub => "../\x00\r\n" },
    { %claims, sub => 12 },
    { %claims, adm => 'true' },
    { %claims, adm => 1 },
    { %claims, pos => -5 },
    { %claims, aud => ['z'] },
);
my $m = 2;
for my $p (@payloads) {
    seed('token', 'claims', chr($m) . $json->encode($p));
    $m = ($m + 1) % 64;
    $m = 2 if ($m & 3) < 2;
}
seed('token', 'claims-cache', "\x03" . $json->encode({ %claims, adm => JSON::PP::true }));
seed('token', 'claims-cache-bearer', "\x0b" . $json->encode($payloads[1]));
seed('token', 'claims-noise', "\x12" . $json->encode($payloads[0]));
seed('token', 'claims-noise-bearer', "\x1a" . $json->encode($payloads[0]));
seed('token', 'claims-zone-drop', "\x22" . $json->encode($payloads[2]));
seed('token', 'claims-deep', "\x02" . ('[' x 200) . (']' x 200));

###########################################################################
# args: flags, max_qty byte, then "sku\nqty" (reserve) or a query string

# reserve: flags bits 2-3 = 0
my @reserve = (
    [ 'A1', '1' ], [ 'A1', '10' ], [ 'A1', '11' ], [ 'A1', '0' ], [ 'A1', '' ],
    [ 'A1', '-1' ], [ 'A1', '+1' ], [ 'A1', ' 1' ], [ 'A1', '1e3' ],
    [ 'A1', '0001' ], [ 'A1', '99999999999' ], [ 'A1', '4294967297' ],
    [ 'SOLD', '1' ], [ 'sku.with-all_the:chars', '2' ], [ 'x' x 64, '1' ],
    [ 'x' x 65, '1' ], [ '', '1' ], [ 'A 1', '1' ], [ "A1\0", '1' ],
    [ 'A%31', '1' ], [ '{z}', '1' ], [ "\xc3\xa9", '1' ],
);
my $f = 0;
for my $r (@reserve) {
    seed('args', 'reserve', chr($f & 0x73) . chr($f & 3) . "$r->[0]\n$r->[1]");
    $f = ($f + 0x11) & 0xff;
}
# backend: bits 2-3 = 1 release, 2 confirm, 3 stock; bits 0-1 method
my @queries = (
    'sku=A1&visitor=0123456789abcdef0123456789abcdef',
    'sku=A1&visitor=', 'sku=A1', 'visitor=abc&sku=A1&sku=B2',
    'sku=A%31&visitor=a%62c', 'sku=A1&visitor=' . ('v' x 65),
    'sku=A1&qty=1000', 'sku=A1&qty=0', 'sku=A1&qty=-5', 'sku=A1&qty=2147483648',
    'sku=A1&qty=2147483647', 'sku=&qty=1', '&&&sku=A1&&qty=5&', 'xsku=A1&qty=5',
    'sku=A1&qty=5#frag', 'sku=' . ('B' x 64) . '&qty=1', "sku=A1\0&qty=1",
);
my @bk = (0x07, 0x0b, 0x0c, 0x0e, 0x1f, 0x4b, 0x17, 0x0d);
my $i = 0;
for my $q (@queries) {
    seed('args', 'backend', chr($bk[$i++ % @bk]) . "\x00" . $q);
}

###########################################################################
# redis_reply: 8 selectors, then RESP

sub resp {
    my ($v) = @_;
    return "\$-1\r\n" unless defined $v;
    if (ref $v eq 'ARRAY') {
        return '*' . @$v . "\r\n" . join('', map { resp($_) } @$v);
    }
    if (ref $v eq 'HASH') {
        return "-$v->{error}\r\n" if exists $v->{error};
        return "+$v->{status}\r\n";
    }
    return ":$v\r\n" if $v =~ /^-?\d+$/;
    return '$' . length($v) . "\r\n$v\r\n";
}

my @replies = (
    [ 3, 1, 1796318029604, 97 ],     # reserved
    [ 2, 2, 1796318029604, 95 ],     # the existing hold
    [ 0, 0 ], [ 0, 3 ], [ -1 ],      # sold out (latched / not), unknown sku
    [ 1, 2 ], [ 0 ],                 # release/confirm
    [ 1, 100, 4 ], [ 1, 1000 ],      # stock get / set
    { error => 'NOSCRIPT No matching script. Please use EVAL.' },
    { error => 'BUSY Redis is busy running a script.' },
    { error => 'ERR ' . ('x' x 300) },
    { status => 'OK' }, 'a string', undef, [],
    [ 3, 1, 1796318029604, 97, 5 ], [ '3', 1 ], [ [ 3 ], 1 ], [ 7 ],
    [ 3, '9223372036854775807', '-9223372036854775808', 0 ],
    [ 0, -9223372036854775807 ],
);
my @sels = ("\x00\x01\x08\x09\x41\x49\x80\x88", "\x04\x05\x06\x07\x0c\x0d\x0e\x0f",
            "\x10\x20\x30\x18\x28\x38\x50\x60", "\x02\x03\x0a\x0b\x42\x43\x82\x8b");
$i = 0;
for my $r (@replies) {
    seed('redis_reply', 'one', $sels[$i++ % @sels] . resp($r));
}
seed('redis_reply', 'pipeline', $sels[0] . join('', map { resp($_) } @replies[0 .. 8]));
seed('redis_reply', 'pipeline-backend', $sels[1] . join('', map { resp($_) } @replies[4 .. 8]));
seed('redis_reply', 'bad-resp', $sels[0] . "*2\r\n:x\r\n\$5\r\nab");
seed('redis_reply', 'resp3-ish', $sels[0] . "%1\r\n:1\r\n:2\r\n,1.5\r\n#t\r\n");
seed('redis_reply', 'deep', $sels[0] . ("*1\r\n" x 20) . ":3\r\n");

# sold-out answers to a reservation that asked for the SKU's holders
# (selector bits 0 and 1: the latch on, holders asked)
my $ask = "\x03\x0b\x43\x83\x03\x0b\x43\x83";
my @holders = (
    [ 0, 0, 2, [ '0123456789abcdef0123456789abcdef', 'node2-shopper' ] ],
    [ 0, -3, 0, [] ],                            # nobody holds it
    [ 0, 0, 5000 ],                              # more than the cap: a count
    [ 0, 0, 3, [ 'a', 'b' ] ], [ 0, 0, 1, [ 5 ] ], [ 0, 0, 2 ],
    [ 3, 1, 1796318029604, 0, [ 'x' ] ], [ 0, 0, -1, [] ],
    [ 0, 0, 3, [ 'x' x 64, 'a', 'a' ] ],
);
for my $r (@holders) {
    seed('redis_reply', 'holders', $ask . resp($r));
}
seed('redis_reply', 'holders-pipeline', $ask . join('', map { resp($_) } @holders));

###########################################################################
# redis_stream: config byte, then operations (see fuzz_redis_stream.c)

my $sha = sha1_hex('return {1, 2, 3}');
my $hello = resp({ status => 'OK' });                 # AUTH / SELECT
my $load = resp($sha);                                # SCRIPT LOAD
my $res = resp([ 3, 1, 1796318029604, 97 ]);
my $noscript = resp({ error => 'NOSCRIPT No matching script.' });

# a chunk: op 1, a length byte (1 + (b >> 1) * 4 bytes; bit 0 the
# connection), then the bytes
sub chunk {
    my ($bytes, $conn) = @_;
    my $out = '';
    while (length $bytes) {
        my $n = length $bytes;
        my $b = int(($n - 1) / 4);
        $b = 127 if $b > 127;
        my $take = 1 + $b * 4;
        $take = $n if $take > $n;
        $out .= "\x01" . chr(($b << 1) | ($conn // 0)) . substr($bytes, 0, $take, '');
    }
    return $out;
}
my $send_eval = "\x00\x01";
my $send_get = "\x00\x00";
my $post = "\x04";

seed('redis_stream', 'one-evalsha', "\x00" . $send_eval . $post . chunk($load . $res));
seed('redis_stream', 'auth-db', "\x06" . $send_eval . $send_get . $post
     . chunk($hello . $hello . $load . $res . resp('42')));
seed('redis_stream', 'noscript-retry', "\x00" . $send_eval . $post
     . chunk($load . $noscript) . $post . chunk($load . $res));
seed('redis_stream', 'noscript-twice', "\x00" . $send_eval . $post
     . chunk($load . $noscript) . $post . chunk($load . $noscript));
seed('redis_stream', 'detached', "\x00" . $send_eval . "\x00\x03" . $post
     . chunk($load . $res . $res));
seed('redis_stream', 'pipeline', "\x01" . ($send_eval x 6) . ($send_get x 3) . $post
     . chunk($load . ($res x 6) . (resp(undef) x 3)));
seed('redis_stream', 'unasked', "\x00" . $post . chunk($load . $res . $res));
seed('redis_stream', 'closed', "\x00" . $send_eval . $send_eval . $post
     . chunk($load . $res) . "\x02\x00" . $send_eval . $post . chunk($load . $res));
seed('redis_stream', 'timeout', "\x00" . $send_eval . $post . "\x03\x00" . $send_eval);
seed('redis_stream', 'partial-write', "\x00\x05\x00" . $send_eval . $post . "\x05\x01"
     . $send_get . $post . chunk($load . $res . resp('1')));
seed('redis_stream', 'connecting', "\x00\x06\x01" . $send_eval . "\x07\x00" . $post
     . chunk($load . $res));
seed('redis_stream', 'connect-fails', "\x01\x06\x00" . $send_eval . $send_eval . $post
     . chunk($load . $res));
seed('redis_stream', 'garbage', "\x00" . $send_eval . $post . chunk("!!!\r\n" . $res));
seed('redis_stream', 'auth-refused', "\x04" . $send_eval . $post
     . chunk(resp({ error => 'WRONGPASS invalid' }) . $load . $res));

###########################################################################
# page: 8 number bytes, an Accept line, the template

my @templates = (
    "<p>{{position}} {{eta}} {{eta_text}} {{retry_after}} {{zone}} {{progress}}</p>",
    "<!doctype html>\n<h1>All gone</h1>\n<p>zone={{zone}}</p>\n<p>ra=[{{retry_after}}]</p>\n",
    "{{position}}{{position}}{{position}}",
    "no placeholders at all",
    "{{ position }}", "{{unknown}}", "{{", "}}", "{{position}", "{{{{zone}}}}",
    "", "{{}}", "{{PROGRESS}}", "{{zone}}" x 50,
);
for my $file (glob("$FindBin::Bin/../examples/*/*.html"), glob("$FindBin::Bin/../examples/*.html")) {
    open my $fh, '<:raw', $file or next;
    local $/;
    push @templates, scalar <$fh>;
}
my @accepts = ('', 'application/json', 'text/html, application/json;q=0.9',
               'APPLICATION/JSON', 'application/jso', '*/*');
$i = 0;
for my $tpl (@templates) {
    my $nums = pack('C8', $i * 37 % 256, $i * 11 % 256, $i * 5 % 256, $i % 31,
                    $i % 3 | ($i & 4 ? 0x80 : 0), $i % 2, $i * 3 % 256, $i * 7 % 256);
    seed('page', 'tpl', $nums . $accepts[$i % @accepts] . "\n" . $tpl);
    $i++;
}

printf "seeds: %s\n", join(', ', map { "$_ $n{$_}" } sort keys %n);
