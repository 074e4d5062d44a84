# scripts/system.sh - the whole system on loopback, sourced (bash) by the
# demo, the wallet integration test, the browser test and the wallet
# benchmark, so that all four run the same thing:
#
#   Apache (Debian's apache2, event MPM) with mod_micropay:
#     $port   news.example  /paid/  0.01 USD, Millicent and PayWord (unit 0.005)
#                           /dear/  0.50 USD, Millicent (above the wallet's threshold)
#             shop.example  /paid/  0.02 USD, PayWord only (unit 0.01)
#     $bport  broker.example /mp    the broker (plain HTTP on loopback: tests only)
#   a customer account "alice" credited 10.00 USD,
#   wallet-proxy on $wport, in front of it all, with alice's account key.
#
# The caller sets T (an empty temp dir, mode 755), BUILD (a build directory
# with the module, mpadmin and wallet-proxy), APACHE2, sources
# tests/integration/lib.sh, and calls sys_setup, then sys_wallet_start. Every
# function returns non-zero with a message on stderr on failure; sys_stop
# stops what was started, by PID. Ports are picked free; all bind 127.0.0.1.

sys_mpadmin() { "$BUILD/tools/mpadmin" "$@"; }

sys_page() {    # sys_page FILE TITLE TEXT
    printf '<!doctype html><html><head><meta charset="utf-8"><title>%s</title></head><body><h1>%s</h1><p>%s</p></body></html>\n' \
        "$2" "$2" "$3" >"$1"
}

sys_site() {    # sys_site VENDOR: the sample content
    local d=$T/htdocs/$1 i
    mkdir -p "$d/paid" "$d/dear" "$d/plain"
    {
        printf '<!doctype html><html><head><meta charset="utf-8"><title>%s</title></head><body>\n' "$1"
        printf '<h1>%s</h1><p>Free front page.</p><ul>\n' "$1"
        for i in 1 2 3; do printf '<li><a href="/paid/a%s.html">paid article %s</a></li>\n' "$i" "$i"; done
        printf '<li><a href="/dear/report.html">dear report</a></li></ul></body></html>\n'
    } >"$d/index.html"
    for i in 1 2 3 4 5 6 7 8; do
        sys_page "$d/paid/a$i.html" "$1 article $i" "Paid article $i of $1: the content you paid for."
    done
    sys_page "$d/dear/report.html" "$1 report" "An expensive report."
    sys_page "$d/plain/a1.html" "$1 plain article" "Paid where PayWord is for TLS only."
    # a page whose parts (four paid images) load in parallel
    {
        printf '<!doctype html><html><head><meta charset="utf-8"><title>%s gallery</title></head><body><h1>Gallery</h1>\n' "$1"
        for i in 1 2 3 4; do printf '<img src="/paid/img%s.svg" width="80" height="80" alt="image %s">\n' "$i" "$i"; done
        printf '<p id="done">Paid gallery of %s.</p></body></html>\n' "$1"
    } >"$d/paid/gallery.html"
    for i in 1 2 3 4; do
        printf '<svg xmlns="http://www.w3.org/2000/svg" width="80" height="80"><rect width="80" height="80" fill="#%s"/></svg>\n' \
            "$(printf '%02x%02x%02x' $((i * 50)) 120 $((250 - i * 50)))" >"$d/paid/img$i.svg"
    done
    head -c 4000000 /dev/urandom >"$d/big.bin"
}

sys_vhost() {    # sys_vhost NAME SCHEMES PRICE UNIT
    cat <<EOV
<VirtualHost 127.0.0.1:$port>
    ServerName $1.example
    DocumentRoot "$T/htdocs/$1"
    MicropayVendor $1.example
    MicropaySecretsFile "$T/$1.secrets"
    MicropayStore "$T/$1-store"
    MicropayTrustBroker broker.example "$T/broker.pem.pub"
    MicropayBrokerURL https://broker.example/mp/
    <Directory "$T/htdocs/$1">
        Require all granted
    </Directory>
    ScriptAlias /cgi/ "$T/cgi/"
    <Directory "$T/cgi">
        Require all granted
    </Directory>
    Redirect 302 /old.html /index.html
    <Directory "$T/htdocs/$1/paid">
        Micropay on
        MicropayPrice "$3"
        MicropaySchemes $2
        MicropayPayWordUnit "$4"
        MicropayReceiptWindow 600
        # loopback sample sites are plain http: PayWord needs this (MP00147 warns)
        MicropayPayWordOverHTTP on
    </Directory>
    # as paid/, without MicropayPayWordOverHTTP: on plain http the offer
    # lists Millicent only (a PayWord-only site cannot sell here: 500)
    <Directory "$T/htdocs/$1/plain">
        Micropay on
        MicropayPrice "$3"
        MicropaySchemes $2
        MicropayPayWordUnit "$4"
    </Directory>
    <Directory "$T/htdocs/$1/dear">
        Micropay on
        MicropayPrice "0.50 USD"
        MicropaySchemes millicent
        MicropayReceiptWindow 600
    </Directory>
</VirtualHost>
EOV
}

