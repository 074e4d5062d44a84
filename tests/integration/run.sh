#!/bin/bash
# tests/integration/run.sh [BUILD_DIR] [IT_CLIENT]
#
# Runs mod_micropay in Debian's apache2 under each MPM (prefork, event) and
# drives it with it_client: the protocol suites, then restarts (graceful,
# full, kill -9 of the children under load) after which every spent payment
# must stay spent, then a server whose store is missing (fails closed) and a
# secrets file with a loose mode (refuses to start).
#
# BUILD_DIR defaults to ../../build/release relative to this script; the
# module is BUILD_DIR/mod_micropay/.libs/mod_micropay.so and the client
# BUILD_DIR/tests/integration/it_client unless given.
# Env: MP_IT_MPMS ("prefork event"), MP_IT_KEEP=1 keeps the temp dirs,
# APACHE2 (apache2 binary).
# Servers bind 127.0.0.1 on free ports and are stopped by PID. Needs root
# (User www-data). Output: PASS/FAIL per step, last line "N passed, M failed".
# bash is required (arrays, /dev/tcp); `sh run.sh` re-executes under bash
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/integration/lib.sh
. "$here/lib.sh"
build=${1:-$here/../../build/release}
if ! build=$(cd "$build" 2>/dev/null && pwd); then
    echo "run.sh: build directory ${1:-$here/../../build/release} not found" >&2
    exit 2
