# Configuration errors of the reservation directives (issue 3) fail
# `nginx -t` with a message naming the directive; a good configuration with
# every parameter passes and serves a reservation.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;
use ReserveTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/reserved.txt', "RESERVED\n");
my $PW = 'pw-' . FlashsaleTest::random_string(20);
$t->write_file('redis.pass', "$PW\n", 0600);
$t->write_file('empty.pass', "\n", 0600);

sub conf {
    my (%o) = @_;
    my $redis = exists $o{redis} ? $o{redis}
              : 'flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=2s;';
    my $flashsale = exists $o{flashsale} ? $o{flashsale} : 'flashsale zone=z;';
    my $reserve = $o{reserve} // 'flashsale_reserve sku=$arg_sku qty=$arg_qty;';
    my $extra = $o{extra} // '';
    return <<"EOF";
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
$redis
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=0r/s; }
    location = /cart/add {
        $flashsale
        $reserve
        add_header X-Reservation \$flashsale_reservation always;
        alias %%DIR%%/html/reserved.txt;
    }
    $extra
}
EOF
}

sub fails {
    my ($name, $template, $re) = @_;
    my ($rc, $out) = $t->nginx_t($template);
    isnt($rc, 0, "nginx -t fails: $name");
    like($out, $re, "  and says why: $name") or diag($out);
    unlike($out, qr/\Q$PW\E/, "  without printing the password: $name");
}

# the control: everything at once passes
my ($rc, $out) = $t->nginx_t(conf(
    redis => 'flashsale_redis 127.0.0.1:%%REDIS_PORT%% db=3 password_file=%%DIR%%/redis.pass '
           . 'connect_timeout=150ms timeout=300ms pool=8;',
    reserve => 'flashsale_reserve sku=$arg_sku qty=$arg_qty hold=1s max_qty=3;',
    extra => 'location = /release { flashsale_release; } '
           . 'location = /confirm { flashsale_confirm zone=z; } '
           . 'location = /stock { flashsale_stock; } '
           . 'location = /u/cart/add { flashsale zone=z; '
           . 'flashsale_redis unix:%%DIR%%/redis.sock; '
           . 'flashsale_reserve sku=$arg_sku qty=$arg_qty hold=10m max_qty=10; }'));
is($rc, 0, 'a configuration with every parameter passes nginx -t') or diag($out);

# flashsale_reserve needs the waiting room in its location
fails('flashsale_reserve without flashsale in the location',
      conf(flashsale => ''),
      qr/flashsale_reserve needs "flashsale zone=\.\.\."/);

# ... and a Redis
fails('flashsale_reserve without flashsale_redis',
      conf(redis => ''),
      qr/flashsale_reserve needs "flashsale_redis/);
fails('flashsale_stock without flashsale_redis',
      conf(redis => '', reserve => '', flashsale => '',
           extra => 'location = /stock { flashsale_stock; }'),
      qr/flashsale_stock needs "flashsale_redis/);
fails('flashsale_release without flashsale_redis',
      conf(redis => '', reserve => '', flashsale => '',
           extra => 'location = /release { flashsale_release; }'),
      qr/flashsale_release.* needs "flashsale_redis/);

# bad flashsale_redis parameters
for my $bad ('foo=1', 'pool=0', 'pool=2000', 'pool=x', 'timeout=abc', 'timeout=0',
             'connect_timeout=', 'db=x', 'db=-1', 'password_file=')
{
    fails("flashsale_redis $bad",
          conf(redis => "flashsale_redis 127.0.0.1:%%REDIS_PORT%% $bad;"),
          qr/flashsale_redis.*\Q$bad\E/);
}
for my $addr ('127.0.0.1:99999', 'unix:', '127.0.0.1:')
{
    fails("flashsale_redis address $addr",
          conf(redis => "flashsale_redis $addr;"),
          qr/flashsale_redis/);
}

# password_file
fails('flashsale_redis password_file that does not exist',
      conf(redis => 'flashsale_redis 127.0.0.1:%%REDIS_PORT%% password_file=%%DIR%%/missing.pass;'),
      qr/flashsale_redis password_file "[^"]*missing\.pass" cannot be opened/);
fails('flashsale_redis password_file that is empty',
      conf(redis => 'flashsale_redis 127.0.0.1:%%REDIS_PORT%% password_file=%%DIR%%/empty.pass;'),
      qr/flashsale_redis password_file "[^"]*empty\.pass" is empty/);

# bad flashsale_reserve parameters
for my $bad ('hold=abc', 'hold=0', 'max_qty=0', 'max_qty=x', 'colour=red')
{
    fails("flashsale_reserve $bad",
          conf(reserve => "flashsale_reserve sku=\$arg_sku qty=\$arg_qty $bad;"),
          qr/flashsale_reserve.*\Q$bad\E/);
}
fails('flashsale_reserve without qty=',
      conf(reserve => 'flashsale_reserve sku=$arg_sku;'),
      qr/flashsale_reserve needs sku= and qty=/);
fails('flashsale_reserve without sku=',
      conf(reserve => 'flashsale_reserve qty=$arg_qty;'),
      qr/flashsale_reserve needs sku= and qty=/);

# the good configuration runs and reserves
$t->start_redis;
$t->run_nginx(conf(reserve => 'flashsale_reserve sku=$arg_sku qty=$arg_qty hold=1s max_qty=3;',
                   extra => 'location = /stock { flashsale_stock; }'));
is($t->http(method => 'PUT', path => '/stock?sku=A1&qty=2')->status, 200, 'the good configuration runs: PUT /stock');
my $r = reserve_req($t, '/cart/add?sku=A1&qty=3', 'cfg-1');
is($r->status, 409, 'qty=3 (= max_qty) is valid input, but only 2 are in stock: 409');
my $r2 = reserve_req($t, '/cart/add?sku=A1&qty=2', 'cfg-2');
is($r2->status, 200, 'qty=2: 200');
is(reserve_req($t, '/cart/add?sku=A1&qty=4', 'cfg-3')->status, 400, 'qty=4 > max_qty=3: 400');

$t->finish;
