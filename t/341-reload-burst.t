# A reload that lowers burst (the store is struggling: burst=200 ->
# burst=0) takes back the admissions the watermark had banked under the
# old burst for tickets not yet issued: the next newcomers are not all let
# in at once.  It used to keep them (found by attacking the module).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/drop/item.html', "CONTENT\n");

my $conf = <<'EOF';
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/ { flashsale zone=z rate=1r/m burst=%%BURST%%; }
    location = /flashsale_status { flashsale_status; }
}
EOF
sub conf { my $c = $conf; $c =~ s/%%BURST%%/$_[0]/; $c }

$t->run_nginx(conf(200));
is($t->status->{z}{burst}, 200, 'burst=200 before');

# two shoppers take tickets and are let in under the old burst
my @first = map { $t->get_json('/drop/item.html') } 1 .. 2;
is(scalar(grep { $_->status == 200 } @first), 2, 'two admitted at once under burst=200');

ok($t->reload(conf(0)), 'reload with burst=0 (rate unchanged: 1r/m)');
is($t->status->{z}{burst}, 0, 'status shows burst 0');

my @r = map { $t->get_json('/drop/item.html') } 1 .. 10;
my @st = map { $_->status } @r;
is(scalar(grep { $_ == 200 } @st), 1, 'after lowering burst to 0, 1 of 10 newcomers is admitted at once')
    or diag("@st");
is(scalar(grep { $_ == 429 } @st), 9, 'the other 9 wait');
is(($r[1]->json // {})->{position}, 1, 'the first of them is next in line');

my $z = $t->status->{z};
is($z->{tickets_issued}, 12, '12 tickets in all');
is($z->{waiting}, 9, '9 waiting');

$t->finish;
