# Issue 5: the waiting room in a real browser. Debian's Chromium, headless,
# driven by playwright-core (npm, pinned by t/browser/package-lock.json,
# installed into build/node) through t/browser/waiting.js, against
#
# - examples/demo.conf rendered as scripts/demo.sh renders it (free ports,
#   the demo store, a real Redis), admitting 1 shopper a second instead of
#   6 a minute: a new visitor sees the waiting page (place in line, ETA, a
#   progress bar, lang, no external request, no layout shift), the page
#   refreshes by itself and the same browser lands on the product page;
#   "Add to cart" on a SKU with no stock gives the sold-out page; with Redis
#   paused the retry page, which recovers by itself; /flashsale_status in
#   the browser is the dashboard, with a card per zone;
# - a configuration with the module's built-in waiting, sold-out and retry
#   pages.
#
# Every page is also checked at 390 px (no horizontal scrolling) and for
# text contrast (WCAG AA), and screenshotted at both widths under the
# test's directory (FLASHSALE_KEEP=1 keeps it).
#
# Without Chromium, Node.js >= 20 or npm the test is skipped, except in CI
# (CI=true), where it fails: make deps installs them.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Copy qw(copy);
use File::Path qw(make_path);
use JSON::PP ();
use FlashsaleTest;

my $ROOT = $FlashsaleTest::ROOT;
my $CI = ($ENV{CI} // '') =~ /^(?:1|true|yes)$/i;
my $CHROMIUM = $ENV{FLASHSALE_CHROMIUM} // '/usr/bin/chromium';

sub unavailable {
    my ($why) = @_;
    if ($CI) {
        plan tests => 1;
        fail("the browser test cannot run in CI: $why");
        diag('scripts/deps.sh (make deps, run by make test) installs chromium, and nodejs/npm when missing');
        exit 1;
    }
    plan skip_all => "$why (make deps installs it; in CI this test fails instead)";
}

sub which {
    my ($prog) = @_;
    for my $d (split /:/, $ENV{PATH} // '') {
        return "$d/$prog" if -x "$d/$prog" && !-d _;
    }
    return undef;
}

unavailable("no Chromium at $CHROMIUM") unless -x $CHROMIUM;
my $node = which('node') or unavailable('no node on PATH');
my $npm  = which('npm')  or unavailable('no npm on PATH');
my (undef, $nv) = FlashsaleTest::run_cmd(10, $node, '--version');
my ($major) = ($nv // '') =~ /^v(\d+)/;
unavailable("node $nv is too old for playwright-core (needs 20 or later)") unless $major && $major >= 20;

# playwright-core from npm, into build/node, as the lock file pins it; again
# only when the lock file changed.
my $nd = "$ROOT/build/node";
{
    my $lock = "$ROOT/t/browser/package-lock.json";
    my $slurp = sub { open my $fh, '<', $_[0] or return ''; local $/; return scalar <$fh> };
    my $same = -d "$nd/node_modules/playwright-core"
        && $slurp->($lock) eq $slurp->("$nd/package-lock.json");
    unless ($same) {
        make_path($nd);
        copy("$ROOT/t/browser/package.json", "$nd/package.json") or die "copy: $!";
        copy($lock, "$nd/package-lock.json") or die "copy: $!";
        my ($rc, $out) = FlashsaleTest::run_cmd(240, $npm, '--prefix', $nd, 'ci',
                                                '--no-audit', '--no-fund', '--loglevel=error');
        if ($rc != 0) {
            unlink "$nd/package-lock.json";    # try again next time
            unavailable("npm ci of playwright-core failed: $out");
        }
    }
}

###########################################################################
# nginx: the demo, and the built-in pages

my $t = FlashsaleTest->new;
$t->write_keys;
my $redis_port = $t->start_redis;
my $conf = $t->demo_conf;
ok($conf =~ s{\brate=6r/m burst=2\b}{rate=1r/s burst=0}, 'the demo admits 1 a second here instead of 6 a minute');
$t->run_nginx_raw($conf);

my %stock = ('JACKET-OCHRE' => 0, 'TOTE-INDIGO' => 10, 'MUG-MOSS' => 25);
for my $sku (sort keys %stock) {
    my $r = $t->http(method => 'PUT', path => "/flashsale_stock?sku=$sku&qty=$stock{$sku}");
    is($r->status, 200, "stock of $sku: $stock{$sku}") or diag($r->describe);
}

my $b = FlashsaleTest->new;
$b->write_keys;
$b->write_file('html/w/index.html', "<!doctype html><title>in</title>in\n");
my $closed = FlashsaleTest::free_port();    # nothing listens there
$t->redis('SET', 'fs:{s:GONE}:stock', 0);
$b->run_nginx(<<"EOF");
flashsale_zone w:1m;
flashsale_zone s:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /w/ {
        flashsale zone=w rate=1r/m;
    }
    location /s/ {
        flashsale zone=s rate=100r/s burst=100;
    }
    location = /s/cart/add {
        flashsale zone=s;
        flashsale_redis 127.0.0.1:$redis_port timeout=1s;
        flashsale_reserve sku=\$arg_sku qty=\$arg_qty;
    }
    location = /r/cart/add {
        flashsale zone=s;
        flashsale_redis 127.0.0.1:$closed connect_timeout=100ms;
        flashsale_reserve sku=\$arg_sku qty=\$arg_qty;
    }
}
EOF

###########################################################################
# the browser

my $dir = $t->dir;
my $cfg = {
    chromium    => $CHROMIUM,
    profile     => "$dir/chromium-profile",
    outdir      => "$dir/screenshots",
    deadline_ms => 50_000,
    demo => {
        base             => 'http://127.0.0.1:' . $t->port(1),
        redis_port       => $redis_port + 0,
        product          => '/drop/field-jacket.html',
        product_title    => 'Field Jacket',
        retry_product    => '/drop/enamel-mug.html',
        fill             => 6,
        admit_within_ms  => 20_000,
    },
    builtin => {
        base     => 'http://127.0.0.1:' . $b->port(1),
        waiting  => '/w/',
        sold_out => '/s/cart/add?sku=GONE&qty=1',
        retry    => '/r/cart/add?sku=ANY&qty=1',
        fill     => 3,
    },
};
$t->write_file('browser.json', JSON::PP->new->canonical->encode($cfg));

my ($rc, $output) = do {
    local $ENV{NODE_PATH} = "$nd/node_modules";
    FlashsaleTest::run_cmd(58, $node, "$ROOT/t/browser/waiting.js", "$dir/browser.json");
};
my ($json) = reverse grep { /^\{/ } split /\n/, $output;
my $res = json_decode($json // '') // {};
$t->write_file('browser-result.json', $json // '');
is($rc, 0, 'the browser script ran to the end') or diag($output);
is_deeply($res->{errors} || [], [], 'no error in the browser script');
diag("Chromium $res->{browser}, " . ($res->{elapsed_ms} // '?') . ' ms') if $res->{browser};

my %p = %{ $res->{pages} || {} };

# every page: lang, no horizontal scrolling at 390 px, contrast
sub page_ok {
    my ($name, %o) = @_;
    my $m = $p{$name};
    ok($m, "$name: the page was seen") or return;
    is($m->{status}, $o{status}, "$name: status $o{status}") if defined $o{status};
    like($m->{lang} // '', qr/^[a-z]{2}(-[A-Za-z]+)?$/, "$name: <html lang> is set");
    ok($m->{viewport_meta}, "$name: a viewport meta tag (mobile)");
    ok($m->{mobile}{scroll_width} <= $m->{mobile}{client_width},
       "$name: no horizontal scrolling at 390 px ($m->{mobile}{scroll_width} <= $m->{mobile}{client_width})");
    is($m->{contrast_fail}, 0, "$name: every text meets WCAG AA contrast")
        or diag(explain($m->{contrast_worst}));
    ok(defined $m->{cls} && $m->{cls} < 0.01, "$name: no layout shift (CLS $m->{cls})") unless $o{dynamic};
    my ($worst) = @{ $m->{contrast_worst} || [] };
    diag(sprintf '%s: lowest text contrast %.2f:1 ("%s", %s, %spx)', $name, $worst->{ratio},
                 $worst->{text}, $worst->{fg}, $worst->{size}) if $worst;
    diag("$name: the page reloaded itself before the 390 px screenshot ($m->{mobile}{title})")
        if ($m->{mobile}{title} // '') ne ($m->{title} // '');
    return $m;
}

my $w = page_ok('demo-waiting', status => 200);
if ($w) {
    like($w->{title}, qr/in line/i, 'demo waiting page: the waiting page, not the product');
    ok($w->{position} && $w->{position} >= 1, "demo waiting page: shows the place in line ($w->{position})");
    ok($w->{eta_text}, 'demo waiting page: shows the estimated wait (' . ($w->{eta_text} // '') . ')');
    ok($w->{progress}, 'demo waiting page: a progress bar');
    ok($w->{progress} && $w->{progress}{labelled}, 'demo waiting page: the progress bar has a label');
    like($w->{headers}{refresh} // '', qr/^\d+$/, 'demo waiting page: a Refresh header');
    like($w->{meta_refresh} // '', qr/^\d+$/, 'demo waiting page: a meta refresh');
    is($w->{headers}{'cache-control'}, 'no-store', 'demo waiting page: Cache-Control: no-store');
}

my @nav = grep { $_->{url} eq "$cfg->{demo}{base}$cfg->{demo}{product}" } @{ $res->{navigations} || [] };
my @waits = grep { defined $_->{position} } @nav;
ok(@nav >= 2, 'the waiting page reloaded by itself, without a click (' . scalar(@nav) . ' loads of the product URL)')
    or diag(explain($res->{navigations}));
ok(@waits >= 1, 'the first loads were the waiting page: positions ' . join(', ', map { $_->{position} } @waits));
if (@waits >= 2) {
    ok($waits[-1]{position} <= $waits[0]{position}, 'the place in line only improves between reloads');
}
ok($res->{admitted}, "the same browser landed on the product page once admitted, after $res->{admitted_after_ms} ms");
is($nav[-1]{status}, 200, 'the last load of the product URL is the product page (200)') if @nav;
like($nav[-1]{title} // '', qr/Field Jacket/, '... with its title') if @nav;
page_ok('demo-product', status => 200);

my $so = page_ok('demo-sold-out', status => 409);
like($so->{title} // '', qr/sold out/i, 'demo sold-out page: after a click on "Add to cart" with no stock') if $so;

my $re = page_ok('demo-retry', status => 503);
if ($re) {
    like($res->{redis_pause} // '', qr/^\+OK/, 'Redis paused with CLIENT PAUSE');
    like($re->{headers}{'retry-after'} // '', qr/^\d+$/, 'demo retry page: Retry-After');
    like($re->{meta_refresh} // '', qr/^\d+$/, 'demo retry page: refreshes itself');
}
ok($res->{retry_recovered}, 'the retry page tried again by itself and showed the cart once Redis answered');

my $dash = page_ok('dashboard', status => 200, dynamic => 1);
if ($dash) {
    like($dash->{headers}{'content-type'} // '', qr{^text/html}, 'dashboard: HTML for a browser');
    is($dash->{zones}, 1, 'dashboard: a card for the zone');
    ok($dash->{charts} >= 3, "dashboard: its charts ($dash->{charts})");
    like($dash->{text}, qr/Zone drop/, 'dashboard: names the zone');
    like($dash->{text}, qr/Waiting/, 'dashboard: shows the waiting count');
}

my $bw = page_ok('builtin-waiting', status => 200);
if ($bw) {
    ok($bw->{position} && $bw->{position} >= 1, "built-in waiting page: the place in line ($bw->{position})");
    ok($bw->{eta_text}, 'built-in waiting page: the estimated wait (' . ($bw->{eta_text} // '') . ')');
    ok($bw->{progress} && $bw->{progress}{labelled}, 'built-in waiting page: a labelled progress bar');
    like($bw->{meta_refresh} // '', qr/^\d+$/, 'built-in waiting page: a meta refresh');
}
page_ok('builtin-sold-out', status => 409);
my $br = page_ok('builtin-retry', status => 503);
like($br->{meta_refresh} // '', qr/^\d+$/, 'built-in retry page: refreshes itself') if $br;

is_deeply($res->{external} || [], [], 'no page asked for anything but this nginx');

diag("screenshot: $_") for @{ $res->{screenshots} || [] };
diag('(FLASHSALE_KEEP=1 keeps the test directory and its screenshots)') unless $ENV{FLASHSALE_KEEP};

$b->finish_instance(allow_5xx => 1);    # the retry page is a 503
$t->finish(allow_5xx => 1);
