#!/bin/bash
# tests/integration/run_price.sh [BUILD_DIR]
#
# The price table against every spelling of one resource (docs/mod_micropay.md,
# "The price table"). The whole DocumentRoot is paid at MicropayPrice 0.01 USD;
# mpadmin price set gives /api/ 1.00 USD (a tree of CGI scripts echoing
# PATH_INFO), /api/exact.cgi 2.00 USD, /docs/page.html 1.50 USD (a static
# file), /ext/ 3.00 USD (an Alias outside the DocumentRoot). Every URL that
# reaches one of those resources must be offered at its table price, never
# at the directory's 0.01 USD:
#   path info (/api/echo.cgi/%20, /api/echo.cgi/x, trailing slash), dot
#   segments, percent-encoding (/%61pi/), double slashes, ';' parameters,
#   %2F under AllowEncodedSlashes On, case (404 on a case-sensitive
#   filesystem: another, missing resource; a case-variant symlink finds the
#   entry), an Alias into the tree, a symlink, mod_rewrite (server context
#   [PT], to a file path, and a per-directory internal redirect), a long path.
# Entries are written in other spellings (/%61pi//, /docs/./x/../page%2Ehtml)
# and must be stored as the keys the module looks up; mpadmin refuses paths
# that cannot be keys. A second port runs AllowEncodedSlashes NoDecode and
# MergeSlashes Off.
# A lookup that fails gives 500, never the directory's price: a corrupt
# table entry (written with mdb_load into the store of a third port, so that
# the other ports' store stays sound; the startup check of the store finds
# it and keeps the store closed, MP00013/MP00021) and a file whose key is
# longer than the table can look up (MP00040).
#
# BUILD_DIR defaults to ../../build/release (module, tools/mpadmin). Env:
# MP_IT_MPMS ("prefork event"), MP_IT_KEEP=1 keeps the temp dirs, APACHE2.
# Needs root (User www-data), curl, jq, mdb_load (lmdb-utils). Servers bind
# 127.0.0.1 on free ports and are stopped by PID. Output: PASS/FAIL per check,
# last line "N passed, M failed".
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/integration/lib.sh
. "$here/lib.sh"
build=${1:-$here/../../build/release}
if ! build=$(cd "$build" 2>/dev/null && pwd); then
    echo "run_price.sh: build directory ${1:-$here/../../build/release} not found" >&2
    exit 2
fi
module=$build/mod_micropay/.libs/mod_micropay.so
mpadmin=$build/tools/mpadmin
APACHE2=${APACHE2:-$(command -v apache2 || echo /usr/sbin/apache2)}
moddir=$(apxs -q LIBEXECDIR 2>/dev/null || echo /usr/lib/apache2/modules)
mpms=${MP_IT_MPMS:-prefork event}

for f in "$module" "$mpadmin" "$APACHE2"; do
    if [ ! -f "$f" ]; then
        echo "run_price.sh: missing $f" >&2
        exit 2
    fi
done
for t in curl jq mdb_load; do
    command -v "$t" >/dev/null || { echo "run_price.sh: needs $t" >&2; exit 2; }
done
if [ "$(id -u)" != 0 ]; then
    echo "run_price.sh: must run as root (Apache switches to www-data)" >&2
    exit 2
fi

npass=0
nfail=0
apid=""
tmpdirs=()
mpm=setup

pass() { npass=$((npass + 1)); echo "PASS [$mpm] $*"; }
fail() { nfail=$((nfail + 1)); echo "FAIL [$mpm] $*"; }
note() { echo "     [$mpm] $*"; }

apache_ready() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/free.html"; }

