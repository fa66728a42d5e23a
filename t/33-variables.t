# $flashsale_* variables read where no token was validated: defined values
# for the waiting shopper, empty where the module did not run, and never
# bytes left over from another request on the same connection.
# Field case: variables-without-token.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/q/item.html', "Q\n");
$t->write_file('html/open/item.html', "OPEN\n");
$t->write_file('html/plain/item.html', "PLAIN\n");

my $vars = <<'EOF';
        add_header X-Pos     $flashsale_position always;
        add_header X-Visitor $flashsale_visitor always;
        add_header X-State   $flashsale_state always;
        add_header X-Ticket  $flashsale_ticket always;
        add_header X-Eta     $flashsale_eta always;
EOF

$t->run_nginx(<<"EOF");
flashsale_zone z:1m;
flashsale_zone o:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /q/ {
        flashsale zone=z rate=1r/m;
$vars
    }
    location /open/ {
        flashsale zone=o rate=100000r/s burst=1000;
$vars
    }
    location /plain/ {
$vars
    }
}
EOF

$t->get('/q/item.html');                        # takes the one admission

my @inputs = (
    [ 'no cookie' => [] ],
    [ 'a garbage cookie' => [ Cookie => 'flashsale=garbage!!' ] ],
    [ 'a three-part garbage cookie' => [ Cookie => 'flashsale=a.b.c' ] ],
    [ 'an empty cookie' => [ Cookie => 'flashsale=' ] ],
);

for my $in (@inputs) {
    my ($name, $h) = @$in;
    my $r = $t->get('/q/item.html', @$h);
    my $c = $r->claims // {};
    subtest "waiting room location, $name" => sub {
        is($r->status, 200, 'waiting page');
        like($r->header('x-pos') // '', qr/^[1-9]\d*$/, '$flashsale_position is a number >= 1');
        is($r->header('x-state'), 'waiting', '$flashsale_state is waiting');
        like($r->header('x-visitor') // '', qr/^[0-9a-f]{32}$/, '$flashsale_visitor is a visitor id');
        is($r->header('x-visitor'), $c->{sub}, '$flashsale_visitor is the new ticket\'s sub');
        is($r->header('x-ticket'), $c->{tkt}, '$flashsale_ticket is the new ticket number');
        like($r->header('x-eta') // '', qr/^\d+$/, '$flashsale_eta is a number');
    };

    $r = $t->get('/plain/item.html', @$h);
    subtest "location without the module, $name" => sub {
        is($r->status, 200, 'content');
        is($r->body, "PLAIN\n", 'the plain content');
        is($r->header($_) // '', '', "$_ is empty")
            for qw(x-pos x-visitor x-state x-ticket x-eta);
    };
}

# admitted: position and eta 0
my $r = $t->get('/open/item.html');
is($r->header('x-state'), 'admitted', 'admitted: $flashsale_state is admitted');
is($r->header('x-pos'), '0', 'admitted: $flashsale_position is 0');
is($r->header('x-eta'), '0', 'admitted: $flashsale_eta is 0');
is($r->header('x-visitor'), $r->claims->{sub}, 'admitted: $flashsale_visitor is the pass sub');
is($r->header('x-ticket'), $r->claims->{tkt}, 'admitted: $flashsale_ticket is the pass ticket');

# keep-alive: a module request, then a plain one on the same connection
my @p = $t->pipeline([ { path => '/q/item.html' }, { path => '/plain/item.html' },
                       { path => '/open/item.html' }, { path => '/plain/item.html' },
                       { path => '/q/item.html', headers => [ Cookie => 'flashsale=x.y.z' ] },
                       { path => '/plain/item.html', headers => [ Cookie => 'flashsale=x.y.z' ] } ]);
is(scalar(@p), 6, 'six answers on one keep-alive connection');
like($p[0]->header('x-pos') // '', qr/^[1-9]\d*$/, 'keep-alive 1 (waiting room): a position');
is(join('|', map { $p[1]->header($_) // '' } qw(x-pos x-visitor x-state x-ticket x-eta)),
   '||||', 'keep-alive 2 (plain): every variable empty, nothing from request 1');
is($p[2]->header('x-state'), 'admitted', 'keep-alive 3 (admitted)');
is(join('|', map { $p[3]->header($_) // '' } qw(x-pos x-visitor x-state x-ticket x-eta)),
   '||||', 'keep-alive 4 (plain): every variable empty, nothing from request 3');
isnt($p[4]->header('x-visitor'), $p[0]->header('x-visitor'),
     'keep-alive 5: a new visitor id, not the one from request 1');
is(join('|', map { $p[5]->header($_) // '' } qw(x-pos x-visitor x-state x-ticket x-eta)),
   '||||', 'keep-alive 6 (plain, garbage cookie): every variable empty');

$t->finish;
