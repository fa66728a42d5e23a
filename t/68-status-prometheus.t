# Issue 4: /flashsale_status in full, JSON and Prometheus.
# Two zones with activity of every kind (tickets, admissions, reservations,
# sold out + latch, bad requests, release, confirm, Redis calls, breaker
# window; zone b has no breaker: state "off"). At a quiet moment the JSON
# status, ?format=prometheus and a `flashsale_status format=prometheus;`
# location are taken; every Prometheus line is parsed: HELP and TYPE lines
# for each metric, names start with flashsale_, counters (and only they)
# end with _total, a zone label on every sample, numeric values equal to
# the JSON values. ?format=json overrides the location's format. HEAD sends
# no body, POST is 405; Cache-Control: no-store; no key in the output.
# `flashsale_status format=...` followed by several flashsale_redis loads.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Select;
use FlashsaleTest;
use ReserveTest;
use BreakerTest;

my $t = FlashsaleTest->new;
$t->write_keys;
$t->write_file('html/drop/item.html', "CONTENT\n");
$t->write_file('html/reserved.txt', "RESERVED\n");
$t->start_redis;

$t->run_nginx(<<'EOF');
flashsale_zone a:1m;
flashsale_zone b:64k;
flashsale_secret_file %%KEYS%%;
flashsale_redis 127.0.0.1:%%REDIS_PORT%% timeout=1s;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/html;
    location /drop/ { flashsale zone=a rate=0r/s burst=7; }
    location /b/ { flashsale zone=b rate=120r/m burst=2; alias %%DIR%%/html/drop/; }
    location = /cart/add {
        flashsale zone=a;
        flashsale_breaker failures=50% window=60s min_calls=50 open=2s;
        flashsale_reserve sku=$arg_sku qty=$arg_qty;
        alias %%DIR%%/html/reserved.txt;
    }
    location = /stock { flashsale_stock zone=a; }
    location = /release { flashsale_release zone=a; }
    location = /confirm { flashsale_confirm zone=a; }
    location = /flashsale_status { flashsale_status; }
    location = /metrics { flashsale_status format=prometheus; }
}
EOF

# ---- activity
$t->get('/drop/item.html') for 1 .. 3;                      # a: 3 waiting
$t->get('/b/item.html') for 1 .. 6;                         # b: some admitted
is($t->http(method => 'PUT', path => '/stock?sku=A1&qty=3')->status, 200, 'stock A1 = 3');
my @ok = map { reserve_as($t, '/cart/add?sku=A1&qty=1', sub => "v$_", zone => 'a') } 1 .. 3;
is(scalar(grep { $_->status == 200 } @ok), 3, '3 reservations');
is(reserve_as($t, '/cart/add?sku=A1&qty=1', zone => 'a')->status, 409, 'sold out (latched)');
is(reserve_as($t, '/cart/add?sku=A1&qty=1', zone => 'a')->status, 409, 'sold out from the latch');
is(reserve_as($t, '/cart/add?sku=bad!&qty=1', zone => 'a')->status, 400, 'bad sku');
is(reserve_as($t, '/cart/add?sku=A1&qty=99', zone => 'a')->status, 400, 'bad qty');
is(reserve_as($t, '/cart/add?sku=NOPE&qty=1', zone => 'a')->status, 404, 'unknown sku');
is($t->http(method => 'POST', path => '/release?sku=A1&visitor=v1')->status, 200, 'release v1');
is($t->http(method => 'POST', path => '/confirm?sku=A1&visitor=v2')->status, 200, 'confirm v2');

# ---- one quiet moment: JSON, Prometheus (two ways), JSON again, unchanged
my ($j, $p, $m, $pj);
my $same = poll_until(10, sub {
    my $j1 = $t->get('/flashsale_status');
    $p = $t->get('/flashsale_status?format=prometheus');
    $m = $t->get('/metrics');
    $pj = $t->get('/metrics?format=json');
    my $j2 = $t->get('/flashsale_status');
    $j = $j1;
    return $j1->body eq $j2->body && $pj->body eq $j1->body;
}, 0.2);
ok($same, 'a quiet moment: JSON status unchanged around the Prometheus reads');

