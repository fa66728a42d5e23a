# rate=0r/s is a paused sale: nobody new is admitted, however long they
# wait; passes already handed out keep working.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
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
    location /drop/ { flashsale zone=z rate=0r/s burst=5; }
    location = /flashsale_status { flashsale_status; }
}
EOF

# even after a quiet period (burst=5 would let 6 in at once at any rate > 0)
sleep_until($t->{started_at} + 1.2);

my @jars = map { FlashsaleTest::Jar->new } 1 .. 10;
my @r = $t->parallel([ map { { path => '/drop/item.html', jar => $_,
                              headers => [ Accept => 'application/json' ] } } @jars ]);
is(scalar(grep { $_->status == 429 } @r), 10, 'paused: ten new visitors all wait');
my @j = map { $_->json } @r;
is(scalar(grep { exists $_->{eta} && !defined $_->{eta} } @j), 10, 'paused: eta is null');
is(scalar(grep { $_->{retry_after} == 30 } @j), 10, 'paused: retry_after is 30');
is(scalar(grep { ($_->header('retry-after') // '') eq '30' } @r), 10, 'paused: Retry-After: 30');
is(scalar(grep { $_->{position} =~ /^\d+$/ && $_->{position} <= 10 } @j), 10,
   'paused: no position is beyond the ten tickets issued (no wrap-around)')
    or diag(join ' ', map { $_->{position} } @j);
is_deeply([ sort { $a <=> $b } map { $_->{position} } @j ], [ 1 .. 10 ],
          'paused: the ten wait at positions 1..10 (nobody is at position 0)');

my $h = $t->get('/drop/item.html');
is($h->status, 200, 'paused, HTML: 200 waiting page');
isnt($h->body, "CONTENT\n", 'paused, HTML: not the content');
is($h->header('refresh'), '30', 'paused, HTML: Refresh: 30');
like($h->body, qr/<meta http-equiv="refresh" content="30">/, 'paused, HTML: meta refresh 30');

# they retry for a while and stay where they are
my %pos = map { $_ => $j[$_]{position} } 0 .. 9;
sleep 1.1;
my @again = $t->parallel([ map { { path => '/drop/item.html', jar => $_,
                                  headers => [ Accept => 'application/json' ] } } @jars ]);
is(scalar(grep { $_->status == 429 } @again), 10, 'paused: returning waiters still wait');
is(scalar(grep { $again[$_]->json->{position} == $pos{$_} } 0 .. 9), 10,
   'paused: and keep their positions');

my $st = $t->status->{z};
is($st->{admitted}, 0, 'status: admitted 0');
is($st->{tickets_issued}, 11, 'status: 11 tickets issued (retries reuse theirs)');
is($st->{waiting}, 11, 'status: all 11 waiting');
ok(exists $st->{eta_new} && !defined $st->{eta_new}, 'status: eta_new is null while paused');
like($t->get('/flashsale_status')->body, qr/"rate":0\.000\b/, 'status: "rate":0.000');

# a pass handed out before the pause is still honoured
my $pass = $t->forge(zone => 'z', tkt => 1, adm => 1, exp => int(time) + 300);
my $p = $t->get('/drop/item.html', Cookie => "flashsale=$pass");
is($p->status, 200, 'paused: a valid pass is still admitted');
is($p->body, "CONTENT\n", 'paused: and gets the content');
is($t->status->{z}{tickets_issued}, 11, 'a pass costs no ticket');

$t->finish;
