# More than one cookie of our name.  Browsers send an old cookie with a more
# specific path (or one set from a sibling domain) before ours, and our
# Set-Cookie cannot replace it.  Reading only the first put a shopper with
# such a cookie at the back of the line on every visit (found by attacking
# the module); now the first pass among them wins, else the first ticket,
# and only the first four of our name are checked.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
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
    location /drop/ {
        flashsale zone=z rate=0r/s;
        add_header X-State $flashsale_state always;
        add_header X-Visitor $flashsale_visitor always;
        add_header X-Ticket $flashsale_ticket always;
    }
    location = /flashsale_status { flashsale_status; }
}
EOF

my $pass = $t->forge(sub => 'shopper-p', adm => 1);
my $other_zone = $t->forge(sub => 'shopper-o', adm => 1, aud => 'elsewhere');
my $expired = $t->forge(sub => 'shopper-x', adm => 1, exp => time - 600, iat => time - 1200);

# a waiting ticket, issued by the module
my $r = $t->get_json('/drop/item.html');
is($r->status, 429, 'a newcomer waits');
my $ticket = ($r->cookie('flashsale') // {})->{value} // '';
my $number = $r->header('x-ticket');
my $visitor = $r->header('x-visitor');
like($ticket, qr/^[\w-]+\.[\w-]+\.[\w-]{43}$/, 'with a ticket');
like($number, qr/^\d+$/, 'numbered');

sub tickets_issued { ($t->status->{z} // {})->{tickets_issued} // -1 }

my @pass_cases = (
    [ 'garbage, then the pass',               "flashsale=garbage; flashsale=$pass" ],
    [ 'an empty one, then the pass',          "flashsale=; flashsale=$pass" ],
    [ 'an expired pass, then the pass',       "flashsale=$expired; flashsale=$pass" ],
    [ "another zone's pass, then the pass",   "flashsale=$other_zone; flashsale=$pass" ],
    [ 'a waiting ticket, then the pass',      "flashsale=$ticket; flashsale=$pass" ],
    [ 'the pass, then garbage',               "flashsale=$pass; flashsale=garbage" ],
    [ 'three bad ones, then the pass',        "flashsale=a; x=1; flashsale=b.c.d; flashsale=$expired; flashsale=$pass" ],
);
for my $c (@pass_cases) {
    my ($name, $cookie) = @$c;
    for my $round (1, 2) {    # a first check, then the worker's cache
        $r = $t->get_json('/drop/item.html', Cookie => $cookie);
        is(join(' ', $r->status, $r->header('x-state') // '-', $r->header('x-visitor') // '-'),
           '200 admitted shopper-p', "$name (round $round): the pass is honoured");
    }
}

# the same across two Cookie header lines
$r = $t->get_json('/drop/item.html', Cookie => 'flashsale=garbage', Cookie => "a=b; flashsale=$pass");
is($r->status, 200, 'garbage in one Cookie line, the pass in the next: 200');

# a refused cookie ahead of a waiting ticket: the shopper keeps the ticket
my $before = tickets_issued();
for my $i (1 .. 3) {
    $r = $t->get_json('/drop/item.html', Cookie => "flashsale=$expired; flashsale=$ticket");
    is(join(' ', $r->status, $r->header('x-ticket') // '-', $r->header('x-visitor') // '-'),
       "429 $number $visitor", "an expired pass, then the ticket ($i): the same ticket and visitor");
}
is(tickets_issued(), $before, 'no new ticket issued');

# a bound: a fifth cookie of our name is not looked at
$r = $t->get_json('/drop/item.html',
                  Cookie => join('; ', (map { "flashsale=bad$_" } 1 .. 4), "flashsale=$pass"));
is($r->status, 429, 'the pass as the fifth cookie of our name: not checked, 429');
is($r->header('x-state'), 'waiting', 'waiting');

unlike($t->error_log, qr/\[(alert|crit|emerg)\]|exited on signal/, 'nothing above error logged');

$t->finish;