my $J = $j->json;
ok(ref $J eq 'HASH' && ref $J->{zones} eq 'ARRAY', 'JSON parses');
my %Z = map { $_->{zone} => $_ } @{ $J->{zones} };
is_deeply([ sort keys %Z ], [qw(a b)], 'JSON: zones a and b');
is($Z{b}{breaker}{state}, 'off', 'zone b has no breaker: state off');
is($Z{a}{breaker}{state}, 'closed', 'zone a breaker closed');
cmp_ok($Z{a}{breaker}{window_calls}, '>', 0, 'zone a breaker window has calls');
is($Z{a}{reservations}{reserved}, 3, 'a: reserved 3');
is($Z{a}{reservations}{sold_out}, 2, 'a: sold_out 2');
is($Z{a}{reservations}{released}, 1, 'a: released 1');
is($Z{a}{reservations}{confirmed}, 1, 'a: confirmed 1');
cmp_ok($Z{a}{reservations}{bad_requests}, '>=', 2, 'a: bad_requests >= 2');
is($Z{a}{tickets_issued}, 3, 'a: tickets_issued 3');
is_deeply($Z{a}{sold_out_skus}, ['A1'], 'a: sold_out_skus [A1]');
is_deeply($Z{a}{sold_out_holders}, { A1 => 3 },
          'a: sold_out_holders {A1: 3} (its holders when it was latched)');
is_deeply($Z{b}{sold_out_holders}, {}, 'b: sold_out_holders {}');
is($Z{a}{eta_new}, undef, 'a: eta_new null (paused)');
cmp_ok($Z{b}{admitted}, '>', 0, 'b: admitted > 0');

like($pj->header('Content-Type'), qr{^application/json}, '/metrics?format=json is JSON');

