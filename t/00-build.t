# The module builds, loads into the installed nginx, and a minimal
# configuration passes `nginx -t`.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;

my $t = FlashsaleTest->new;

ok(-f $FlashsaleTest::MODULE, 'the module is built at build/ngx_http_flashsale_module.so')
    or BAIL_OUT('no module: run make build');

my ($rc, $out) = $t->nginx_t('');
is($rc, 0, 'nginx -t passes with only load_module') or diag($out);

($rc, $out) = $t->nginx_t(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ {
        flashsale zone=z rate=10r/s;
    }
    location = /flashsale_status {
        flashsale_status;
    }
}
EOF
is($rc, 0, 'nginx -t passes with a minimal waiting room') or diag($out);
like($out, qr/syntax is ok/, 'nginx -t says the syntax is ok');
like($out, qr/test is successful/, 'nginx -t says the test is successful');

$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ {
        flashsale zone=z rate=10r/s;
    }
    location = /flashsale_status {
        flashsale_status;
    }
}
EOF
is(scalar($t->worker_pids), 2, 'nginx runs with the module and 2 workers');
my $r = $t->get('/flashsale_status');
is($r->status, 200, 'the status location answers');

$t->finish;
