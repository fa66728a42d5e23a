# Tickets are numbered in arrival order in shared memory: 200 new visitors
# at once, spread over both workers, get 200 distinct tickets 1..200.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;

my $t = FlashsaleTest->new;
my $key = $t->write_keys;
$t->write_file('html/drop/item.html', "CONTENT\n");
$t->write_file('html/slow/index.html', "INDEX\n");

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_zone slow:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%% reuseport;
    root %%DIR%%/html;
    add_header X-Worker $pid always;
    location /drop/ {
        flashsale zone=z rate=0r/s;
    }
    location /slow/ {
        flashsale zone=slow rate=1r/m;
    }
    location = /flashsale_status {
        flashsale_status;
    }
}
EOF

my $N = 200;
my @res = $t->parallel([ map { { path => '/drop/item.html',
                                 headers => [ Accept => 'application/json' ] } } 1 .. $N ],
                       timeout => 60);

is(scalar(grep { $_->status == 429 } @res), $N,
   "all $N new visitors of a paused sale wait (429)")
    or diag(join "\n", map { $_->describe } grep { $_->status != 429 } @res[0 .. 2]);

my %workers = map { ($_->header('x-worker') // '') => 1 } @res;
is(scalar(keys %workers), 2, 'the visitors were served by both workers');

my @claims = map { $_->claims } @res;
is(scalar(grep { ref $_ eq 'HASH' } @claims), $N, 'every answer carries a decodable ticket');
is(scalar(grep { jwt_verify($_->token, $key) } @res), $N,
   'every ticket is HS256-signed with line 1 of the key file');

my @tkt = sort { $a <=> $b } map { $_->{tkt} // 0 } @claims;
my %seen = map { $_ => 1 } @tkt;
is(scalar(keys %seen), $N, "$N distinct ticket numbers");
is_deeply(\@tkt, [ 1 .. $N ], "the tickets are exactly 1..$N");

my %subs = map { ($_->{sub} // '') => 1 } @claims;
is(scalar(keys %subs), $N, "$N distinct visitor ids");
is(scalar(grep { /^[0-9a-f]{32}$/ } keys %subs), $N, 'visitor ids are 32 lowercase hex');

# JSON position agrees with the ticket: paused at watermark 0 => position = ticket
my @bad = grep { my $j = $_->json; !($j && $j->{position} == $_->claims->{tkt}) } @res;
is(scalar(@bad), 0, 'each position equals its ticket number while nobody was admitted');

# the cookie carries the same ticket as the JSON token
my @mismatch = grep { my $c = $_->cookie('flashsale');
                      !($c && $c->{value} eq $_->json->{token}) } @res;
is(scalar(@mismatch), 0, 'the Set-Cookie ticket equals the JSON token');

my $st = $t->get('/flashsale_status')->json;
my ($z) = grep { $_->{zone} eq 'z' } @{ $st->{zones} };
is($z->{tickets_issued}, $N, "status: tickets_issued = $N");
is($z->{admitted}, 0, 'status: admitted = 0 (paused)');
is($z->{waiting}, $N, "status: waiting = $N");

# a second wave continues the numbering
my @more = $t->parallel([ map { { path => '/drop/item.html',
                                  headers => [ Accept => 'application/json' ] } } 1 .. 20 ]);
my @t2 = sort { $a <=> $b } map { $_->claims->{tkt} } @more;
is_deeply(\@t2, [ $N + 1 .. $N + 20 ], 'a second wave gets the next 20 numbers');

# a slow (1r/m) zone: same uniqueness, the first visitor may be admitted
my @slow = $t->parallel([ map { { path => '/slow/item.html',
                                  headers => [ Accept => 'application/json' ] } } 1 .. 50 ]);
my @ts = sort { $a <=> $b } map { $_->claims->{tkt} // 0 } @slow;
is_deeply(\@ts, [ 1 .. 50 ], 'a slow zone numbers its own tickets 1..50');
cmp_ok(scalar(grep { $_->status == 429 } @slow), '>=', 49,
       'at 1r/m at most one of 50 is admitted at once');

# an index redirect (/slow/ -> /slow/index.html) is one visit, not two
my $before = (grep { $_->{zone} eq 'slow' } @{ $t->get('/flashsale_status')->json->{zones} })[0];
my $r = $t->get_json('/slow/');
my $after = (grep { $_->{zone} eq 'slow' } @{ $t->get('/flashsale_status')->json->{zones} })[0];
is($after->{tickets_issued} - $before->{tickets_issued}, 1,
   'an index internal redirect issues one ticket, not two');
is($r->claims->{tkt}, $after->{tickets_issued}, 'and hands out that ticket');

$t->finish;
