# The harness's sanitizer and valgrind modes check what they claim to
# (issue 7): under SANITIZE=address the module in use is the ASan+UBSan
# build and nginx's workers have both runtimes loaded; a report file in the
# sanitizer directory is found (finish() also reads error.log, where gcc's
# UBSan writes); under
# FLASHSALE_VALGRIND=1 nginx runs as one process under memcheck and an
# error in its log is found. In a plain run there is nothing to check.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use FlashsaleTest;

my $san = FlashsaleTest::sanitizing();
my $vg = $FlashsaleTest::VALGRIND;
plan skip_all => 'neither SANITIZE=address nor FLASHSALE_VALGRIND=1'
    unless $san || $vg;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->run_nginx(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=10r/s; }
    location = /flashsale_status { flashsale_status; }
}
EOF

is($t->get('/flashsale_status')->status, 200, 'nginx answers');
my ($w) = $t->worker_pids;
ok($w, 'a process serves requests');

my $maps = '';
if (open my $fh, '<', "/proc/$w/maps") { local $/; $maps = <$fh>; close $fh }
my $cmd = '';
if (open my $fh, '<', "/proc/$w/cmdline") { local $/; $cmd = <$fh>; close $fh }

if ($san) {
    if ($FlashsaleTest::ASAN_NGINX) {
        like($FlashsaleTest::NGINX, qr{nginx-src-fuzz/objs/nginx$}, 'the ASan nginx');
    } else {
        like($FlashsaleTest::MODULE, qr/-asan\.so$/, 'the module is the ASan+UBSan build');
        like($maps, qr/libasan\.so/, 'the worker has libasan loaded');
        like($maps, qr/libubsan\.so/, 'the worker has libubsan loaded');
        like($maps, qr/san-options\.so/, 'and build/san-options.so (UBSAN_OPTIONS in workers)');
    }
    like($maps, qr/ngx_http_flashsale_module[^\n]*\.so/, 'the module is loaded');

    # a report file, as ASan's log_path writes it, is found (and then
    # counts as seen, so this test's own finish() passes)
    my $d = FlashsaleTest::san_dir();
    ok(-d $d && -w $d, "the report directory $d exists");
    open my $fh, '>', "$d/asan.999999" or die $!;
    print $fh "==999999==ERROR: AddressSanitizer: heap-buffer-overflow (a test)\n";
    close $fh;
    my @r = FlashsaleTest::san_reports();
    is(scalar(@r), 1, 'a report file is found');
    like($r[0][1] // '', qr/heap-buffer-overflow/, 'with its text');
    is(scalar(FlashsaleTest::san_reports()), 0, 'once');
    unlink "$d/asan.999999";
}

if ($vg) {
    like($cmd, qr/nginx/, 'the process runs nginx');
    like($maps, qr/vgpreload_memcheck/, 'under valgrind memcheck');
    is(scalar($t->worker_pids), 1, 'one process (master_process off)');
    $t->write_file('valgrind.1.log', "==1== Invalid read of size 8\n"
                   . "==1== ERROR SUMMARY: 1 errors from 1 contexts\n");
    $t->write_file('valgrind.2.log', "==2== ERROR SUMMARY: 0 errors from 0 contexts\n");
    # (the running nginx's own log has no summary yet: not counted here)
    my @e = grep { $_->[0] =~ m{/valgrind\.[12]\.log$} } $t->valgrind_errors;
    is(scalar(@e), 1, 'a valgrind log with errors is found, one without is not');
    unlink $t->path('valgrind.1.log'), $t->path('valgrind.2.log');
}

$t->finish;