cleanup() {
    if [ -n "$apid" ]; then stop_apache; fi
    if [ "${MP_IT_KEEP:-0}" = 1 ] || [ "$nfail" -gt 0 ]; then
        [ ${#tmpdirs[@]} -gt 0 ] && echo "temp dirs kept: ${tmpdirs[*]}"
    else
        for d in "${tmpdirs[@]}"; do rm -rf "$d"; done
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

VENDOR=news.example
# units of 1/100000 USD
DIR_UNITS=1000          # MicropayPrice 0.01 USD
API_UNITS=100000        # /api/          1.00 USD
EXACT_UNITS=200000      # /api/exact.cgi 2.00 USD
PAGE_UNITS=150000       # /docs/page.html 1.50 USD
EXT_UNITS=300000        # /ext/          3.00 USD

# The name of a directory 200 bytes long: 100 times U+00E9 in UTF-8, which
# is 600 bytes in a key (%C3%A9 each).
long_name() { printf '\xc3\xa9%.0s' $(seq 1 100); }

write_site() {
    local h=$T/htdocs d
    mkdir -p "$h/api" "$h/docs" "$h/bad" "$h/old" "$T/outside" "$T/run"
    printf '<html><body><p>FREE</p></body></html>\n' >"$h/free.html"
    printf '<html><body><p>PAGE-CONTENT</p></body></html>\n' >"$h/docs/page.html"
    printf '<html><body><p>PAGE-CONTENT</p></body></html>\n' >"$h/docs/other.html"
    cat >"$h/api/echo.cgi" <<'EOF'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "CGI-CONTENT"
echo "SCRIPT_NAME=$SCRIPT_NAME"
echo "PATH_INFO=$PATH_INFO"
EOF
    chmod 755 "$h/api/echo.cgi"
    cp -p "$h/api/echo.cgi" "$h/api/exact.cgi"
    cp -p "$h/api/echo.cgi" "$h/bad/echo.cgi"
    cp -p "$h/api/echo.cgi" "$T/outside/echo.cgi"
    # same files, other names
    ln -s api "$h/link"
    ln -s docs "$h/DOCS"
    # a file whose key (7 levels of 600 bytes) is longer than any key the
    # table can look up, reached by a short URL through a symlink
    d=$h/api/deep
    for _ in 1 2 3 4 5 6 7; do d=$d/$(long_name); done
    mkdir -p "$d"
    cp -p "$h/api/echo.cgi" "$d/echo.cgi"
    ln -s "${d#"$h/api/"}" "$h/api/d"
    chmod 755 "$T"
    chmod -R a+rX "$h" "$T/outside"
}

# gen_conf FILE
gen_conf() {
    local cgi
    if [ "$mpm" = prefork ]; then
        cgi="LoadModule cgi_module $moddir/mod_cgi.so"
    else
        cgi="LoadModule cgid_module $moddir/mod_cgid.so
ScriptSock $T/run/cgid.sock"
    fi
    cat >"$1" <<EOF
# generated by tests/integration/run_price.sh
ServerRoot "$T"
ServerName 127.0.0.1:$port
Listen 127.0.0.1:$port
Listen 127.0.0.1:$port2
Listen 127.0.0.1:$port3
PidFile "$T/run/httpd.pid"
DefaultRuntimeDir "$T/run"
Mutex file:$T/run default
ErrorLog "$T/error.log"
LogLevel warn micropay:info
User www-data
Group www-data

LoadModule mpm_${mpm}_module $moddir/mod_mpm_${mpm}.so
LoadModule authz_core_module $moddir/mod_authz_core.so
LoadModule mime_module $moddir/mod_mime.so
LoadModule alias_module $moddir/mod_alias.so
LoadModule rewrite_module $moddir/mod_rewrite.so
$cgi
LoadModule micropay_module $module
LoadModule dir_module $moddir/mod_dir.so

<IfModule mpm_prefork_module>
    StartServers 2
    MinSpareServers 2
    MaxSpareServers 4
    MaxRequestWorkers 16
</IfModule>
<IfModule mpm_event_module>
    StartServers 1
    ServerLimit 2
    ThreadsPerChild 16
    MinSpareThreads 16
    MaxSpareThreads 32
    MaxRequestWorkers 32
</IfModule>
TypesConfig /dev/null
AddType text/html .html
DirectoryIndex index.html
AllowEncodedSlashes On

LogFormat "%>s|%m|%U|%f|%{micropay-price-key}n" pit
CustomLog "$T/access.log" pit

MicropayVendor $VENDOR
MicropaySecretsFile "$T/vendor.secrets"
MicropayStore "$T/store"

DocumentRoot "$T/htdocs"
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "$T/htdocs">
    Require all granted
    Options FollowSymLinks
    Micropay on
    MicropayPrice "0.01 USD"
</Directory>
<Files "free.html">
    Micropay off
</Files>
<Directory "$T/htdocs/api">
    Options +ExecCGI
    SetHandler cgi-script
</Directory>
<Directory "$T/htdocs/bad">
    Options +ExecCGI
    SetHandler cgi-script
</Directory>
# per-directory rewrite: an internal redirect to the same script
<Directory "$T/htdocs/old">
    RewriteEngine On
    RewriteRule ^(.*)\$ /api/\$1 [L]
</Directory>
# outside the DocumentRoot, priced by its alias's URL
Alias /ext/ "$T/outside/"
<Directory "$T/outside">
    Require all granted
    Options +ExecCGI
    SetHandler cgi-script
    Micropay on
    MicropayPrice "0.01 USD"
</Directory>
# an Alias into the tree: the same files under another URL
Alias /alt/ "$T/htdocs/api/"

RewriteEngine On
RewriteRule ^/rw/(.*)\$ /api/\$1 [PT]
RewriteRule ^/rwfs/(.*)\$ $T/htdocs/api/\$1

<VirtualHost 127.0.0.1:$port2>
    ServerName nodecode.invalid
    AllowEncodedSlashes NoDecode
    MergeSlashes Off
    RewriteEngine On
    RewriteOptions Inherit
</VirtualHost>
<VirtualHost 127.0.0.1:$port3>
    ServerName badstore.invalid
    MicropayStore "$T/badstore"
</VirtualHost>
EOF
}

# req PORT TARGET [METHOD]: sets code and body (curl sends TARGET as is)
req() {
    local out
    out=$(curl -s --path-as-is --max-time 10 -X "${3:-GET}" -o - -w '\n%{http_code}' \
        "http://127.0.0.1:$1$2")
    code=${out##*$'\n'}
    body=${out%$'\n'*}
}

# TARGET for a message: long ones shortened
shown() { if [ ${#1} -gt 72 ]; then echo "${1:0:40}...(${#1} bytes)"; else echo "$1"; fi; }

# offer PORT TARGET UNITS WHAT: a 402 whose JSON offer has price_units UNITS
offer() {
    local port=$1 want=$3 what=$4 got target
    req "$port" "$2"
    target=$(shown "$2")
    got=$(jq -r 'if type == "object" then "\(.price) (\(.price_units) units)" else "?" end' \
        <<<"$body" 2>/dev/null)
    if [ "$code" = 402 ] && jq -e ".price_units == $want and .currency == \"USD\"" <<<"$body" >/dev/null 2>&1; then
        pass "$what: $target offered at $got"
    elif [ "$code" = 402 ]; then
        fail "$what: $target offered at $got, want $want units"
    else
        fail "$what: $target answered $code, want 402 at $want units: $(head -c 200 <<<"$body")"
    fi
}

# status PORT TARGET CODE WHAT: answered CODE, and never with the content
status() {
    local port=$1 want=$3 what=$4 target
    req "$port" "$2"
    target=$(shown "$2")
    if [ "$code" = "$want" ] && ! grep -qE 'CGI-CONTENT|PAGE-CONTENT' <<<"$body"; then
        pass "$what: $target answered $code"
    else
        fail "$what: $target answered $code, want $want: $(head -c 200 <<<"$body")"
    fi
}

# Lines of the error log at warn or worse, minus those matching $1.
bad_log_lines() {
    [ -f "$T/error.log" ] || return 0
    grep -E '\[([a-z0-9_]+:)?(warn|error|crit|alert|emerg)\]' "$T/error.log" "$T/apache.out" |
        grep -vE "$1" || true
}

run_mpm() {
    local p1 p2 p3 hex
    T=$(mktemp -d /tmp/mp-price-"$mpm".XXXXXX)
    tmpdirs+=("$T")
    port=$(free_port)
    port2=$(free_port)
    while [ "$port2" = "$port" ]; do port2=$(free_port); done
    port3=$(free_port)
    while [ "$port3" = "$port" ] || [ "$port3" = "$port2" ]; do port3=$(free_port); done
    note "temp dir $T, ports $port (AllowEncodedSlashes On), $port2 (NoDecode, MergeSlashes Off), $port3 (corrupt store)"
    : >"$T/apache.out"

    if "$mpadmin" keys vendor "$T/vendor.secrets" >"$T/setup.out" 2>&1 \
        && "$mpadmin" store init "$T/store" --owner www-data >>"$T/setup.out" 2>&1 \
        && "$mpadmin" store init "$T/badstore" --owner www-data >>"$T/setup.out" 2>&1; then
        pass "setup: vendor secrets and two stores (mpadmin)"
    else
        fail "setup: $(tail -n 3 "$T/setup.out")"
        return
    fi
    # entries in any spelling are stored as the key of the path they name
    local e ok=1 list
    for e in "/%61pi// 1.00 USD" "/api/exact.cgi 2.00 USD" "/docs/./x/../page%2Ehtml 1.50 USD" \
             "/ext/ 3.00 USD"; do
        # shellcheck disable=SC2086
        set -- $e
        "$mpadmin" price set "$T/store" "$VENDOR" "$1" "$2 $3" >>"$T/setup.out" 2>&1 || ok=0
    done
    "$mpadmin" price set "$T/badstore" "$VENDOR" /bad/ "4.00 USD" >>"$T/setup.out" 2>&1 || ok=0
    if [ $ok = 1 ]; then pass "mpadmin price set: 5 entries"; else fail "mpadmin price set: $(tail -n 3 "$T/setup.out")"; fi
    list=$("$mpadmin" --json price list "$T/store" "$VENDOR" 2>&1)
    if jq -e '[.[].path] == ["/api/", "/api/exact.cgi", "/docs/page.html", "/ext/"]' <<<"$list" >/dev/null 2>&1; then
        pass "mpadmin price list: /%61pi// and /docs/./x/../page%2Ehtml stored as /api/ and /docs/page.html"
    else
        fail "mpadmin price list: $(head -c 300 <<<"$list")"
    fi
    for e in /a%2Fb /a%zz '/a?b' /../x "/$(printf 'x%.0s' $(seq 1 500))"; do
        "$mpadmin" price set "$T/store" "$VENDOR" "$e" "1 USD" >/dev/null 2>"$T/mpadmin.err"
        if [ $? = 2 ]; then
            pass "mpadmin price set $(shown "$e"): refused ($(cut -c1-90 "$T/mpadmin.err"))"
        else
            fail "mpadmin price set $(shown "$e"): not refused with exit 2"
        fi
    done

    # /bad/'s value in the third port's store made 4 bytes long, behind the
    # store's back: a lookup that reads it fails
    hex=$(printf '%s\0/bad/' "$VENDOR" | od -An -v -tx1 | tr -d ' \n')
    printf 'VERSION=3\nformat=bytevalue\ndatabase=prices\ntype=btree\nHEADER=END\n %s\n 55534400\nDATA=END\n' \
        "$hex" >"$T/corrupt.dump"
    if mdb_load -s prices -f "$T/corrupt.dump" "$T/badstore" >>"$T/setup.out" 2>&1; then
        pass "mdb_load: the entry of /bad/ corrupted"
    else
        fail "mdb_load: $(tail -n 3 "$T/setup.out")"
    fi
    chown -R www-data:www-data "$T/badstore"

    write_site
    gen_conf "$T/httpd.conf"
    if "$APACHE2" -t -f "$T/httpd.conf" >"$T/configtest.out" 2>&1; then
        pass "apache2 -t"
    else
        fail "apache2 -t: $(tail -n 5 "$T/configtest.out")"
        return
    fi
    if start_apache "$T/httpd.conf"; then
        pass "start (pid $apid)"
    else
        fail "start: $(tail -n 5 "$T/apache.out"; tail -n 5 "$T/error.log" 2>/dev/null)"
        return
    fi

    p1=$port; p2=$port2; p3=$port3
    # the directory's own price, where the table has nothing
    offer "$p1" /docs/other.html "$DIR_UNITS" "control (no entry: MicropayPrice)"
    status "$p1" /free.html 200 "control (free file)"

    # /api/ 1.00 USD: every spelling of /api/echo.cgi
    offer "$p1" /api/echo.cgi "$API_UNITS" "exact spelling"
    offer "$p1" /api/echo.cgi/%20 "$API_UNITS" "path info, percent-encoded space"
    offer "$p1" /api/echo.cgi/x "$API_UNITS" "path info"
    offer "$p1" /api/echo.cgi/ "$API_UNITS" "trailing slash (path info /)"
    offer "$p1" /api/./echo.cgi "$API_UNITS" "dot segment"
    offer "$p1" /docs/../api/echo.cgi "$API_UNITS" "dot-dot segment"
    offer "$p1" /%61pi/echo.cgi "$API_UNITS" "percent-encoded letter"
    offer "$p1" /api/echo%2ecgi "$API_UNITS" "percent-encoded dot"
    offer "$p1" /api//echo.cgi "$API_UNITS" "double slash"
    offer "$p1" /api/echo.cgi\;x=1 "$API_UNITS" "';' parameter (part of the segment, under /api/)"
    offer "$p1" /api%2Fecho.cgi "$API_UNITS" "%2F, AllowEncodedSlashes On"
    offer "$p1" /alt/echo.cgi "$API_UNITS" "Alias into /api/"
    offer "$p1" /link/echo.cgi "$API_UNITS" "symlink to /api/"
    offer "$p1" /link/echo.cgi/%20 "$API_UNITS" "symlink and path info"
    offer "$p1" /rw/echo.cgi "$API_UNITS" "mod_rewrite [PT] to /api/"
    offer "$p1" /rwfs/echo.cgi "$API_UNITS" "mod_rewrite to the file's path"
    offer "$p1" /old/echo.cgi "$API_UNITS" "per-directory mod_rewrite (internal redirect)"
    offer "$p1" "/api/echo.cgi/$(printf 'x%.0s' $(seq 1 600))" "$API_UNITS" "600 bytes of path info"
    offer "$p1" "/api/$(printf 'a%.0s' $(seq 1 200))/$(printf 'b%.0s' $(seq 1 200))/$(printf 'c%.0s' $(seq 1 200))" \
        "$API_UNITS" "a 600-byte path that names no file (longer than an entry can be)"
    if [ -e "$T/htdocs/API" ]; then
        offer "$p1" /API/echo.cgi "$API_UNITS" "case (case-insensitive filesystem)"
    else
        status "$p1" /API/echo.cgi 404 "case (case-sensitive filesystem: another, missing resource)"
    fi

    # /api/exact.cgi 2.00 USD: an exact entry beats the /api/ prefix
    offer "$p1" /api/exact.cgi "$EXACT_UNITS" "exact entry"
    offer "$p1" /api/exact.cgi/ "$EXACT_UNITS" "exact entry, trailing slash"
    offer "$p1" /api/exact.cgi/%20 "$EXACT_UNITS" "exact entry, path info"
    offer "$p1" /api/./exact%2Ecgi "$EXACT_UNITS" "exact entry, dot segment and encoding"
    offer "$p1" /alt/exact.cgi/x "$EXACT_UNITS" "exact entry through the Alias"

    # /docs/page.html 1.50 USD: a static file
    offer "$p1" /docs/page.html "$PAGE_UNITS" "static file"
    offer "$p1" /docs/page.html/ "$PAGE_UNITS" "static file, trailing slash"
    offer "$p1" /docs//page%2Ehtml "$PAGE_UNITS" "static file, double slash and encoding"
    offer "$p1" /DOCS/page.html "$PAGE_UNITS" "static file through a symlink differing in case"

    # /ext/ 3.00 USD: outside the DocumentRoot, by its alias's URL
    offer "$p1" /ext/echo.cgi "$EXT_UNITS" "Alias outside the DocumentRoot"
    offer "$p1" /ext/./echo.cgi/%20 "$EXT_UNITS" "Alias outside the DocumentRoot, dot segment, path info"

    # the second port: NoDecode keeps %2F inside its segment (no such file:
    # 404, nothing offered), MergeSlashes Off keeps // (the same file)
    offer "$p2" /api/echo.cgi "$API_UNITS" "NoDecode port: exact spelling"
    offer "$p2" /api//echo.cgi "$API_UNITS" "MergeSlashes Off: double slash"
    offer "$p2" //api///exact.cgi "$EXACT_UNITS" "MergeSlashes Off: exact entry"
    offer "$p2" /docs//page.html/ "$PAGE_UNITS" "MergeSlashes Off: static file"
    status "$p2" /api%2Fecho.cgi 404 "%2F, AllowEncodedSlashes NoDecode (a name with %2F in it)"
    offer "$p2" /api/echo.cgi/a%2Fb "$API_UNITS" "NoDecode: %2F in path info"

    # lookup errors: 500, never the directory's price
    status "$p3" /bad/echo.cgi 500 "corrupt table entry"
    status "$p3" /bad/echo.cgi/%20 500 "corrupt table entry, path info"
    status "$p1" /api/d/echo.cgi 500 "a file whose key is longer than the table can look up"
    # A store with a damaged record fails the startup check as a whole
    # (MP00013) and stays closed: its paid requests answer 500 (MP00021).
    if grep -qE '\[micropay:error\].*MP00013: payment store [^ ]*/badstore failed its startup check' "$T/error.log" \
       && grep -qE '\[micropay:error\].*MP00021: payment store [^ ]*/badstore unavailable .*/bad/echo\.cgi' "$T/error.log"; then
        pass "corrupt entry: the store is closed at start (MP00013) and its paid requests refused (MP00021)"
    else
        fail "corrupt entry: no [micropay:error] MP00013 and MP00021 lines for the damaged store in error.log"
    fi
    if grep -qE '\[micropay:error\].*MP00040: .*/api/d/echo\.cgi' "$T/error.log"; then
        pass "long key: MP00040 in error.log ($(grep -E 'MP00040: .*/api/d/' "$T/error.log" | head -1 | sed 's/.*MP00040/MP00040/' | cut -c1-150))"
    else
        fail "long key: no [micropay:error] MP00040 line for /api/d/echo.cgi in error.log"
    fi

    if stop_apache; then pass "stop (TERM)"; else fail "stop (TERM) took longer than 15 s"; fi
    local bad
    bad=$(bad_log_lines '\[micropay:error\].*MP00040: |\[micropay:error\].*MP000(13|21): payment store [^ ]*/badstore ')
    if [ -z "$bad" ]; then
        pass "error.log: no warn/error lines but the expected MP00040, MP00013 and MP00021"
    else
        fail "error.log: unexpected lines:"
        echo "$bad" | head -20 | sed 's/^/       /'
    fi
}

t0=$(date +%s)
for mpm in $mpms; do
    run_mpm
    if [ -n "$apid" ]; then stop_apache; fi
done
mpm=all
echo "total time $(($(date +%s) - t0)) s"
echo "$npass passed, $nfail failed"
[ "$nfail" = 0 ]