fi
client=${2:-$build/tests/integration/it_client}
case $client in /*) ;; *) client=$(pwd)/$client ;; esac
module=$build/mod_micropay/.libs/mod_micropay.so
APACHE2=${APACHE2:-$(command -v apache2 || echo /usr/sbin/apache2)}
moddir=$(apxs -q LIBEXECDIR 2>/dev/null || echo /usr/lib/apache2/modules)
mpms=${MP_IT_MPMS:-prefork event}

for f in "$module" "$client" "$APACHE2"; do
    if [ ! -x "$f" ] && [ ! -f "$f" ]; then
        echo "run.sh: missing $f" >&2
        exit 2
    fi
done
if [ "$(id -u)" != 0 ]; then
    echo "run.sh: must run as root (Apache switches to www-data)" >&2
    exit 2
fi

npass=0
nfail=0
apid=""
lpid=""
tmpdirs=()
t0=$(date +%s)

pass() { npass=$((npass + 1)); echo "PASS [$mpm] $*"; }
fail() { nfail=$((nfail + 1)); echo "FAIL [$mpm] $*"; }
note() { echo "     [$mpm] $*"; }

port_answers() {
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/free/a.html"
}

apache_ready() { port_answers "$port"; }

cleanup() {
    if [ -n "$lpid" ]; then kill -TERM "$lpid" 2>/dev/null; wait "$lpid" 2>/dev/null; fi
    if [ -n "$apid" ]; then stop_apache; fi
    if [ "${MP_IT_KEEP:-0}" = 1 ] || [ "$nfail" -gt 0 ]; then
        [ ${#tmpdirs[@]} -gt 0 ] && echo "temp dirs kept: ${tmpdirs[*]}"
    else
        for d in "${tmpdirs[@]}"; do rm -rf "$d"; done
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Lines of the error log after line $2 at warn or worse, minus those matching $3.
bad_log_lines() {
    local log=$1 from=$2 allow=${3:-}
    [ -f "$log" ] || return 0
    tail -n +"$((from + 1))" "$log" | grep -E '\[([a-z0-9_]+:)?(warn|error|crit|alert|emerg)\]' |
        { if [ -n "$allow" ]; then grep -vE "$allow"; else cat; fi; } || true
}
log_lines() { [ -f "$1" ] && wc -l <"$1" || echo 0; }

# The warning of every start for a server with MicropayPayWordOverHTTP On.
pwhttp_allow='\[micropay:warn\].* MP00147: vendor [a-z.]+: MicropayPayWordOverHTTP On: '

# check_log STEP FROM [ALLOW]
check_log() {
    local bad allow="${3:+$3|}$pwhttp_allow"
    bad=$(bad_log_lines "$T/error.log" "$2" "$allow")
    bad+=$(bad_log_lines "$T/apache.out" "$4" "$allow")
    if [ -z "$bad" ]; then
        pass "$1: error.log has no unexpected warn/error lines"
    else
        fail "$1: unexpected error.log lines:"
        echo "$bad" | head -20 | sed 's/^/       /'
    fi
}

# run_client STEP MODE [ARGS]: runs it_client, shows its summary, PASS/FAIL.
run_client() {
    local step=$1 out
    shift
    out=$T/client-$1.$(date +%s%N).out
    MP_IT_URL=http://127.0.0.1:$port MP_IT_DIR=$T MP_IT_MPM=$mpm "$client" "$@" >"$out" 2>&1
    local rc=$?
    local summary
    summary=$(tail -n 1 "$out")
    if [ $rc = 0 ]; then
        pass "$step ($summary)"
    else
        fail "$step (exit $rc: $summary); output in $out:"
        grep -E 'FAIL|Test: .*\.\.\.FAILED|note:|ledger|load:|replayed|retried' "$out" | head -60 | sed 's/^/       /'
    fi
    return $rc
}

write_site() {
    mkdir -p "$T/htdocs/free" "$T/htdocs/paid/free" "$T/htdocs/paid/mc" "$T/htdocs/paid/pw" \
        "$T/htdocs/paid/sub" "$T/htdocs/paid/denied" "$T/htdocs/paid/auth" "$T/cgi-bin" \
        "$T/backend/backend" "$T/run" "$T/emptystore" "$T/htdocs/tls"
    local f
    for f in free/a:FREE-A paid/a:PAID-A paid/b:PAID-B paid/free/x:PAID-FREE-X paid/mc/a:PAID-MC \
             paid/pw/a:PAID-PW paid/sub/c:PAID-SUB-C paid/denied/a:PAID-DENIED paid/auth/a:PAID-AUTH \
             tls/a:TLS-A; do
        printf '<html><body><p>%s</p></body></html>\n' "${f#*:}" >"$T/htdocs/${f%%:*}.html"
    done
    printf '<html><body><p>BACKEND-P</p></body></html>\n' >"$T/backend/backend/p.html"
    # DirectoryIndex of a paid directory (mod_dir runs its fixups before ours)
    printf '<html><body><p>PAID-INDEX</p></body></html>\n' >"$T/htdocs/paid/index.html"
    # SSI in a free location including a paid page (and a free one, as control);
    # a paid SSI page including a paid page
    printf 'SSI-FREE-START\n<!--#include virtual="/free/a.html" -->\n<!--#include virtual="/paid/a.html" -->\nSSI-FREE-END\n' \
        >"$T/htdocs/free/ssi.shtml"
    printf 'SSI-PAID-START\n<!--#include virtual="/paid/b.html" -->\nSSI-PAID-END\n' >"$T/htdocs/paid/ssi.shtml"
    # a paid SSI page at 0.005 including a page of a dearer location (0.05)
    mkdir -p "$T/htdocs/paid/dear"
    printf '<html><body><p>PAID-DEAR</p></body></html>\n' >"$T/htdocs/paid/dear/d.html"
    printf 'SSI-DEAR-START\n<!--#include virtual="/paid/dear/d.html" -->\nSSI-DEAR-END\n' \
        >"$T/htdocs/paid/ssi-dear.shtml"
    cat >"$T/cgi-bin/paid.cgi" <<'EOF'
#!/bin/sh
# a local redirect: Apache serves the free page by an internal redirect
[ "$QUERY_STRING" = redirect ] && { printf 'Location: /free/a.html\r\n\r\n'; exit 0; }
printf 'Content-Type: text/plain\r\nCache-Control: public, max-age=60\r\n\r\n'
echo CGI-PAID
echo "REQUEST_METHOD=$REQUEST_METHOD"
echo "QUERY_STRING=$QUERY_STRING"
env | grep '^MICROPAY_' | sort
[ "$REQUEST_METHOD" = POST ] && cat >/dev/null
case "$QUERY_STRING" in *slow*) sleep 0.3 ;; esac
exit 0
EOF
    chmod 755 "$T/cgi-bin/paid.cgi"
    # echoes the SHA-256 of the body it was given: the handler must get the
    # very body the payment was bound to (mod_micropay_body.c)
    cat >"$T/cgi-bin/echo.cgi" <<'EOF'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo ECHO-CGI
echo "MICROPAY_RESULT=$MICROPAY_RESULT"
echo "HTTP_MICROPAY_RESULT=$HTTP_MICROPAY_RESULT"
printf 'BODY-SHA256=%s\n' "$(sha256sum | cut -d' ' -f1)"
exit 0
EOF
    chmod 755 "$T/cgi-bin/echo.cgi"
    cp "$T/cgi-bin/echo.cgi" "$T/cgi-bin/echo-w2.cgi"
    cp "$T/cgi-bin/echo.cgi" "$T/cgi-bin/echo-w0.cgi"
    printf '<html><body><p>PAID-RISE</p></body></html>\n' >"$T/htdocs/paid/rise.html"
    htpasswd -cbs "$T/htpasswd" it itpass >/dev/null 2>&1
    chmod 644 "$T/htpasswd"
    chown www-data:www-data "$T/emptystore"
    chmod 755 "$T"
}

# gen_conf FILE STORE SECRETS ERRORLOG
gen_conf() {
    local cgi
    if [ "$mpm" = prefork ]; then
        cgi="LoadModule cgi_module $moddir/mod_cgi.so"
    else
        cgi="LoadModule cgid_module $moddir/mod_cgid.so
ScriptSock $T/run/cgid.sock"
    fi
    cat >"$1" <<EOF
# generated by tests/integration/run.sh
ServerRoot "$T"
ServerName 127.0.0.1:$port
Listen 127.0.0.1:$port
Listen 127.0.0.1:$bport
PidFile "$T/run/httpd.pid"
DefaultRuntimeDir "$T/run"
Mutex file:$T/run default
ErrorLog "$4"
LogLevel warn micropay:info
User www-data
Group www-data

LoadModule mpm_${mpm}_module $moddir/mod_mpm_${mpm}.so
LoadModule authz_core_module $moddir/mod_authz_core.so
LoadModule authz_host_module $moddir/mod_authz_host.so
LoadModule authz_user_module $moddir/mod_authz_user.so
LoadModule authn_core_module $moddir/mod_authn_core.so
LoadModule authn_file_module $moddir/mod_authn_file.so
LoadModule auth_basic_module $moddir/mod_auth_basic.so
LoadModule mime_module $moddir/mod_mime.so
LoadModule alias_module $moddir/mod_alias.so
$cgi
LoadModule proxy_module $moddir/mod_proxy.so
LoadModule proxy_http_module $moddir/mod_proxy_http.so
LoadModule include_module $moddir/mod_include.so
# before mod_dir on purpose: payment must still be decided after its fixups
LoadModule micropay_module $module
LoadModule dir_module $moddir/mod_dir.so

<IfModule mpm_prefork_module>
    StartServers 12
    MinSpareServers 12
    MaxSpareServers 40
    MaxRequestWorkers 64
</IfModule>
<IfModule mpm_event_module>
    StartServers 2
    ServerLimit 4
    ThreadsPerChild 25
    MinSpareThreads 25
    MaxSpareThreads 75
    MaxRequestWorkers 100
</IfModule>
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 2
Timeout 30
# PROTOCOL.md 7.4: deployments SHOULD allow request fields of at least 8300 bytes
LimitRequestFieldSize 16384
TypesConfig /dev/null
AddType text/html .html .shtml
AddOutputFilter INCLUDES .shtml
DirectoryIndex index.html

LogFormat "%{X-IT-Id}i|%>s|%m|%U|%{MICROPAY_SCHEME}e|%{MICROPAY_UNITS}e|%{MICROPAY_PAYER}e|%{MICROPAY_RESULT}e|%{MICROPAY_PRICE}e" mpit
CustomLog "$T/access.log" mpit

MicropayVendor news.example
MicropaySecretsFile "$3"
MicropayStore "$2"
MicropayStoreSize 2048
MicropayTrustBroker broker.example "$T/broker.pem"
MicropayBrokerURL https://broker.example/mp/
MicropayPayWordGrace 2592000
MicropayMaxBody 100000

DocumentRoot "$T/htdocs"
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "$T/htdocs">
    Require all granted
</Directory>
<Directory "$T/htdocs/free">
    Options +Includes
</Directory>
<Directory "$T/htdocs/paid">
    Options +Includes
    Micropay on
    MicropayPrice "0.005 USD"
    MicropaySchemes millicent payword
    MicropayPayWordUnit "0.001 USD"
    # the suites' PayWord runs over plain http on loopback (MP00147 warns)
    MicropayPayWordOverHTTP on
    MicropayReceiptWindow 600
    MicropayOfferLifetime 300
    # the replay step retries payments of this run after the restarts
    MicropayRetryWindow 3600
</Directory>
<Directory "$T/htdocs/paid/free">
    Micropay off
</Directory>
# PayWord where MicropayPayWordOverHTTP is not set: not on plain http
<Directory "$T/htdocs/tls">
    Micropay on
    MicropayPrice "0.005 USD"
    MicropaySchemes millicent payword
    MicropayPayWordUnit "0.001 USD"
</Directory>
<Directory "$T/htdocs/paid/mc">
    MicropaySchemes millicent
    MicropayReceiptWindow 0
</Directory>
<Directory "$T/htdocs/paid/dear">
    MicropayPrice "0.05 USD"
</Directory>
<Directory "$T/htdocs/paid/pw">
    MicropaySchemes payword
</Directory>
<Directory "$T/htdocs/paid/denied">
    Require all denied
</Directory>
<Directory "$T/htdocs/paid/auth">
    AuthType Basic
    AuthName "it"
    AuthBasicProvider file
    AuthUserFile "$T/htpasswd"
    Require valid-user
</Directory>

ScriptAlias /cgi-bin/ "$T/cgi-bin/"
<Directory "$T/cgi-bin">
    Require all granted
</Directory>
<Location "/cgi-bin/paid.cgi">
    Micropay on
    MicropayPrice "0.005 USD"
    MicropaySchemes millicent payword
    MicropayPayWordUnit "0.001 USD"
    MicropayPayWordOverHTTP on
    MicropayReceiptWindow 600
    MicropayRetryWindow 3600
</Location>
# retries: the default window (60 s), 2 s, none (and no receipts)
<LocationMatch "^/cgi-bin/echo(-w2|-w0)?\\.cgi\$">
    Micropay on
    MicropayPrice "0.005 USD"
    MicropaySchemes millicent payword
    MicropayPayWordUnit "0.001 USD"
    MicropayPayWordOverHTTP on
</LocationMatch>
<Location "/cgi-bin/echo-w2.cgi">
    MicropayRetryWindow 2
</Location>
<Location "/cgi-bin/echo-w0.cgi">
    MicropayRetryWindow 0
    MicropayReceiptWindow 0
</Location>

ProxyPass "/proxy/" "http://127.0.0.1:$bport/backend/"
ProxyPassReverse "/proxy/" "http://127.0.0.1:$bport/backend/"
<Location "/proxy/">
    Micropay on
    MicropayPrice "0.005 USD"
    MicropaySchemes millicent payword
    MicropayPayWordUnit "0.001 USD"
    MicropayPayWordOverHTTP on
</Location>

# "/" itself is paid (no index.html there): an absolute-form target
# "http://HOST?/paid/b.html" serves "/" with a query
<LocationMatch "^/\$">
    Micropay on
    MicropayPrice "0.005 USD"
    MicropaySchemes millicent payword
    MicropayPayWordUnit "0.001 USD"
    MicropayPayWordOverHTTP on
</LocationMatch>

# Name-based virtual hosts on the main port: the first (default) is the main
# site; shop.example is a second vendor sharing the store and secrets file.
<VirtualHost 127.0.0.1:$port>
    ServerName 127.0.0.1
</VirtualHost>
<VirtualHost 127.0.0.1:$port>
    ServerName shop.example
    MicropayVendor shop.example
    MicropaySecretsFile "$3"
    MicropayStore "$2"
</VirtualHost>

<VirtualHost 127.0.0.1:$bport>
    ServerName backend.invalid
    CustomLog "$T/backend-access.log" mpit
    DocumentRoot "$T/backend"
    <Directory "$T/backend">
        Require all granted
    </Directory>
</VirtualHost>
EOF
}

# The 403 test of the suites (Require all denied under the paid tree), and
# mod_include's line for the paid page a free SSI page may not include
# (MP00035, at info, refuses that subrequest with 403).
suite_allow='AH01630: client denied by server configuration: [^ ]*/htdocs/paid/denied/|\[include:error\].* unable to include "/paid/a\.html" in parsed file [^ ]*/htdocs/free/ssi\.shtml, subrequest returned 403$|\[include:error\].* unable to include "/paid/dear/d\.html" in parsed file [^ ]*/htdocs/paid/ssi-dear\.shtml, subrequest returned 403$'
# Messages the kill -9 scenario may cause (children dying, the CGI daemon restarting).
kill_allow='AH00052|AH01239|AH01240|AH01257|cgid daemon|cgi daemon'
# Our fail-closed line when the store is missing.
nostore_allow='\[micropay:(error|crit|alert|emerg)\].*MP[0-9]{5}'

