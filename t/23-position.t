# A returning shopper keeps their ticket: the position never gets worse
# while newcomers keep joining behind them, and revisits cost no ticket.
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
    listen 127.0.0.1:%%PORT%% reuseport;
    root %%DIR%%/html;
    location /drop/ {
        flashsale zone=z rate=2r/s;
        add_header X-Pos $flashsale_position always;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF

sub newcomers {
    my ($n) = @_;
    return $t->parallel([ map { { path => '/drop/item.html',
                                  headers => [ Accept => 'application/json' ] } } 1 .. $n ]);
}

newcomers(30);                                 # a queue ahead of our shopper

my $jar = FlashsaleTest::Jar->new;            # cookie shopper
my $r = $t->get_json('/drop/item.html', jar => $jar);
is($r->status, 429, 'the cookie shopper joins the queue');
my $tkt = $r->claims->{tkt};
my $sub = $r->claims->{sub};
my $pos = $r->json->{position};
cmp_ok($pos, '>=', 20, "behind the others (position $pos)");

my $b = $t->get_json('/drop/item.html');      # API shopper with a Bearer token
my $btoken = $b->json->{token};
my $btkt = jwt_claims($btoken)->{tkt};
my $bpos = $b->json->{position};

my $issued = $t->status->{z}{tickets_issued};
my (@seen, @bseen, @hseen);
my ($worse, $bworse, $lost) = (0, 0, 0);
my $joined = 0;
for my $round (1 .. 6) {
    newcomers(20);
    $joined += 20;

    $r = $t->get_json('/drop/item.html', jar => $jar);
    last if $r->status == 200;
    my $p = $r->json->{position};
    push @seen, $p;
    $worse++ if $p > $pos;
    $pos = $p;
    my $c = jwt_claims($jar->get('flashsale'));
    $lost++ if $c->{tkt} != $tkt || $c->{sub} ne $sub;

    # the same shopper as an HTML client
    my $h = $t->get('/drop/item.html', jar => $jar);
    push @hseen, $h->header('x-pos');
    $worse++ if ($h->header('x-pos') // 1e9) > $pos;

    my $x = $t->get_json('/drop/item.html', Authorization => "Bearer $btoken");
    my $bp = $x->json->{position};
    push @bseen, $bp;
    $bworse++ if $bp > $bpos;
    $bpos = $bp;
    # (a returning API waiter's answer should carry its token; 31-responses.t
    # checks that; here keep the one we have when it is missing)
    $btoken = $x->json->{token} if defined $x->json->{token};
    $lost++ if jwt_claims($btoken)->{tkt} != $btkt;

    sleep 0.5;
}
is($worse, 0, "the cookie shopper's position never got worse (@seen / html @hseen)");
is($bworse, 0, "the Bearer shopper's position never got worse (@bseen)");
is($lost, 0, 'both kept their ticket number and visitor id');
cmp_ok($seen[-1], '<', $seen[0], 'and moved forward over time');
is($t->status->{z}{tickets_issued}, $issued + $joined,
   'revisits issued no new tickets (only the newcomers did)');

# a fresh ticket with a short life left keeps its number and visitor id
my $now = int(time);
my $own = $t->forge(zone => 'z', tkt => 3, iat => $now, exp => $now + 600);
my $own_sub = jwt_claims($own)->{sub};
my $x = $t->get_json('/drop/item.html', Authorization => "Bearer $own");
ok($x->status == 200 || $x->status == 429, 'a valid ticket is honoured');
my $xc = $x->status == 429 ? jwt_claims($x->json->{token} // $own) : ($x->claims // jwt_claims($own));
is($xc->{tkt}, 3, 'it keeps its ticket number');
is($xc->{sub}, $own_sub, 'and its visitor id');

$t->finish;