# The start-up warning of each vendor server that allows PayWord over plain
# http (the sample sites do): callers leave it out of their error-log checks.
sys_log_allow='\[micropay:warn\].* MP00147: vendor [a-z.]+: MicropayPayWordOverHTTP On: '

sys_ready() {
    curl -s -o /dev/null --noproxy '*' --max-time 2 "http://127.0.0.1:$port/" &&
        curl -s -o /dev/null --noproxy '*' --max-time 2 "http://127.0.0.1:$bport/"
}

# Keys, stores, the account, the sites, the Apache configuration; starts Apache.
sys_setup() {
    local moddir v
    moddir=$(apxs -q LIBEXECDIR 2>/dev/null || echo /usr/lib/apache2/modules)
    mkdir -p "$T/keys" "$T/run" "$T/htdocs/broker" "$T/cgi" || return 1
    # echoes what it got; no Content-Length, so Apache answers chunked
    cat >"$T/cgi/echo" <<'EOS'
#!/bin/sh
sum=$(cat | sha256sum | cut -c1-64)
printf 'Content-Type: text/plain\r\n\r\n'
printf 'method=%s\nlength=%s\nsha256=%s\n' "$REQUEST_METHOD" "${CONTENT_LENGTH:-}" "$sum"
EOS
    # 402 answers a wallet must refuse to pay: a malformed offer, and a real
    # offer replayed for another target (the test writes it to offer.hdr)
    cat >"$T/cgi/bad402" <<'EOS'
#!/bin/sh
printf 'Status: 402 Payment Required\r\nWWW-Authenticate: Payment realm="news.example", offer="AAECAwQ"\r\n'
printf 'Content-Type: text/plain\r\n\r\npay me\n'
EOS
    cat >"$T/cgi/stolen402" <<'EOS'
#!/bin/sh
printf 'Status: 402 Payment Required\r\n%s\r\nContent-Type: text/plain\r\n\r\npay me\n' \
    "$(cat "$(dirname "$0")/offer.hdr" 2>/dev/null)"
EOS
    chmod 755 "$T/cgi/echo" "$T/cgi/bad402" "$T/cgi/stolen402"
    printf 'broker\n' >"$T/htdocs/broker/index.html"
    # evil.example: another host whose offers claim to come from news.example
    for v in news shop evil; do
        sys_site "$v"
        sys_mpadmin keys vendor "$T/$v.secrets" >/dev/null &&
            sys_mpadmin keys delegate "$T/$v.secrets" "$T/$v.deleg" >/dev/null &&
            sys_mpadmin store init "$T/$v-store" --owner www-data >/dev/null || return 1
    done
    sys_mpadmin keys broker "$T/broker.pem" >/dev/null &&
        sys_mpadmin keys broker-secrets "$T/broker.secrets" >/dev/null &&
        sys_mpadmin broker init "$T/bstore" --owner www-data >/dev/null &&
        sys_mpadmin accounts create "$T/bstore" alice --customer --currency USD \
            --secrets "$T/broker.secrets" --key-out "$T/keys/alice.key" >/dev/null &&
        sys_mpadmin accounts credit "$T/bstore" alice "10.00 USD" >/dev/null || return 1
    port=$(free_port) && bport=$(free_port) || return 1
    while [ "$bport" = "$port" ]; do bport=$(free_port); done
    cat >"$T/httpd.conf" <<EOF
# generated by scripts/system.sh
ServerRoot "$T"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
Listen 127.0.0.1:$bport
PidFile "$T/run/httpd.pid"
DefaultRuntimeDir "$T/run"
Mutex file:$T/run default
ErrorLog "$T/error.log"
LogFormat "%v %m %U%q %>s" mp
CustomLog "$T/access.log" mp
LogLevel warn micropay:info
User www-data
Group www-data
LoadModule mpm_event_module $moddir/mod_mpm_event.so
LoadModule authz_core_module $moddir/mod_authz_core.so
LoadModule mime_module $moddir/mod_mime.so
LoadModule dir_module $moddir/mod_dir.so
LoadModule alias_module $moddir/mod_alias.so
LoadModule cgid_module $moddir/mod_cgid.so
ScriptSock "$T/run/cgid.sock"
LoadModule micropay_module $BUILD/mod_micropay/.libs/mod_micropay.so
StartServers 2
ServerLimit 4
ThreadsPerChild 32
MinSpareThreads 32
MaxSpareThreads 96
MaxRequestWorkers 128
KeepAlive On
KeepAliveTimeout 5
Timeout 30
LimitRequestFieldSize 16384
DirectoryIndex index.html
TypesConfig /dev/null
AddType text/html .html
AddType image/svg+xml .svg
AddType application/octet-stream .bin
<Directory />
    AllowOverride None
    Require all denied
</Directory>
$(sys_vhost news "millicent payword" "0.01 USD" "0.005 USD")
$(sys_vhost shop "payword" "0.02 USD" "0.01 USD")
$(sys_vhost evil "millicent" "0.01 USD" "0.01 USD" | sed -e 's/MicropayVendor evil.example/MicropayVendor news.example/')
<VirtualHost 127.0.0.1:$bport>
    ServerName broker.example
    DocumentRoot "$T/htdocs/broker"
    <Directory "$T/htdocs/broker">
        Require all granted
    </Directory>
    MicropayBrokerName broker.example
    MicropayBrokerStore "$T/bstore"
    MicropayBrokerSecretsFile "$T/broker.secrets"
    MicropayBrokerSigningKey "$T/broker.pem"
    MicropayBrokerVendor news.example "$T/news.deleg"
    MicropayBrokerVendor shop.example "$T/shop.deleg"
    MicropayBrokerRequireTLS off
    <Location /mp>
        SetHandler micropay-broker
    </Location>
</VirtualHost>
EOF
    if ! "$APACHE2" -t -f "$T/httpd.conf" >"$T/configtest.out" 2>&1; then
        echo "system.sh: apache2 -t failed: $(tail -n 5 "$T/configtest.out")" >&2
        return 1
    fi
    : >"$T/apache.out"
    apache_ready() { sys_ready; }
    if ! start_apache "$T/httpd.conf"; then
        echo "system.sh: apache2 did not start: $(tail -n 5 "$T/apache.out"; tail -n 5 "$T/error.log" 2>/dev/null)" >&2
        return 1
    fi
    return 0
}