run_mpm() {
    T=$(mktemp -d /tmp/mp-it-"$mpm".XXXXXX)
    tmpdirs+=("$T")
    port=$(free_port)
    bport=$(free_port)
    while [ "$bport" = "$port" ]; do bport=$(free_port); done
    note "temp dir $T, port $port, backend port $bport"
    : >"$T/apache.out"

    if MP_IT_DIR=$T "$client" setup "$T" >"$T/setup.out" 2>&1 \
        && [ "$(stat -c %a "$T/vendor.secrets")" = 600 ] && [ -s "$T/broker.pem" ] && [ -s "$T/rogue.pem" ]; then
        pass "setup: secrets (0600), broker.pem, rogue.pem, store"
    else
        fail "setup: $(tail -n 3 "$T/setup.out")"
        return
    fi
    write_site
    conf=$T/httpd.conf
    gen_conf "$conf" "$T/store" "$T/vendor.secrets" "$T/error.log"

    if "$APACHE2" -t -f "$conf" >"$T/configtest.out" 2>&1; then
        pass "apache2 -t"
    else
        fail "apache2 -t: $(tail -n 5 "$T/configtest.out")"
        return
    fi
    # store sizes outside 16..1048576 MiB are refused when the configuration is read
    local bad out
    for bad in "MicropayStoreSize 15" "MicropayStoreSize 1048577" "MicropayStoreSize 1G" \
               "MicropayBrokerStoreSize 0"; do
        { cat "$conf"; echo "$bad"; } >"$T/httpd-size.conf"
        if out=$("$APACHE2" -t -f "$T/httpd-size.conf" 2>&1); then
            fail "$bad: apache2 -t accepts it"
        elif echo "$out" | grep -q "from 16 to 1048576"; then
            pass "$bad: apache2 -t refuses it, naming the range"
        else
            fail "$bad: apache2 -t does not name the range: $(echo "$out" | head -3)"
        fi
    done

    local from=0 afrom=0
    if start_apache "$conf"; then
        pass "start (pid $apid)"
    else
        fail "start: $(tail -n 5 "$T/apache.out"; tail -n 5 "$T/error.log" 2>/dev/null)"
        return
    fi

    # MicropayStoreSize 2048: the children map 2 GiB, and the store file
    # (kept at the map size) grew to it
    if [ "$(stat -c %s "$T/store/data.mdb")" = $((2048 * 1024 * 1024)) ]; then
        pass "MicropayStoreSize 2048: the store file is 2 GiB"
    else
        fail "MicropayStoreSize 2048: the store file is $(stat -c %s "$T/store/data.mdb") bytes"
    fi

    # one warning per server that allows PayWord over plain http: the main
    # server and its three virtual hosts (the backend's too) inherit both
    # the vendor and the <Directory> sections
    local nw
    nw=$(grep -cE "$pwhttp_allow" "$T/error.log")
    if [ "$nw" = 4 ]; then
        pass "MicropayPayWordOverHTTP On: MP00147 warns once per server at start ($nw)"
    else
        fail "MicropayPayWordOverHTTP On: $nw MP00147 warn lines at start, want 4"
    fi
    run_client "protocol suites" run
    check_log "protocol suites" "$from" "$suite_allow" "$afrom"
    # the SSI include of a paid page from a free one: refused, logged at info
    if grep -qE '\[micropay:info\].* MP00035: subrequest for paid /paid/a\.html from an unpaid request' "$T/error.log"; then
        pass "SSI include refused: MP00035 at info in error.log"
    else
        fail "SSI include refused: no [micropay:info] MP00035 line for /paid/a.html in error.log"
    fi
    # a dearer include from a cheaper paid page: refused, logged at info
    if grep -qE '\[micropay:info\].* MP00036: subrequest for paid /paid/dear/d\.html dearer' "$T/error.log"; then
        pass "SSI include of a dearer page refused: MP00036 at info in error.log"
    else
        fail "SSI include of a dearer page: no [micropay:info] MP00036 line in error.log"
    fi

    # graceful restart
    from=$(log_lines "$T/error.log"); afrom=$(log_lines "$T/apache.out")
    kill -USR1 "$apid"
    sleep 1.5
    local n=50
    while [ $n -gt 0 ] && ! port_answers "$port"; do sleep 0.1; n=$((n - 1)); done
    if kill -0 "$apid" 2>/dev/null && port_answers "$port"; then
        pass "graceful restart (USR1)"
        run_client "replay after graceful restart" replay
    else
        fail "graceful restart: server gone"
        return
    fi
    check_log "graceful restart" "$from" "" "$afrom"

    # full stop and start
    from=$(log_lines "$T/error.log"); afrom=$(log_lines "$T/apache.out")
    if stop_apache; then pass "stop (TERM)"; else fail "stop (TERM) took longer than 15 s"; fi
    if start_apache "$conf"; then
        pass "start again (pid $apid)"
        run_client "replay after full restart" replay
    else
        fail "start again: $(tail -n 5 "$T/error.log")"
        return
    fi
    check_log "full restart" "$from" "" "$afrom"

    # kill -9 of every child while fresh payments are under way
    from=$(log_lines "$T/error.log"); afrom=$(log_lines "$T/apache.out")
    MP_IT_URL=http://127.0.0.1:$port MP_IT_DIR=$T MP_IT_MPM=$mpm "$client" load 5 >"$T/load.out" 2>&1 &
    lpid=$!
    sleep 1.5
    local before=0 children
    [ -f "$T/spent.txt" ] && before=$(wc -l <"$T/spent.txt")
    children=$(pgrep -P "$apid" | tr '\n' ' ')
    note "kill -9 of children: $children(spent records before: $before)"
    [ -n "$children" ] && kill -KILL $children 2>/dev/null
    sleep 1
    children=$(pgrep -P "$apid" | tr '\n' ' ')
    [ -n "$children" ] && note "second kill -9: $children" && kill -KILL $children 2>/dev/null
    if wait "$lpid"; then
        pass "load across kill -9 ($(grep -o 'load: [0-9].*' "$T/load.out"))"
    else
        fail "load across kill -9: $(grep -E 'load: [0-9]|FAIL|refused|lost' "$T/load.out" | head -10)"
    fi
    lpid=""
    n=50
    while [ $n -gt 0 ] && ! port_answers "$port"; do sleep 0.1; n=$((n - 1)); done
    if kill -0 "$apid" 2>/dev/null && port_answers "$port"; then
        pass "server recovered after kill -9"
        run_client "replay after kill -9" replay
    else
        fail "server did not recover after kill -9"
        return
    fi
    check_log "kill -9" "$from" "$kill_allow" "$afrom"

    from=$(log_lines "$T/error.log"); afrom=$(log_lines "$T/apache.out")
    if stop_apache; then pass "stop (TERM)"; else fail "stop (TERM) took longer than 15 s"; fi
    check_log "stop" "$from" "" "$afrom"
    run_client "ledger after all scenarios (store read-only, server stopped)" ledger

    # missing store: fail closed
    local conf2=$T/httpd-nostore.conf
    gen_conf "$conf2" "$T/emptystore" "$T/vendor.secrets" "$T/error.log"
    from=$(log_lines "$T/error.log"); afrom=$(log_lines "$T/apache.out")
    if start_apache "$conf2"; then
        pass "start with an empty store directory"
        run_client "missing store: paid 500, free 200, no content" nostore
        stop_apache
        local ours
        ours=$(tail -n +"$((from + 1))" "$T/error.log" | grep -cE "$nostore_allow")
        if [ "$ours" -ge 1 ]; then
            pass "missing store: error.log names the store ($(tail -n +"$((from + 1))" "$T/error.log" | grep -E "$nostore_allow" | head -1 | sed 's/.*\] //' | cut -c1-120))"
        else
            fail "missing store: no [micropay:error] MPnnnnn line in error.log"
        fi
        check_log "missing store" "$from" "$nostore_allow" "$afrom"
    else
        fail "start with an empty store directory: $(tail -n 5 "$T/error.log"; tail -n 3 "$T/apache.out")"
    fi

    # MaxRequestWorkers above LMDB's former fixed 1,024 reader slots (event):
    # the reader table is sized from the MPM (ServerLimit x ThreadsPerChild
    # + 64), said at start (MP00149), and the store's lock file has the room
    if [ "$mpm" = event ]; then
        local conf4=$T/httpd-readers.conf want=$((60 * 25 + 64)) lsz
        gen_conf "$conf4" "$T/store" "$T/vendor.secrets" "$T/error.log"
        sed -i -e 's/^    ServerLimit 4$/    ServerLimit 60/' \
            -e 's/^    MaxRequestWorkers 100$/    MaxRequestWorkers 1500/' "$conf4"
        from=$(log_lines "$T/error.log"); afrom=$(log_lines "$T/apache.out")
        if start_apache "$conf4"; then
            pass "start with MaxRequestWorkers 1500 (ServerLimit 60, ThreadsPerChild 25)"
            if tail -n +"$((from + 1))" "$T/error.log" |
                grep -qE "\[micropay:info\].* MP00149: payment store [^ ]+/store: LMDB reader table of $want slots \(60 processes x 25 threads"; then
                pass "MaxRequestWorkers 1500: MP00149 states $want reader slots"
            else
                fail "MaxRequestWorkers 1500: no MP00149 line stating $want reader slots: $(grep MP00149 "$T/error.log" | tail -n 1)"
            fi
            lsz=$(stat -c %s "$T/store/lock.mdb")
            if [ "$lsz" -ge $(((want - 1) * 64)) ]; then
                pass "MaxRequestWorkers 1500: the lock file holds $want readers ($lsz bytes)"
            else
                fail "MaxRequestWorkers 1500: the lock file is $lsz bytes, < $(((want - 1) * 64)) for $want readers"
            fi
            run_client "MaxRequestWorkers 1500: payments" replay
            stop_apache
            check_log "MaxRequestWorkers 1500" "$from" "" "$afrom"
        else
            fail "start with MaxRequestWorkers 1500: $(tail -n 5 "$T/error.log"; tail -n 3 "$T/apache.out")"
        fi
    fi

    # The series change is minted in (3, the newest) retires while the server
    # runs: payments that need change go on, their change minted in series 2
    # (MP00150), not 500 until a restart. Waits for a wall-clock moment.
    # (Series 1 is where it_client mints the customers' scrip.)
    local sfr=$T/secrets-retire conf5=$T/httpd-retire.conf retire
    retire=$(($(date +%s) + 6))
    { cat "$T/vendor.secrets"
      echo "scrip 3 $(printf 'mp-it scrip 3' | sha256sum | cut -c1-64) retire=$retire"; } >"$sfr"
    chmod 600 "$sfr"
    gen_conf "$conf5" "$T/store" "$sfr" "$T/error.log"
    from=$(log_lines "$T/error.log"); afrom=$(log_lines "$T/apache.out")
    if start_apache "$conf5"; then
        pass "start with scrip series 3 retiring at $retire"
        while [ "$(date +%s)" -le "$retire" ]; do sleep 0.2; done
        MP_IT_CHANGE_SERIES=2 run_client "series 3 retired: change minted in series 2, and it spends" change
        if tail -n +"$((from + 1))" "$T/error.log" |
            grep -qE "\[micropay:info\].* MP00150: vendor news\.example: change series 3 retired; change is minted in series 2"; then
            pass "series 3 retired: MP00150 says change moved to series 2"
        else
            fail "series 3 retired: no MP00150 line for news.example"
        fi
        stop_apache
        check_log "change series retired" "$from" "" "$afrom"
    else
        fail "start with scrip series 3 retiring: $(tail -n 5 "$T/error.log"; tail -n 3 "$T/apache.out")"
    fi
    # Every own series retired (1 is a broker's here): MP00151 once, the
    # exact price still pays, a payment that needs change gets 500.
    retire=$(($(date +%s) + 6))
    sed -e '/^scrip 1 /s/$/ delegated/' -e "/^scrip 2 /s/\$/ retire=$retire/" "$T/vendor.secrets" >"$sfr"
    chmod 600 "$sfr"
    from=$(log_lines "$T/error.log"); afrom=$(log_lines "$T/apache.out")
    if start_apache "$conf5"; then
        while [ "$(date +%s)" -le "$retire" ]; do sleep 0.2; done
        MP_IT_CHANGE_SERIES=0 run_client "every own series retired: exact price paid, change 500" change
        stop_apache
        local n151
        n151=$(tail -n +"$((from + 1))" "$T/error.log" | grep -cE "\[micropay:error\].* MP00151: vendor news\.example: every scrip series")
        # once per process that saw a payment (prefork: each child)
        if [ "$n151" -ge 1 ] && [ "$n151" -le 2 ]; then
            pass "every own series retired: MP00151 logged ($n151)"
        else
            fail "every own series retired: $n151 MP00151 lines, want 1 or 2"
        fi
        check_log "every own series retired" "$from" 'MP00151: |MP00028: payment for /paid/b\.html failed' "$afrom"
    else
        fail "start with every own series retiring: $(tail -n 5 "$T/error.log"; tail -n 3 "$T/apache.out")"
    fi

    # The receipt secret rotated (receipt 2 added, which stamps from now on):
    # a receipt stamped under receipt 1 still opens its page while receipt 1
    # retires (retire= in the future), not once it has retired or its line
    # is gone, and never when its line says no end (kept): an old secret
    # without an end would forge receipts for ever.
    local r2 rcase sfx conf6=$T/httpd-receipt.conf
    r2=$(printf 'mp-it receipt 2' | sha256sum | cut -c1-64)
    for rcase in retiring:200 kept:forged retired:forged gone:forged; do
        sfx=$T/secrets-receipt-${rcase%%:*}
        case ${rcase%%:*} in
        retiring) { sed -e "/^receipt 1 /s/\$/ retire=$(($(date +%s) + 600))/" "$T/vendor.secrets"
                    echo "receipt 2 $r2"; } >"$sfx" ;;
        kept) { cat "$T/vendor.secrets"; echo "receipt 2 $r2"; } >"$sfx" ;;
        retired) { sed -e "/^receipt 1 /s/\$/ retire=$(($(date +%s) - 1))/" "$T/vendor.secrets"
                   echo "receipt 2 $r2"; } >"$sfx" ;;
        gone) { grep -v '^receipt 1 ' "$T/vendor.secrets"; echo "receipt 2 $r2"; } >"$sfx" ;;
        esac
        chmod 600 "$sfx"
        gen_conf "$conf6" "$T/store" "$sfx" "$T/error.log"
        from=$(log_lines "$T/error.log"); afrom=$(log_lines "$T/apache.out")
        if start_apache "$conf6"; then
            MP_IT_RECEIPT_WANT=${rcase#*:} run_client \
                "receipt secret rotated, receipt 1 ${rcase%%:*}: its receipt gets ${rcase#*:}" receipt-prev
            stop_apache
            check_log "receipt secret rotated, receipt 1 ${rcase%%:*}" "$from" "" "$afrom"
        else
            fail "start with receipt 1 ${rcase%%:*}: $(tail -n 5 "$T/error.log"; tail -n 3 "$T/apache.out")"
        fi
    done

    # secrets file readable by group/other: configtest and start must fail
    local mode
    for mode in 0644 0640; do
        local sf=$T/secrets-$mode conf3=$T/httpd-$mode.conf el=$T/error-$mode.log
        cp "$T/vendor.secrets" "$sf"
        chmod "$mode" "$sf"
        gen_conf "$conf3" "$T/store" "$sf" "$el"
        local out rc
        out=$("$APACHE2" -t -f "$conf3" 2>&1)
        rc=$?
        if [ $rc != 0 ] && echo "$out" | grep -q "$sf"; then
            pass "secrets mode $mode: apache2 -t fails ($(echo "$out" | grep "$sf" | head -1 | cut -c1-140))"
        else
            fail "secrets mode $mode: apache2 -t exit $rc, output: $(echo "$out" | head -3)"
        fi
        : >"$T/apache.out.$mode"
        setsid "$APACHE2" -f "$conf3" -DFOREGROUND >"$T/apache.out.$mode" 2>&1 &
        local bpid=$!
        if wait_exit "$bpid" 10; then
            wait "$bpid" 2>/dev/null
            if cat "$T/apache.out.$mode" "$el" 2>/dev/null | grep -q "$sf"; then
                pass "secrets mode $mode: start refused ($(cat "$T/apache.out.$mode" "$el" 2>/dev/null | grep "$sf" | head -1 | sed 's/.*\] //' | cut -c1-140))"
            else
                fail "secrets mode $mode: start refused without naming $sf: $(cat "$T/apache.out.$mode" "$el" 2>/dev/null | tail -n 3)"
            fi
        else
            fail "secrets mode $mode: apache2 started with a group/other-readable secrets file"
            apid=$bpid
            stop_apache
        fi
    done
}

for mpm in $mpms; do
    mpm_t0=$(date +%s)
    run_mpm
    if [ -n "$apid" ]; then stop_apache; fi
    note "done in $(($(date +%s) - mpm_t0)) s"
done
mpm=all
echo "total time $(($(date +%s) - t0)) s"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
