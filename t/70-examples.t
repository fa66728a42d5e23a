# Issue 5: every example configuration passes `nginx -t` with the built
# module, and the Dockerfile only does what CI also does.
#
# - examples/headless.conf, php-fpm.conf, docker.conf, demo.conf (rendered
#   the way scripts/demo.sh renders it), the README's minimal configuration
#   and the example of docs/directives.md pass `nginx -t`, with no warning,
#   once their paths, ports and hosts point into this test's directory and
#   at loopback;
# - examples/log_format.conf is includable in http{} and logs the module's
#   variables;
# - headless.conf runs: the app gets X-Flashsale-Reservation and
#   X-Flashsale-Visitor from nginx only, the back-end handlers are on the
#   loopback server only, the status answers what prometheus.yml scrapes;
# - docker.conf runs, with its files where the Dockerfile copies them: the
#   HEALTHCHECK command succeeds, a shopper reserves; it also passes
#   `nginx -t` as www-data, as the image runs it;
# - the Dockerfile calls only scripts of the repository that exist and are
#   executable, each of which is run here in its --check mode
#   (scripts/deps.sh --build --check, --runtime --check); the runtime
#   packages provide every library the module links; docker-compose.yml and
#   prometheus.yml agree with docker.conf.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Path qw(make_path);
use CPAN::Meta::YAML;
use FlashsaleTest;

my $ROOT   = $FlashsaleTest::ROOT;
my $NGINX  = $FlashsaleTest::NGINX;
my $MODULE = $FlashsaleTest::MODULE;

ok(-f $MODULE, "the module is built: $MODULE") or BAIL_OUT('run make build');

sub slurp {
    my ($path) = @_;
    open my $fh, '<:raw', $path or die "read $path: $!";
    local $/;
    return scalar <$fh>;
}

sub yaml {
    my ($path) = @_;
    my $y = CPAN::Meta::YAML->read_string(slurp($path));
    ok($y, "$path is YAML") or diag(CPAN::Meta::YAML->errstr);
    return $y ? $y->[0] : {};
}

# `nginx -t` on a complete configuration written to $dir/nginx.conf.
sub nginx_t_ok {
    my ($name, $dir, $conf, @runas) = @_;
    make_path($dir);
    my $path = "$dir/nginx.conf";
    open my $fh, '>', $path or die "write $path: $!";
    print $fh $conf;
    close $fh;
    chmod 0644, $path;
    my ($rc, $out) = FlashsaleTest::run_cmd(30, @runas, $NGINX, '-t', '-p', "$dir/",
                                            '-c', $path, '-e', "$dir/error.log");
    is($rc, 0, "$name: nginx -t passes") or diag("$out\n--- $path ---\n$conf");
    like($out, qr/test is successful/, "$name: nginx -t says the test is successful");
    my @warn = grep { /\[(warn|emerg|alert|crit)\]/ } split /\n/, $out;
    is(scalar(@warn), 0, "$name: nginx -t prints no warning") or diag(join "\n", @warn);
    return $rc == 0;
}