# sys_wallet_conf: the wallet's configuration file, $T/$WNAME.conf (WNAME
# defaults to "wallet"; another name makes a second, independent wallet).
sys_wallet_conf() {
    local n=${WNAME:-wallet}
    cat >"$T/$n.conf" <<EOF
# generated by scripts/system.sh
Listen 127.0.0.1:0
PortFile $T/$n.port
PidFile $T/$n.pid
StateDir $T/$n
BrokerURL http://127.0.0.1:$bport/mp
Account alice
AccountKeyFile $T/keys/alice.key
Resolve news.example:$port:127.0.0.1
Resolve shop.example:$port:127.0.0.1
Resolve evil.example:$port:127.0.0.1
ConnectPort 443
ConnectPort $port
Threshold 0.10 USD
SiteBudget 1.00 USD
DailyBudget 5.00 USD
Topup 1.00 USD
# PayWord is for TLS (PROTOCOL.md 9); these sample sites are plain http on loopback
PayWordOverHTTP on
LogLevel info
LogFile $T/$n.log
EOF
}

# sys_wallet_start [EXTRA ARGS]: starts wallet-proxy in the background (wpid),
# waits for its port ($wport, kept across restarts). 0 once it answers.
sys_wallet_start() {
    local n=${WNAME:-wallet}
    [ -f "$T/$n.conf" ] || sys_wallet_conf
    rm -f "$T/$n.port"
    "$BUILD/wallet-proxy/wallet-proxy" -c "$T/$n.conf" "$@" >>"$T/$n.out" 2>&1 &
    wpid=$!
    local k=150
    while [ $k -gt 0 ]; do
        if ! kill -0 "$wpid" 2>/dev/null; then
            wait "$wpid" 2>/dev/null
            echo "system.sh: wallet-proxy exited: $(tail -n 5 "$T/$n.out")" >&2
            wpid=""
            return 1
        fi
        if [ -s "$T/$n.port" ]; then
            wport=$(cat "$T/$n.port")
            if curl -s -o /dev/null --noproxy '*' --max-time 2 "http://127.0.0.1:$wport/proxy.pac"; then
                # later starts reuse the port, so a browser set up once keeps working
                sed -i "s/^Listen .*/Listen 127.0.0.1:$wport/" "$T/$n.conf"
                return 0
            fi
        fi
        sleep 0.1
        k=$((k - 1))
    done
    echo "system.sh: wallet-proxy did not answer within 15 s" >&2
    return 1
}

sys_wallet_stop() {    # TERM, then KILL after 10 s
    [ -n "${wpid:-}" ] || return 0
    kill -TERM "$wpid" 2>/dev/null
    if ! wait_exit "$wpid" 10; then
        kill -KILL "$wpid" 2>/dev/null
        wait_exit "$wpid" 5
    fi
    wpid=""
}

sys_wallet_kill9() {
    [ -n "${wpid:-}" ] || return 0
    { kill -KILL "$wpid"; wait_exit "$wpid" 5; } 2>/dev/null
    wpid=""
}

sys_stop() {
    sys_wallet_stop
    stop_apache
}

# sys_fetch URL [CURL ARGS]: through the wallet; body on stdout.
sys_fetch() {
    local url=$1
    shift
    curl -s --max-time 30 -x "http://127.0.0.1:$wport" "$@" "$url"
}

# sys_money: units in alice's account (balance + reserved) at the broker.
sys_account_units() {
    sys_mpadmin --json accounts show "$T/bstore" alice | jq -r '.balance_units + .reserved_units'
}
