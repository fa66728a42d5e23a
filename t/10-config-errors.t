# Every configuration mistake of the waiting room fails `nginx -t`, and the
# message names the directive (and never prints a key).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;

my $t = FlashsaleTest->new;
my $key = $t->write_keys;

# A server with one flashsale location; %ZONE%, %FS%, %SECRET% vary per case.
sub conf {
    my (%o) = @_;
    my $zone   = $o{zone}   // 'flashsale_zone z:1m;';
    my $secret = $o{secret} // 'flashsale_secret_file %%KEYS%%;';
    my $fs     = $o{fs}     // 'flashsale zone=z rate=10r/s;';
    my $extra  = $o{extra}  // '';
    my $http   = $o{http}   // '';
    return <<"EOF";
$zone
$secret
$http
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ {
        $fs
    }
$extra
}
EOF
}

sub fails {
    my ($conf, $name, @want) = @_;
    my ($rc, $out, $file) = $t->nginx_t($conf);
    subtest $name => sub {
        isnt($rc, 0, 'nginx -t fails');
        like($out, qr/\[emerg\]/, 'with an [emerg] message');
        like($out, $_, "the message matches $_") for @want;
        unlike($out, qr/test is successful/, 'and does not say the test is successful');
        is(index($out, $key), -1, 'the key is never printed');
    } or diag($out);
    return $out;
}

sub passes {
    my ($conf, $name) = @_;
    my ($rc, $out) = $t->nginx_t($conf);
    is($rc, 0, $name) or diag($out);
}

# the directive names, as words: "flashsale" must not match "flashsale_zone"
my $FS     = qr/(?<![\w])flashsale(?![\w])/;
my $ZONE   = qr/flashsale_zone/;
my $SECRET = qr/flashsale_secret_file/;

passes(conf(), 'the reference configuration passes');

# --- zones
fails(conf(fs => 'flashsale zone=nope rate=10r/s;'),
      'a location naming an undeclared zone fails',
      $FS, qr/unknown zone|zone=nope\b.*\bis unknown/i, qr/nope/);

fails(conf(zone => 'flashsale_zone z:16k;'),
      'a 16k zone is too small',
      $ZONE, qr/too small/i, qr/16k/);

passes(conf(zone => 'flashsale_zone z:32k;'), 'a 32k zone is accepted');

fails(conf(zone => "flashsale_zone z:1m;\nflashsale_zone z:2m;"),
      'a zone declared twice fails',
      $ZONE, qr/already declared/i);

fails(conf(zone => 'flashsale_zone z;'),
      'a zone without a size fails', $ZONE);

fails(conf(zone => 'flashsale_zone z:abc;'),
      'a zone with a bad size fails', $ZONE);

# --- keys
fails(conf(secret => 'flashsale_secret_file %%DIR%%/no-such-keys;'),
      'a missing key file fails',
      $SECRET, qr/no-such-keys/);

$t->write_file('empty.keys', '');
fails(conf(secret => 'flashsale_secret_file %%DIR%%/empty.keys;'),
      'an empty key file fails',
      $SECRET, qr/empty\.keys/);

$t->write_file('comments.keys', "# only a comment\n\n   \n");
fails(conf(secret => 'flashsale_secret_file %%DIR%%/comments.keys;'),
      'a key file with only comments and blank lines fails',
      $SECRET, qr/comments\.keys/);

my $short = 'S' x 31;
$t->write_file('short.keys', "$short\n");
my $out = fails(conf(secret => 'flashsale_secret_file %%DIR%%/short.keys;'),
      'a 31-byte key fails',
      $SECRET, qr/short\.keys/);
is(index($out, $short), -1, 'the short key is not printed');

$t->write_file('second-short.keys', ('L' x 40) . "\n$short\n");
fails(conf(secret => 'flashsale_secret_file %%DIR%%/second-short.keys;'),
      'a short key on line 2 fails too (every line verifies)',
      $SECRET);

$t->write_file('ok32.keys', "# rotation: new key first\r\n" . ('K' x 32) . "\r\n\n" . ('P' x 48) . "  \n");
passes(conf(secret => 'flashsale_secret_file %%DIR%%/ok32.keys;'),
       'a 32-byte key with comments, CRLF and trailing spaces passes');

$t->write_file('unreadable-dir/keys', ('K' x 40) . "\n");
fails(conf(secret => 'flashsale_secret_file %%DIR%%/unreadable-dir;'),
      'a directory as key file fails', $SECRET);

fails(conf(secret => ''),
      'a flashsale location without any flashsale_secret_file fails',
      qr/flashsale_secret_file is required/);

passes(conf(secret => '', fs => "flashsale_secret_file %%KEYS%%;\n        flashsale zone=z rate=1r/s;"),
       'a flashsale_secret_file in the location itself is enough');

# --- rates
fails(conf(fs => 'flashsale zone=z rate=abc;'),
      'rate=abc fails', $FS, qr/invalid rate/i, qr/abc/);

fails(conf(fs => 'flashsale zone=z rate=5r/h;'),
      'rate=5r/h fails', $FS, qr/invalid rate/i, qr{5r/h});

fails(conf(fs => 'flashsale zone=z rate=-1r/s;'),
      'a negative rate fails', $FS);

passes(conf(fs => 'flashsale zone=z rate=0r/s;'), 'rate=0r/s (paused) passes');
passes(conf(fs => 'flashsale zone=z rate=60r/m burst=2 session=30s;'),
       'rate=60r/m burst=2 session=30s passes');