my %seen_names;
for my $case ([ '?format=prometheus', $p ], [ 'format=prometheus location', $m ]) {
    my ($what, $r) = @$case;
    is($r->status, 200, "$what: 200");
    is($r->header('Content-Type'), 'text/plain; version=0.0.4; charset=utf-8',
       "$what: Content-Type text/plain; version=0.0.4");
    is($r->header('Cache-Control'), 'no-store', "$what: Cache-Control no-store");
    is($r->header('Content-Length'), length($r->body), "$what: Content-Length matches");
    my $body = $r->body;
    like($body, qr/\n\z/, "$what: ends with a newline");

    my (%help, %type, %val, @bad, $cur);
    my $ln = 0;
    for my $l (split /\n/, $body) {
        $ln++;
        if ($l =~ /^# HELP (\S+) (\S.*)$/) {
            push @bad, "$ln: HELP twice for $1" if $help{$1}++;
            $cur = $1;
        } elsif ($l =~ /^# TYPE (\S+) (counter|gauge)$/) {
            push @bad, "$ln: TYPE $1 without HELP just before" unless ($cur // '') eq $1 && !$type{$1};
            $type{$1} = $2;
        } elsif ($l =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)$/) {
            my ($name, $labels, $v) = ($1, $2, $3);
            push @bad, "$ln: sample of $name before its HELP/TYPE"
                unless $type{$name} && ($cur // '') eq $name;
            my %lab = map { /^(\w+)="([^"]*)"$/ ? ($1 => $2) : ('?' => $_) } split /,/, $labels;
            push @bad, "$ln: labels '$labels' are not exactly zone=\"...\""
                unless keys(%lab) == 1 && defined $lab{zone};
            push @bad, "$ln: value '$v' is not numeric" unless $v =~ /^-?\d+(?:\.\d+)?$/;
            push @bad, "$ln: two samples for $name zone $lab{zone}"
                if defined $lab{zone} && exists $val{$name}{ $lab{zone} };
            $val{$name}{ $lab{zone} // '?' } = $v;
        } else {
            push @bad, "$ln: unparsable line '$l'";
        }
    }
    is(scalar(@bad), 0, "$what: every line parses, in HELP/TYPE/sample order")
        or diag(join "\n", @bad[0 .. ($#bad > 9 ? 9 : $#bad)]);
    is(scalar(grep { !/^flashsale_[a-z_]+$/ } keys %type), 0, "$what: every name is flashsale_[a-z_]+");
    is(scalar(grep { ($type{$_} eq 'counter') != (/_total$/ ? 1 : 0) } keys %type), 0,
       "$what: counters, and only counters, end with _total");
    is(scalar(grep { !$help{$_} } keys %type), 0, "$what: every TYPE has a HELP");
    is(scalar(grep { !$type{$_} } keys %help), 0, "$what: every HELP has a TYPE");
    is(scalar(grep { join(',', sort keys %{ $val{$_} || {} }) ne 'a,b' } keys %type), 0,
       "$what: every metric has one sample for zone a and one for zone b");

    my %st = (off => 0, closed => 1, open => 2, half_open => 3);
    my %want;
    for my $zn (qw(a b)) {
        my $z = $Z{$zn};
        my %w = (
            flashsale_rate                    => $z->{rate},
            flashsale_burst                   => $z->{burst},
            flashsale_tickets_issued_total    => $z->{tickets_issued},
            flashsale_admitted_total          => $z->{admitted},
            flashsale_waiting                 => $z->{waiting},
            flashsale_eta_new_seconds         => $z->{eta_new} // -1,
            flashsale_breaker_state           => $st{ $z->{breaker}{state} },
            flashsale_breaker_window_calls    => $z->{breaker}{window_calls},
            flashsale_breaker_window_failures => $z->{breaker}{window_failures},
            flashsale_breaker_trips_total     => $z->{breaker}{trips},
            flashsale_reserved_total          => $z->{reservations}{reserved},
            flashsale_sold_out_total          => $z->{reservations}{sold_out},
            flashsale_released_total          => $z->{reservations}{released},
            flashsale_confirmed_total         => $z->{reservations}{confirmed},
            flashsale_reservation_errors_total => $z->{reservations}{errors},
            flashsale_bad_requests_total      => $z->{reservations}{bad_requests},
            flashsale_redis_calls_total       => $z->{redis}{calls},
            flashsale_redis_errors_total      => $z->{redis}{errors},
            flashsale_redis_timeouts_total    => $z->{redis}{timeouts},
            flashsale_redis_latency_ms_avg    => $z->{redis}{latency_ms_avg},
            flashsale_sold_out_skus           => scalar @{ $z->{sold_out_skus} },
            flashsale_shm_size_bytes          => $z->{shm}{size},
            flashsale_shm_used_bytes          => $z->{shm}{used},
        );
        $want{$_}{$zn} = $w{$_} for keys %w;
    }
    is_deeply([ sort keys %type ], [ sort keys %want ], "$what: exactly the documented metric names")
        or diag(explain([ sort keys %type ]));
    my @diff;
    for my $name (sort keys %want) {
        for my $zn (qw(a b)) {
            my ($g, $w) = ($val{$name}{$zn}, $want{$name}{$zn});
            push @diff, "$name\{zone=\"$zn\"} prometheus " . ($g // 'missing')
                . ' json ' . ($w // 'null')
                unless defined $g && defined $w && $g == $w;
        }
    }
    is(scalar(@diff), 0, "$what: every value equals the JSON status") or diag(join "\n", @diff);
    is($type{flashsale_tickets_issued_total}, 'counter', "$what: tickets_issued_total is a counter");
    is($type{flashsale_waiting}, 'gauge', "$what: waiting is a gauge");
    $seen_names{$_}++ for keys %type;
}
ok($m->body eq $p->body, 'both ways give the same text')
    or diag('format=prometheus location starts with: ' . substr($m->body, 0, 60));

for my $r ($j, $p, $m) {
    my $body = $r->body;
    is(scalar(grep { index($body, $_) >= 0 } $t->key), 0, 'no key in the status output');
}

# ---- methods
for my $path ('/flashsale_status', '/flashsale_status?format=prometheus', '/metrics') {
    my $h = open_request(port => $t->port, path => $path, method => 'HEAD');
    my $raw = '';
    my $sel = IO::Select->new($h->{sock});
    my $deadline = time + 5;
    while (time < $deadline && $sel->can_read($deadline - time)) {
        my $n = sysread($h->{sock}, $raw, 65536, length $raw);
        last unless $n;
    }
    close $h->{sock};
    like($raw, qr{^HTTP/1\.1 200 }, "HEAD $path: 200");
    my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
    is($rest // '', '', "HEAD $path: no body");
    like($head, qr/^Cache-Control: no-store\r?$/mi, "HEAD $path: Cache-Control no-store");
}
for my $path ('/flashsale_status', '/metrics') {
    my $r = $t->http(method => 'POST', path => $path, body => 'x=1');
    is($r->status, 405, "POST $path: 405");
}

# ---- the directive's parameter is stored in the location, nowhere else:
# later flashsale_redis directives (the array of Redis servers grows) must
# still load
my ($rc, $out) = $t->nginx_t(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=1r/s; }
    location = /metrics { flashsale_status format=prometheus; }
    location = /json { flashsale_status format=json; }
    location /a/ { flashsale_redis 127.0.0.1:6379; }
    location /b/ { flashsale_redis 127.0.0.1:6380; }
    location /c/ { flashsale_redis 127.0.0.1:6381; }
}
EOF
is($rc, 0, 'nginx -t: flashsale_status format=... then three flashsale_redis load (no crash)')
    or diag("exit $rc: $out");

($rc, $out) = $t->nginx_t(<<'EOF');
flashsale_zone z:1m;
flashsale_secret_file %%KEYS%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /drop/ { flashsale zone=z rate=1r/s; }
    location = /metrics { flashsale_status format=yaml; }
}
EOF
isnt($rc, 0, 'nginx -t: flashsale_status format=yaml fails');
like($out, qr/flashsale_status/, 'naming flashsale_status') or diag($out);

$t->finish;
