# An admission pass lets the shopper through to the location's content,
# from the cookie or from "Authorization: Bearer"; tickets are not passes.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use FlashsaleTest;

my $t = FlashsaleTest->new;
my $k1 = FlashsaleTest::random_string(48);
my $k2 = FlashsaleTest::random_string(40);
$t->write_keys($k1, $k2);                     # line 1 signs, both verify
$t->write_file('html/drop/item.html', "PROTECTED CONTENT\n");
$t->write_file('html/other/item.html', "OTHER CONTENT\n");

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_zone y:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/  { flashsale zone=z rate=1r/m session=2m; }
    location /other/ { flashsale zone=y rate=0r/s; }
    location = /flashsale_status { flashsale_status; }
}
EOF

my $CONTENT = "PROTECTED CONTENT\n";

# The first shopper walks straight in and gets a pass
my $jar = FlashsaleTest::Jar->new;
my $r = $t->get('/drop/item.html', jar => $jar);
is($r->status, 200, 'the first shopper is admitted');
is($r->body, $CONTENT, 'and gets the protected content in the same request');
my $c = $r->cookie('flashsale');
ok($c, 'with a flashsale cookie');
is($c->{attrs}{'max-age'}, 120, 'Max-Age is the session (2m)');
is($c->{attrs}{path}, '/', 'Path=/');
ok($c->{attrs}{httponly}, 'HttpOnly');
is(lc($c->{attrs}{samesite} // ''), 'lax', 'SameSite=Lax');
my $pass = $c->{value};
my ($ph, $pc) = jwt_decode($pass);
is($ph->{alg}, 'HS256', 'the pass is HS256');
ok(jwt_verify($pass, $k1), 'signed with line 1 of the key file');
ok($pc->{adm}, 'adm: true');
is($pc->{iss}, 'flashsale', 'iss: flashsale');
is($pc->{aud}, 'z', 'aud: the zone');
is($pc->{tkt}, 1, 'tkt: 1');
like($pc->{sub}, qr/^[0-9a-f]{32}$/, 'sub: a 32-hex visitor id');
is($pc->{exp} - $pc->{iat}, 120, 'exp = iat + session');
cmp_ok(abs($pc->{iat} - time), '<=', 2, 'iat is now');

# Newcomers wait at 1r/m
my $w = $t->get('/drop/item.html');
is($w->status, 200, 'the next newcomer gets the waiting page (200)');
isnt($w->body, $CONTENT, 'not the content');
my $ticket = $w->token;
ok($ticket && !jwt_claims($ticket)->{adm}, 'the newcomer holds a ticket, not a pass');
is($t->status->{z}{tickets_issued}, 2, 'two tickets issued so far');

# The pass opens the door again, every way it can be presented
$r = $t->get('/drop/item.html', jar => $jar);
is($r->status, 200, 'cookie pass: 200');
is($r->body, $CONTENT, 'cookie pass: the content');

$r = $t->get('/drop/item.html', Authorization => "Bearer $pass");
is($r->body, $CONTENT, 'Authorization: Bearer pass: the content');

$r = $t->get_json('/drop/item.html', Authorization => "Bearer $pass");
is($r->status, 200, 'Bearer pass with Accept: application/json: 200');
is($r->body, $CONTENT, 'Bearer pass with Accept: application/json: the content');

$r = $t->get('/drop/item.html', Authorization => 'Bearer not.a.token',
             Cookie => "flashsale=$pass");
is($r->body, $CONTENT, 'a bad Bearer token falls back to the cookie pass');

$r = $t->get('/drop/item.html', Authorization => "Bearer $pass",
             Cookie => 'flashsale=garbage');
is($r->body, $CONTENT, 'a Bearer pass wins over a garbage cookie');

$r = $t->get('/drop/item.html', Cookie => "a=b; flashsale=$pass; c=d");
is($r->body, $CONTENT, 'the pass is found among other cookies');

$r = $t->get('/drop/item.html', Cookie => "xflashsale=junk;flashsale=$pass ");
is($r->body, $CONTENT, 'a cookie whose name ends in ours is skipped; no space after ";" and a trailing space are fine');

$r = $t->get_json('/drop/item.html', Cookie => "flashsalex=$pass; myflashsale=$pass");
is($r->status, 429, 'cookies whose names only contain ours are not ours');

$r = $t->get_json('/drop/item.html', Cookie => "a=flashsale=$pass");
is($r->status, 429, 'our name inside another cookie\'s value is not our cookie');

is($t->status->{z}{tickets_issued}, 4, 'passes cost no new tickets (the two refused cookies above took one each)');
is($t->status->{z}{admitted}, 1, 'and are not counted as new admissions');

# A ticket is not a pass
$r = $t->get_json('/drop/item.html', Authorization => "Bearer $ticket");
is($r->status, 429, 'a waiting ticket in the Bearer header still waits');
is(jwt_claims($r->json->{token} // $ticket)->{tkt}, jwt_claims($ticket)->{tkt},
   'with the same ticket number');

# Forged passes: the key decides
my $now = int(time);
$r = $t->get('/drop/item.html',
              Cookie => 'flashsale=' . $t->forge(zone => 'z', tkt => 1, adm => 1, key_index => 1));
is($r->body, $CONTENT, 'a pass signed with key line 2 is accepted (rotation)');

$r = $t->get_json('/drop/item.html',
              Cookie => 'flashsale=' . $t->forge(zone => 'z', tkt => 1, adm => 1,
                                                  key => FlashsaleTest::random_string(48)));
is($r->status, 429, 'a pass signed with an unknown key is refused (queue)');

# A pass is valid wherever the key is: on another node (whose queue issued
# more tickets) and after a restart of this one.  Tickets number one
# node's queue and one run of it, so only they are checked against it.
$r = $t->get('/drop/item.html',
              Cookie => 'flashsale=' . $t->forge(zone => 'z', tkt => 99999, adm => 1));
is($r->body, $CONTENT, 'a pass numbered by a larger queue (another node) is accepted');

$r = $t->get('/drop/item.html',
              Cookie => 'flashsale=' . $t->forge(zone => 'z', tkt => 1, adm => 1,
                                                  iat => $now - 600, exp => $now + 600));
is($r->body, $CONTENT, 'a pass issued before this zone was created is accepted');

$r = $t->get_json('/drop/item.html',
              Cookie => 'flashsale=' . $t->forge(zone => 'z', tkt => 99999));
is($r->status, 429, 'a ticket beyond the tickets issued queues again');
cmp_ok(jwt_claims($r->json->{token})->{tkt}, '<', 99999, 'at the back, with a real number');

$r = $t->get_json('/drop/item.html',
              Cookie => 'flashsale=' . $t->forge(zone => 'z', tkt => 1,
                                                  iat => $now - 600, exp => $now + 600));
is($r->status, 429, 'a ticket from before this zone existed queues again');
cmp_ok(jwt_claims($r->json->{token})->{tkt}, '>', 1, 'with a new number, not its old place');

$r = $t->get_json('/other/item.html', Cookie => "flashsale=$pass");
is($r->status, 429, "zone z's pass does not open zone y (aud)");
isnt(jwt_claims($r->json->{token})->{sub}, $pc->{sub}, 'and zone y hands out a new ticket');

$r = $t->get_json('/other/item.html',
              Authorization => 'Bearer ' . $t->forge(zone => 'y', tkt => 1, adm => 1));
is($r->status, 200, "a pass for zone y opens zone y, even while it is paused");
is($r->body, "OTHER CONTENT\n", 'with its content');

$t->finish;
