# `nginx -s reload` keeps a zone's counters when its name and size are
# unchanged: tickets keep their numbers and places, passes stay valid.
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
$t->write_file('html/open/item.html', "OPEN\n");

my $conf = <<'EOF';
flashsale_zone z:1m;
flashsale_zone o:%%OSIZE%%;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location /open/ { flashsale zone=o rate=100000r/s burst=1000; }
    location = /flashsale_status { flashsale_status; }
}
EOF
sub conf { my $c = $conf; $c =~ s/%%OSIZE%%/$_[0]/; $c }

$t->run_nginx(conf('1m'));

my @jars = map { FlashsaleTest::Jar->new } 1 .. 10;
my @w = $t->parallel([ map { { path => '/drop/item.html', jar => $_,
                              headers => [ Accept => 'application/json' ] } } @jars ]);
is(scalar(grep { $_->status == 429 } @w), 10, 'ten shoppers wait in the paused zone');
my @ojars = map { FlashsaleTest::Jar->new } 1 .. 5;
my @o = map { $t->get('/open/item.html', jar => $_) } @ojars;
is(scalar(grep { $_->body eq "OPEN\n" } @o), 5, 'five shoppers are admitted to the open zone');

my $before = $t->status;
is($before->{z}{tickets_issued}, 10, 'before: z tickets_issued 10');
is($before->{o}{admitted}, 5, 'before: o admitted 5');

my %tkt = map { $_ => jwt_claims($jars[$_]->get('flashsale'))->{tkt} } 0 .. 9;

# --- reload, same configuration
my @old = $t->worker_pids;
ok($t->reload, 'reload: new workers replace the old ones');
my $after = $t->status;
is($after->{z}{tickets_issued}, 10, 'after reload: z tickets_issued still 10');
is($after->{z}{admitted}, 0, 'after reload: z admitted still 0');
is($after->{o}{tickets_issued}, 5, 'after reload: o tickets_issued still 5');
is($after->{o}{admitted}, 5, 'after reload: o admitted still 5');

my $n = $t->get_json('/drop/item.html');
is($n->claims->{tkt}, 11, 'after reload: the next newcomer gets ticket 11');

my @back = $t->parallel([ map { { path => '/drop/item.html', jar => $_,
                                 headers => [ Accept => 'application/json' ] } } @jars ]);
is(scalar(grep { jwt_claims($jars[$_]->get('flashsale'))->{tkt} == $tkt{$_} } 0 .. 9), 10,
   'after reload: the waiting shoppers keep their ticket numbers');
is(scalar(grep { $back[$_]->json->{position} == $w[$_]->json->{position} } 0 .. 9), 10,
   'after reload: and their positions');

my @ob = map { $t->get('/open/item.html', jar => $_) } @ojars;
is(scalar(grep { $_->body eq "OPEN\n" } @ob), 5, 'after reload: passes are still valid');
is($t->status->{o}{tickets_issued}, 5, 'after reload: passes cost no new tickets');

# --- reload with a new zone size: a new sale, counters start over
sleep_until(int(time) + 1.05);   # tickets now are from an earlier second than the new zone
ok($t->reload(conf('2m')), 'reload with zone o resized to 2m');
my $s = $t->status;
is($s->{o}{tickets_issued}, 0, 'resized zone: counters start from zero');
is($s->{o}{shm}{size}, 2 * 1024 * 1024, 'resized zone: shm size 2m') if $s->{o}{shm};
is($s->{z}{tickets_issued}, 11, 'the untouched zone z keeps its counters');
my $fresh = $t->get('/open/item.html');
is($fresh->claims->{tkt}, 1, 'resized zone: numbering starts again at 1');

$t->finish;
