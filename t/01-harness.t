# The test harness itself: Redis start/stop/restart, JWT helpers, cookies,
# parallel and pipelined requests, reload and worker respawn helpers.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use FlashsaleTest;

my $t = FlashsaleTest->new;

# --- JWT helpers against the well-known jwt.io HS256 example
my $tok = jwt_encode(undef, 'your-256-bit-secret',
    raw_header => '{"alg":"HS256","typ":"JWT"}',
    raw_claims => '{"sub":"1234567890","name":"John Doe","iat":1516239022}');
is($tok, 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.'
       . 'eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.'
       . 'SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c',
   'jwt_encode reproduces the reference HS256 token');
ok(jwt_verify($tok, 'your-256-bit-secret'), 'jwt_verify accepts the right key');
ok(!jwt_verify($tok, 'another-secret'), 'jwt_verify refuses another key');
is(jwt_claims($tok)->{name}, 'John Doe', 'jwt_claims decodes the claims');
my $none = jwt_encode({ a => 1 }, 'k', alg => 'none');
like($none, qr/^[^.]+\.[^.]+\.$/, 'alg none gives an empty signature');

# --- cookies
my $c = parse_set_cookie('flashsale=abc.def; Max-Age=900; Path=/; HttpOnly; SameSite=Lax');
is($c->{name}, 'flashsale', 'Set-Cookie name');
is($c->{value}, 'abc.def', 'Set-Cookie value');
is($c->{attrs}{'max-age'}, 900, 'Set-Cookie Max-Age');
ok($c->{attrs}{httponly}, 'Set-Cookie HttpOnly flag');

# --- redis
$t->start_redis;
is($t->redis('PING'), 'PONG', 'redis answers PING');
is($t->redis(qw(SET fs:k 42)), 'OK', 'redis SET');
is($t->redis(qw(INCR fs:k)), 43, 'redis INCR returns an integer');
is_deeply($t->redis(qw(MGET fs:k nope)), [ '43', undef ], 'redis arrays and nil');
ok(ref $t->redis('NOSUCHCOMMAND') eq 'HASH', 'redis errors come back as {error}');
my $old = $t->redis_pid;
my $port = $t->redis_port;
$t->restart_redis;
isnt($t->redis_pid, $old, 'redis restarted as a new process');
is($t->redis_port, $port, 'on the same port');
is($t->redis(qw(GET fs:k)), undef, 'with empty data (no persistence)');
$t->stop_redis;
ok(!eval { $t->redis('PING'); 1 }, 'a stopped redis refuses connections');

# --- nginx helpers
$t->write_file('html/index.html', "hello\n");
$t->write_file('html/big.txt', 'x' x 100000);
$t->run_nginx(<<'EOF');
server {
    listen 127.0.0.1:%%PORT%% reuseport;
    root %%DIR%%/html;
    location = /cookie {
        add_header Set-Cookie "a=1; Path=/; HttpOnly";
        add_header Set-Cookie "b=2; Max-Age=60";
        add_header X-Worker $pid;
        return 200 "cookie:$http_cookie\n";
    }
    location = /chunked {
        chunked_transfer_encoding on;
        return 200 "ok";
    }
}
EOF
is(scalar($t->worker_pids), 2, 'two workers');
my $r = $t->get('/index.html');
is($r->status, 200, 'static file');
is($r->body, "hello\n", 'static file body');
$r = $t->get('/big.txt');
is(length($r->body), 100000, 'a 100 KB body is read whole');
my $jar = FlashsaleTest::Jar->new;
$r = $t->get('/cookie', jar => $jar);
is(scalar($r->headers('set-cookie')), 2, 'two Set-Cookie headers kept apart');
is($jar->header, 'a=1; b=2', 'the jar holds both cookies');
$r = $t->get('/cookie', jar => $jar);
is($r->body, "cookie:a=1; b=2\n", 'the jar sends its cookies');

my @many = $t->parallel([ map { { path => '/cookie' } } 1 .. 100 ], timeout => 20);
is(scalar(grep { $_->status == 200 } @many), 100, '100 parallel requests all answered');
my %w = map { $_->header('x-worker') => 1 } @many;
is(scalar(keys %w), 2, 'reuseport spreads parallel requests over both workers');

my @p = $t->pipeline([ { path => '/index.html' }, { path => '/cookie' },
                       { path => '/index.html', method => 'HEAD' } ]);
is(scalar(@p), 3, 'three pipelined responses');
is($p[0]->body, "hello\n", 'first pipelined body');
like($p[1]->body, qr/^cookie:/, 'second pipelined body');
is($p[2]->body, '', 'HEAD has no body');

my @before = $t->worker_pids;
ok($t->reload, 'reload replaces the workers');
my @after = $t->worker_pids;
is(scalar(@after), 2, 'two workers after reload');
ok(!(grep { my $a = $_; grep { $_ == $a } @before } @after), 'all workers are new');

my ($killed, @new) = $t->kill_worker;
ok($killed, 'a killed worker is respawned');
ok(!(grep { $_ == $killed } @new), 'the killed pid is gone');
is($t->get('/index.html')->status, 200, 'nginx answers after the respawn');

$t->finish;