# Give every port the configuration listens on, and every 127.0.0.1:port it
# talks to, a free loopback port (%$fixed first: old port => new port).
# Returns the new text and the map.
sub map_ports {
    my ($text, %fixed) = @_;
    my %m = %fixed;
    $text =~ s{(^[ \t]*listen[ \t]+)(?:[\d.]+:)?(\d+)\b|\b127\.0\.0\.1:(\d+)\b}{
        defined $1
            ? $1 . '127.0.0.1:' . ($m{$2} //= FlashsaleTest::free_port())
            : '127.0.0.1:' . ($m{$3} //= FlashsaleTest::free_port())
    }gme;
    return ($text, \%m);
}

# The Debian layout the examples are written for, pointed into $d.
sub localize_debian {
    my ($text, $t, $d, %o) = @_;
    my $keys = $t->keys_file;
    $text =~ s{^(\s*load_module\s+)\S*ngx_http_flashsale_module\.so\s*;}{$1$MODULE;}m;
    $text =~ s{/etc/nginx/flashsale/}{$ROOT/examples/}g;
    $text =~ s{/etc/nginx/flashsale\.keys}{$keys}g;
    $text =~ s{/var/log/nginx/}{$d/}g;
    $text =~ s{/run/nginx\.pid}{$d/nginx.pid}g;
    $text =~ s{^(\s*worker_processes\s+)auto;}{${1}2;}m;
    unless ($text =~ /client_body_temp_path/) {
        my $tmp = join '', map { "    ${_}_temp_path $d/${_}_temp;\n" }
            qw(client_body proxy fastcgi uwsgi scgi);
        $text =~ s/^(http\s*\{\n)/$1$tmp/m or die "no http block";
    }
    return $text;
}

my $t = FlashsaleTest->new;
$t->write_keys;
my $redis_port = $t->start_redis;
my $dir = $t->dir;

###########################################################################
# the Dockerfile: stages, scripts, copies

my $dockerfile = slurp("$ROOT/Dockerfile");
(my $df = $dockerfile) =~ s/\\\n/ /g;
my @ins;
for my $line (split /\n/, $df) {
    next if $line =~ /^\s*(#|$)/;
    my ($op, $arg) = $line =~ /^\s*([A-Za-z]+)\s+(.*?)\s*$/ or next;
    push @ins, [ uc $op, $arg ];
}

my @from = grep { $_->[0] eq 'FROM' } @ins;
is(scalar @from, 2, 'Dockerfile: two stages');
like($from[0][1], qr/^debian:bookworm-slim\s+AS\s+build$/i, 'Dockerfile: the build stage is debian:bookworm-slim');
like($from[1][1] // '', qr/^debian:bookworm-slim$/, 'Dockerfile: the final stage is debian:bookworm-slim');

my %deps_sets = map {
    my $set = $_;
    my ($rc, $out) = FlashsaleTest::run_cmd(30, "$ROOT/scripts/deps.sh", ($set eq 'all' ? () : "--$set"), '--list');
    is($rc, 0, "scripts/deps.sh --$set --list") or diag($out);
    ($set => { map { $_ => 1 } split /\n/, $out });
} qw(build runtime all);

for my $set (qw(build runtime)) {
    for my $p (sort keys %{ $deps_sets{$set} }) {
        ok($deps_sets{all}{$p}, "scripts/deps.sh (make deps) installs $p of the --$set set");
    }
}
ok($deps_sets{runtime}{curl}, 'the runtime set has curl, for the HEALTHCHECK');
ok($deps_sets{runtime}{nginx}, 'the runtime set has nginx');

my $stage = -1;
my %workdir;
my %image;            # final stage: path in the image => path in the repo
my (@healthcheck, $user, @expose, $cmd, @scripts_run);
my %allowed_cmds = map { $_ => 1 } qw(rm);
for my $i (@ins) {
    my ($op, $arg) = @$i;
    if ($op eq 'FROM') { $stage++; next }
    if ($op eq 'WORKDIR') { $workdir{$stage} = $arg; next }
    if ($op eq 'COPY') {
        my @a = split ' ', $arg;
        my $from;
        if ($a[0] =~ /^--from=(\S+)/) {
            $from = $1;
            shift @a;
        }
        is(scalar @a, 2, "Dockerfile: COPY $arg has one source and one destination");
        my ($src, $dst) = @a;
        my $repo;
        if (defined $from) {
            is($from, 'build', "Dockerfile: COPY --from=build");
            my $wd = $workdir{0} // '/';
            like($src, qr{^\Q$wd\E/}, "Dockerfile: COPY --from=build takes $src from the build stage's WORKDIR $wd");
            ($repo = $src) =~ s{^\Q$wd\E/}{$ROOT/};
        } else {
            $repo = $src eq '.' ? $ROOT : "$ROOT/$src";
        }
        ok(-e $repo, "Dockerfile: COPY source $src exists here ($repo)");
        $image{$dst} = $repo if $stage == 1;
        next;
    }
    if ($op eq 'RUN') {
        for my $c (split /\s*(?:&&|\|\||;|\|)\s*/, $arg) {
            my ($prog, @args) = split ' ', $c;
            next unless defined $prog;
            if ($prog !~ m{/}) {
                ok($allowed_cmds{$prog}, "Dockerfile: RUN $c: '$prog' is a plain command (only scripts of the repository do work)");
                next;
            }
            my $repo;
            if ($prog =~ m{^/}) {
                $repo = $image{$prog};
                ok($repo, "Dockerfile: RUN $prog was copied into the image before it runs");
            } else {
                ok(($workdir{$stage} // '') eq '/src', "Dockerfile: RUN $prog runs in /src, the repository's copy");
                $repo = "$ROOT/$prog";
            }
            next unless $repo;
            ok(-f $repo && -x $repo, "Dockerfile: RUN $prog is an executable script of the repository ($repo)");
            push @scripts_run, [ $repo, @args ];
        }
        next;
    }
    if ($op eq 'HEALTHCHECK') { push @healthcheck, $arg; next }
    if ($op eq 'USER') { $user = $arg; next }
    if ($op eq 'EXPOSE') { push @expose, split ' ', $arg; next }
    if ($op eq 'CMD') { $cmd = $arg; next }
}

my %ran = map { ($_->[0] =~ m{([^/]+)$})[0] => 1 } @scripts_run;
ok($ran{'deps.sh'}, 'Dockerfile: runs scripts/deps.sh');
ok($ran{'build.sh'}, 'Dockerfile: runs scripts/build.sh (what make build runs)');

# Each call of scripts/deps.sh in the Dockerfile, with --check: CI runs
# the same mode, installing nothing.
for my $s (grep { $_->[0] =~ m{/deps\.sh$} } @scripts_run) {
    my ($script, @args) = @$s;
    my ($rc, $out) = FlashsaleTest::run_cmd(60, "$ROOT/scripts/deps.sh", @args, '--check');
    is($rc, 0, "scripts/deps.sh @args --check: every package the Dockerfile installs with it is installed here")
        or diag($out);
}

ok(defined $user && $user !~ /^(root|0)(:|$)/, "Dockerfile: runs as a user who is not root (USER " . ($user // 'none') . ")");
ok(defined $user && defined getpwnam($user), "Dockerfile: USER $user exists on Debian") if defined $user;

is(scalar @healthcheck, 1, 'Dockerfile: one HEALTHCHECK');
my ($hc_cmd) = ($healthcheck[0] // '') =~ /\bCMD\s+(.*)$/;
like($hc_cmd // '', qr{^curl\s.*http://127\.0\.0\.1:(\d+)/\S*}, 'Dockerfile: the HEALTHCHECK is curl on loopback');

my @cmd = @{ json_decode($cmd // 'null') || [] };
is($cmd[0], 'nginx', 'Dockerfile: CMD runs nginx');
my %cmdopt = @cmd[1 .. $#cmd];
my $conf_in_image = $cmdopt{'-c'} // '/etc/nginx/nginx.conf';
is($cmdopt{'-g'}, 'daemon off;', 'Dockerfile: nginx stays in the foreground');
is($image{$conf_in_image}, "$ROOT/examples/docker.conf", "Dockerfile: the configuration nginx runs ($conf_in_image) is examples/docker.conf");
my $module_in_image = (grep { $image{$_} =~ m{/build/ngx_http_flashsale_module\.so$} } keys %image)[0];
ok($module_in_image, 'Dockerfile: copies the built module into the image');

# Every library the module links comes with the runtime set (a package of
# it or one of their dependencies), so the final stage has them.  The image
# ships the plain build: a sanitized one links the sanitizers' runtimes.
SKIP: {
    skip 'the image ships the plain module, not this sanitized build', 1
        if $MODULE =~ /-asan\.so$/;
    my ($rc, $out) = FlashsaleTest::run_cmd(20, 'ldd', $MODULE);
    is($rc, 0, 'ldd on the module') or diag($out);
    my %have = %{ $deps_sets{runtime} };
    for (1 .. 2) {    # and their dependencies, two levels down
        for my $p (keys %have) {
            my (undef, $d) = FlashsaleTest::run_cmd(10, 'dpkg-query', '-W', '-f', '${Depends},${Pre-Depends}', $p);
            $have{$_} = 1 for map { /^\s*([a-z0-9][a-z0-9.+-]*)/ ? $1 : () } split /[,|]/, $d;
        }
    }
    for my $lib ($out =~ m{=>\s*(/\S+)}g) {
        # usrmerge: dpkg may know the file under /usr/lib or /lib
        my ($pkg);
        for my $path ($lib, $lib =~ s{^/lib/}{/usr/lib/}r, $lib =~ s{^/usr/lib/}{/lib/}r) {
            my ($rc, $o) = FlashsaleTest::run_cmd(10, 'dpkg', '-S', $path);
            next if $rc != 0;
            ($pkg) = $o =~ /^([a-z0-9][a-z0-9.+-]*)(?::\w+)?:\s/ and last;
        }
        ok($pkg && $have{$pkg}, "the module's $lib (" . ($pkg // '?') . ") comes with scripts/deps.sh --runtime");
    }
}

###########################################################################
# docker.conf: the image's paths mapped back to the repository

my $docker_tpl = slurp("$ROOT/examples/docker.conf");

sub localize_docker {
    my ($text, $d, $keys) = @_;
    $text =~ s{(?<![\w.])/tmp/}{$d/}g;
    for my $dst (sort { length $b <=> length $a } keys %image) {
        my $src = $image{$dst};
        if ($dst =~ m{/$}) {
            $src =~ s{/*$}{/};
            $text =~ s{\Q$dst\E}{$src}g;
        } else {
            $text =~ s{\Q$dst\E(?![\w./-])}{$src}g;
        }
    }
    $text =~ s{/run/secrets/flashsale_keys\b}{$keys}g;
    $text =~ s{\bredis:6379\b}{127.0.0.1:$redis_port}g;
    return $text;
}

# every file it names is copied by the Dockerfile, comes with nginx, or is
# written at run time
{
    my @files = $docker_tpl =~ m{^\s*(?:load_module|include|flashsale_page\s+\w+|flashsale_secret_file|root|pid|error_log|access_log|\w+_temp_path)\s+([^\s;]+)}mg;
    ok(scalar(@files) >= 10, 'docker.conf: names its files (' . scalar(@files) . ')');
    for my $f (@files) {
        next if $f eq 'stderr' || $f eq 'off' || $f =~ m{^/dev/std(out|err)$} || $f =~ m{^/tmp/};
        my $ok = $f eq '/run/secrets/flashsale_keys'
            || ($f eq '/etc/nginx/mime.types' && -f $f)
            || grep { $_ =~ m{/$} ? index($f, $_) == 0 : $f eq $_ } keys %image;
        ok($ok, "docker.conf: $f is in the image (copied by the Dockerfile or from Debian's nginx) or mounted");
    }
    my ($public) = $docker_tpl =~ /^\s*listen\s+(\d+)\s*;/m;
    ok($public, 'docker.conf: listens on one public port');
    is_deeply(\@expose, [$public // ''], "Dockerfile: EXPOSE $public, the port docker.conf listens on");
    ok($public && $public >= 1024, 'docker.conf: an unprivileged port, as nginx runs as www-data');
    unlike($docker_tpl, qr/^\s*user\s/m, 'docker.conf: no user directive (the master is not root)');
    my ($hc_port) = ($hc_cmd // '') =~ m{127\.0\.0\.1:(\d+)/};
    is($hc_port, $public, 'the HEALTHCHECK asks the port docker.conf listens on');
    my ($hc_path) = ($hc_cmd // '') =~ m{127\.0\.0\.1:\d+(/[^\s?]*)};
    like($docker_tpl, qr/location\s+=\s+\Q$hc_path\E\s*\{\s*flashsale_status;/,
         "the HEALTHCHECK asks the status handler ($hc_path)");
}

{
    my $d = "$dir/docker-t";
    make_path($d);
    my ($conf) = map_ports(localize_docker($docker_tpl, $d, $t->keys_file), $redis_port => $redis_port);
    nginx_t_ok('docker.conf', $d, $conf);
}

# As the image runs it: the master is www-data, not root.
SKIP: {
    skip 'not root: cannot run nginx -t as www-data', 3 unless $> == 0;
    my ($uid, $gid) = (getpwnam('www-data'))[2, 3];
    skip 'no www-data user', 3 unless defined $uid;
    my $d = "$dir/docker-www";
    make_path($d);
    chown $uid, $gid, $d;
    my $keys = "$d/keys";
    open my $fh, '>', $keys or die;
    print $fh $t->key, "\n";
    close $fh;
    chmod 0400, $keys;
    chown $uid, $gid, $keys;
    my $text = localize_docker($docker_tpl, $d, $keys);
    # runc hands the container's stdout to its user (fixStdioPermissions);
    # here stdout is a pipe of root's, which www-data cannot open
    $text =~ s{/dev/stdout}{$d/access.log}g;
    my ($conf) = map_ports($text, $redis_port => $redis_port);
    nginx_t_ok('docker.conf as www-data', $d, $conf, 'runuser', '-u', 'www-data', '--');
}

###########################################################################
# docker-compose.yml and prometheus.yml

{
    my $c = yaml("$ROOT/docker-compose.yml");
    my $s = $c->{services} || {};
    ok($s->{redis}, 'docker-compose.yml: a redis service');
    like($s->{redis}{image} // '', qr/^redis:/, 'docker-compose.yml: redis runs the redis image');
    my ($host) = $docker_tpl =~ /^\s*flashsale_redis\s+([\w.-]+):\d+/m;
    is($host, 'redis', 'docker.conf: flashsale_redis names the compose service');
    my ($app) = grep { ($s->{$_}{build} // '') eq '.' } keys %$s;
    ok($app, 'docker-compose.yml: a service built from the Dockerfile');
    $app //= '';
    ok($s->{$app}{depends_on}{redis}, "docker-compose.yml: $app waits for redis (nginx resolves it at start)");
    is($s->{$app}{depends_on}{redis}{condition}, 'service_healthy', "docker-compose.yml: ... for its health check");
    ok($s->{redis}{healthcheck}, 'docker-compose.yml: redis has a health check');
    my ($public) = $docker_tpl =~ /^\s*listen\s+(\d+)\s*;/m;
    ok((grep { /:\Q$public\E$/ } @{ $s->{$app}{ports} || [] }), "docker-compose.yml: publishes port $public");
    my @secrets = @{ $s->{$app}{secrets} || [] };
    is_deeply(\@secrets, ['flashsale_keys'], 'docker-compose.yml: mounts the flashsale_keys secret, /run/secrets/flashsale_keys');
    is($c->{secrets}{flashsale_keys}{file}, './flashsale.keys', 'docker-compose.yml: the key file is ./flashsale.keys');
    like(slurp("$ROOT/.gitignore"), qr{^/?flashsale\.keys$}m, '.gitignore keeps flashsale.keys out of git');
    like(slurp("$ROOT/.dockerignore"), qr{^/?flashsale\.keys$}m, '.dockerignore keeps it out of the image');
    like(slurp("$ROOT/.dockerignore"), qr{^/?build/?$}m, '.dockerignore leaves build/ out of the context');
}

my $prom = yaml("$ROOT/examples/prometheus.yml");
my ($job) = @{ $prom->{scrape_configs} || [] };
is($job->{metrics_path}, '/flashsale_status', 'prometheus.yml: scrapes /flashsale_status');
is_deeply($job->{params}, { format => ['prometheus'] }, 'prometheus.yml: with format=prometheus');
ok((grep { $_ eq 'flashsale:8080' } map { @{ $_->{targets} || [] } } @{ $job->{static_configs} || [] }),
   'prometheus.yml: a target for the compose service');
my $scrape = ($job->{metrics_path} // '/') . '?'
    . join('&', map { my $k = $_; map { "$k=$_" } @{ $job->{params}{$k} } } sort keys %{ $job->{params} || {} });

###########################################################################
# php-fpm.conf, headless.conf, demo.conf: nginx -t

{
    my $d = "$dir/php-t";
    make_path($d);
    my $text = slurp("$ROOT/examples/php-fpm.conf");
    like($text, qr/fastcgi_param\s+FLASHSALE_RESERVATION\s+\$flashsale_reservation;/, 'php-fpm.conf: passes the reservation to PHP');
    like($text, qr/fastcgi_pass\s+php;/, 'php-fpm.conf: fastcgi_pass');
    like($text, qr/server\s+unix:\S+php\S*fpm\.sock;/, 'php-fpm.conf: php-fpm on a unix socket');
    my ($conf) = map_ports(localize_debian($text, $t, $d), 6379 => $redis_port);
    nginx_t_ok('php-fpm.conf', $d, $conf);
}

# the README's minimal configuration and the example of directives.md, as
# a newcomer would copy them
for my $doc ([ 'README.md', 'A minimal configuration', 'readme-t' ],
             [ 'docs/directives.md', 'Example configuration', 'directives-t' ])
{
    my ($file, $heading, $sub) = @$doc;
    my $d = "$dir/$sub";
    make_path($d);
    my ($text) = slurp("$ROOT/$file")
        =~ /^## \Q$heading\E\n\n```nginx\n(.*?)^```/ms;
    ok($text, "$file: $heading");
    my ($conf) = map_ports(localize_debian($text // '', $t, $d), 6379 => $redis_port);
    nginx_t_ok("$file, $heading", $d, $conf);
}

my $headless_tpl = slurp("$ROOT/examples/headless.conf");
{
    my $d = "$dir/headless-t";
    my ($conf) = map_ports(localize_debian($headless_tpl, $t, $d), 6379 => $redis_port);
    nginx_t_ok('headless.conf', $d, $conf);
}

{
    my $demo = FlashsaleTest->new;
    $demo->write_keys;
    my $conf = $demo->demo_conf;
    unlike($conf, qr/\@[A-Z_]+\@/, 'demo.conf: every placeholder is replaced');
    nginx_t_ok('demo.conf (rendered like scripts/demo.sh)', $demo->dir, $conf);
}

###########################################################################
# log_format.conf: included in http{}, it logs the variables

$t->write_file('html/drop/a', "in\n");
$t->run_nginx(<<"EOF");
include $ROOT/examples/log_format.conf;
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    access_log %%DIR%%/fs.log flashsale;
    access_log %%DIR%%/fs.json flashsale_json;
    location /drop/ {
        flashsale zone=z rate=1r/m;
        root %%DIR%%/html;
    }
    location / {
        return 200 "browse\\n";
    }
}
EOF

my @r = map { $t->get('/drop/a') } 1 .. 2;
is($r[0]->status, 200, 'log_format: the first visitor is admitted');
is($r[1]->status, 200, 'log_format: the second visitor waits (HTML, 200)');
$t->get('/');
my @log = FlashsaleTest::poll_until(5, sub {
    my @l = split /\n/, ($t->read_file('fs.log') // '');
    return @l >= 3 ? @l : ();
});
# (a variable the module did not set is "-" in a log line, as any unset
# variable of nginx is)
like($log[0] // '', qr{"GET /drop/a HTTP/1.1" 200 \d+ [\d.]+ state=admitted visitor=[0-9a-f]{32} ticket=1 position=0 eta=0 reservation="-" },
     'log_format flashsale: the admitted shopper') or diag(join "\n", @log);
like($log[1] // '', qr{ state=waiting visitor=[0-9a-f]{32} ticket=2 position=1 eta=6\d reservation="-" },
     'log_format flashsale: the waiting shopper');
like($log[2] // '', qr{"GET / HTTP/1.1" 200 \d+ [\d.]+ state=- visitor=- ticket=- position=- eta=- reservation="-" },
     'log_format flashsale: a request the module did not handle');
my @json = map { json_decode($_) } split /\n/, ($t->read_file('fs.json') // '');
is(scalar(grep { ref $_ eq 'HASH' } @json), 3, 'log_format flashsale_json: one JSON object a line');
is($json[1]{state}, 'waiting', 'log_format flashsale_json: the state');
is($json[1]{position}, '1', 'log_format flashsale_json: the position');
is($json[2]{state}, '', 'log_format flashsale_json: empty where the module did not run');

###########################################################################
# headless.conf, running: an echo "app" shows what the application gets

my $h = FlashsaleTest->new;
$h->write_keys($t->key);
$h->{redis_port} = $redis_port;    # the same Redis, reached as 127.0.0.1:6379 in the file
{
    my $d = $h->dir;
    my ($conf, $ports) = map_ports(localize_debian($headless_tpl, $h, $d), 6379 => $redis_port);
    my $app = $ports->{3000} or BAIL_OUT('headless.conf: no upstream on 127.0.0.1:3000');
    $conf =~ s/\}\s*\z/    server {
        listen 127.0.0.1:$app;
        access_log off;
        location \/ {
            default_type text\/plain;
            return 200 "app \$request_method \$request_uri reservation=[\$http_x_flashsale_reservation] visitor=[\$http_x_flashsale_visitor]\\n";
        }
    }
}
/ or die;
    $h->{headless_ports} = $ports;
    $h->run_nginx_raw($conf);
}
my $pub   = $h->{headless_ports}{80};
my $admin = $h->{headless_ports}{8081};
my $forged = 'sku=SNEAKER-42&qty=2&visitor=forged&expires=99999999999999';

my $r = $h->http(method => 'PUT', path => '/flashsale_stock?sku=SNEAKER-42&qty=5', port => $admin);
is($r->status, 200, 'headless: operators load stock on the loopback server') or diag($r->describe);
$r = $h->http(method => 'PUT', path => '/flashsale_stock?sku=SNEAKER-42&qty=5', port => $pub);
is($r->status, 404, 'headless: the stock handler is not on the public server');
$r = $h->http(method => 'POST', path => '/flashsale_confirm?sku=SNEAKER-42&visitor=x', port => $pub);
is($r->status, 404, 'headless: nor the back-end handlers');

my $jar = FlashsaleTest::Jar->new;
$r = $h->get('/drop/api/products', Accept => 'application/json',
             'X-Flashsale-Reservation' => $forged, 'X-Flashsale-Visitor' => 'forged',
             port => $pub, jar => $jar);
is($r->status, 200, 'headless: an API client is admitted (burst)') or diag($r->describe);
my ($visitor) = $r->body =~ /visitor=\[([0-9a-f]{32})\]/;
ok($visitor, 'headless: the app gets X-Flashsale-Visitor from nginx') or diag($r->body);
like($r->body, qr/reservation=\[\]/, 'headless: a client-sent X-Flashsale-Reservation never reaches the app');
is($r->header('X-Flashsale-State'), 'admitted', 'headless: X-Flashsale-State');

$r = $h->http(method => 'POST', path => '/drop/api/cart?sku=SNEAKER-42&qty=1', port => $pub, jar => $jar,
              headers => [ Accept => 'application/json', 'X-Flashsale-Reservation' => $forged ]);
is($r->status, 200, 'headless: add to cart reserves and reaches the app') or diag($r->describe);
like($r->body, qr/^app POST \/drop\/api\/cart\?sku=SNEAKER-42&qty=1 reservation=\[sku=SNEAKER-42&qty=1&visitor=\Q${\($visitor \/\/ 'x')}\E&expires=\d{13}\] visitor=\[\Q${\($visitor \/\/ 'x')}\E\]$/,
     'headless: the app gets the reservation nginx made, not the forged one');

$r = $h->get('/api/account', 'X-Flashsale-Reservation' => $forged, 'X-Flashsale-Visitor' => 'forged', port => $pub);
like($r->body, qr/reservation=\[\] visitor=\[\]$/, 'headless: outside the drop the app gets neither header');

$r = $h->http(method => 'POST', path => "/flashsale_confirm?sku=SNEAKER-42&visitor=" . ($visitor // ''), port => $admin);
is($r->status, 200, 'headless: the app confirms the hold on the loopback server') or diag($r->describe);
is((json_decode($r->body) || {})->{confirmed}, 1, 'headless: one unit confirmed');

$r = $h->get($scrape, port => $pub);
is($r->status, 200, "headless: Prometheus' scrape ($scrape) answers");
like($r->header('Content-Type') // '', qr{^text/plain; version=0\.0\.4}, 'headless: Prometheus text');
like($r->body, qr/^flashsale_reserved_total\{zone="drop"\} 1$/m, 'headless: the scrape shows the reservation');
like($r->body, qr/^flashsale_confirmed_total\{zone="drop"\} 1$/m, 'headless: ... and the confirmation');
$h->finish_instance;

###########################################################################
# docker.conf, running, with the image's files where the Dockerfile puts them

my $k = FlashsaleTest->new;
$k->write_keys($t->key);
{
    my $d = $k->dir;
    my $text = localize_docker($docker_tpl, $d, $k->keys_file);
    # logs into files, so that the harness can check them
    $text =~ s{^(\s*error_log\s+)stderr\b}{$1$d/error.log}m;
    $text =~ s{/dev/stdout}{$d/access.log}g;
    $text =~ s{^(\s*worker_processes\s+)auto;}{${1}2;}m;
    my ($conf, $ports) = map_ports($text, $redis_port => $redis_port);
    $k->{docker_ports} = $ports;
    $k->run_nginx_raw($conf);
}
my $front = $k->{docker_ports}{8080};
{
    (my $hc = $hc_cmd // 'false') =~ s{127\.0\.0\.1:\d+}{127.0.0.1:$front};
    $hc =~ s/\s*\|\|\s*exit 1\s*$//;
    my ($rc, $out) = FlashsaleTest::run_cmd(20, '/bin/sh', '-c', $hc);
    is($rc, 0, "docker: the HEALTHCHECK command succeeds ($hc)") or diag($out);
}
$r = $k->get('/healthz', port => $front);
is($r->status, 200, 'docker: /healthz');
$r = $k->http(method => 'PUT', path => '/flashsale_stock?sku=JACKET-OCHRE&qty=3', port => $front);
is($r->status, 200, 'docker: stock loaded through /flashsale_stock (Redis at "redis")') or diag($r->describe);
$jar = FlashsaleTest::Jar->new;
$r = $k->get('/drop/field-jacket.html', port => $front, jar => $jar);
is($r->status, 200, 'docker: a shopper is admitted to the product page');
is($r->header('X-Flashsale-State'), 'admitted', 'docker: X-Flashsale-State: admitted');
$r = $k->get('/drop/cart/add?sku=JACKET-OCHRE&qty=1', port => $front, jar => $jar);
is($r->status, 200, 'docker: add to cart') or diag($r->describe);
like($r->body, qr/JACKET-OCHRE/, "docker: the store's cart page shows the reservation");
$r = $k->get('/flashsale_status', Accept => 'text/html', port => $front);
like($r->body, qr/<title>Flash sale status<\/title>/, 'docker: the dashboard');
$k->finish_instance;

$t->finish;