{
    my $c = conf(extra => "    location /other/ {\n        flashsale zone=z rate=20r/s;\n    }");
    my ($rc, $o2, $file) = $t->nginx_t($c);
    # where are the two rates?
    open my $fh, '<', $file or die;
    my @lines = <$fh>;
    my ($first) = grep { $lines[$_ - 1] =~ /rate=10r\/s/ } 1 .. @lines;
    my ($second) = grep { $lines[$_ - 1] =~ /rate=20r\/s/ } 1 .. @lines;
    subtest 'two rates for one zone fail, naming both places' => sub {
        isnt($rc, 0, 'nginx -t fails');
        like($o2, $FS, 'names the flashsale directive');
        like($o2, qr/:$second\b/, "points at the second rate (line $second)");
        like($o2, qr{(:$first\b|line $first\b|"/drop/")},
             "names the first place (line $first or location /drop/)");
    } or diag($o2);
}

fails(conf(extra => "    location /other/ {\n        flashsale zone=z rate=10r/s;\n    }"),
      'even the same rate given twice for one zone fails', $FS);

passes(conf(extra => "    location /other/ {\n        flashsale zone=z;\n    }"),
       'a second location naming the zone without a rate passes');

fails(conf(fs => 'flashsale zone=z;'),
      'a zone that never gets a rate fails', qr/has no rate/i);

fails(conf(fs => 'flashsale zone=z burst=5;'),
      'burst without rate fails', $FS);

fails(conf(fs => 'flashsale zone=z session=10m;'),
      'session without rate fails', $FS);

fails(conf(fs => 'flashsale zone=z rate=10r/s burst=abc;'),
      'a bad burst fails', $FS);

fails(conf(fs => 'flashsale zone=z rate=10r/s session=forever;'),
      'a bad session fails', $FS);

fails(conf(fs => 'flashsale rate=10r/s;'),
      'flashsale without zone= fails', $FS);

fails(conf(fs => 'flashsale zone=z rate=10r/s colour=blue;'),
      'an unknown flashsale parameter fails', $FS, qr/colour/);

# --- pages and cookie
fails(conf(http => 'flashsale_page waiting %%DIR%%/no-such-page.html;'),
      'a missing page template fails', qr/flashsale_page/, qr/no-such-page/);

fails(conf(http => "flashsale_page lobby %%KEYS%%;"),
      'an unknown page name fails', qr/flashsale_page/);

fails(conf(http => 'flashsale_cookie fs samesite=sometimes;'),
      'a bad samesite value fails', qr/flashsale_cookie/);

passes(conf(http => 'flashsale_cookie fs_q domain=example.test path=/shop secure samesite=strict;'),
       'a full flashsale_cookie passes');

# (found by attacking the module: each of these passed nginx -t)
fails(conf(http => 'flashsale_cookie "";'),
      'an empty cookie name fails', qr/flashsale_cookie/, qr/1 to 64/);
fails(conf(http => 'flashsale_cookie ' . ('c' x 65) . ';'),
      'a 65-character cookie name fails', qr/flashsale_cookie/, qr/1 to 64/);
passes(conf(http => 'flashsale_cookie ' . ('c' x 64) . ';'), 'a 64-character one passes');
fails(conf(http => qq{flashsale_cookie fs "path=/a\r\nX-Injected: yes";}),
      'a path= with CR LF fails (it would split the Set-Cookie header)',
      qr/flashsale_cookie/, qr/path=/);
fails(conf(http => 'flashsale_cookie fs "path=/a;b";'),
      'a path= with ";" fails', qr/flashsale_cookie/);
fails(conf(http => 'flashsale_cookie fs "domain=ex ample.test";'),
      'a domain= with a space fails', qr/flashsale_cookie/, qr/domain=/);

for my $p ([ rate => 'rate=50r/s rate=0r/s' ], [ zone => 'zone=z zone=z rate=1r/s' ],
           [ burst => 'rate=1r/s burst=5 burst=500' ], [ session => 'rate=1r/s session=1m session=1h' ])
{
    my ($name, $args) = @$p;
    fails(conf(fs => "flashsale $args;"), "$name= given twice fails",
          $FS, qr/"\Q$name\E=" is given twice/);
}

# one zone reads tokens one way in all its locations
fails(conf(extra => "    location /drop2/ { flashsale zone=z; flashsale_cookie other; }"),
      'two cookies in one zone fail', qr/flashsale zone=z has one cookie/, qr/flashsale_cookie/);
$t->write_file('keys2', ('k' x 40) . "\n");
fails(conf(extra => "    location /drop2/ { flashsale zone=z; flashsale_secret_file %%DIR%%/keys2; }"),
      'two key files in one zone fail', qr/flashsale zone=z has one key file/, $SECRET);
passes(conf(extra => "    location /drop2/ { flashsale zone=z; flashsale_cookie flashsale; }"),
       'the same cookie named again in another location passes');

# two zones with one cookie: a warning that says what to do
{
    my ($rc, $out) = $t->nginx_t(conf(zone => "flashsale_zone z:1m;\nflashsale_zone y:1m;",
                                      extra => "    location /y/ { flashsale zone=y rate=1r/s; }"));
    is($rc, 0, 'two zones sharing the default cookie still pass');
    like($out, qr/\[warn\].*flashsale zones "z" and "y" share the cookie "flashsale".*flashsale_cookie name/,
         'with a warning naming both zones, the cookie and the fix');
    ($rc, $out) = $t->nginx_t(conf(zone => "flashsale_zone z:1m;\nflashsale_zone y:1m;",
                                   extra => "    location /y/ { flashsale zone=y rate=1r/s; flashsale_cookie fs_y; }"));
    is($rc, 0, 'each with its own cookie passes');
    unlike($out, qr/\[warn\]/, 'with no warning');
}

$t->finish;
