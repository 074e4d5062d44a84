#!/bin/sh
# libmp is C plus OpenSSL only. Every #include in libmp/ must be a standard
# C header, an OpenSSL header, or one of libmp's own mp_*.h; anything else
# (httpd, APR, curl, sockets, POSIX networking) fails the build's tests.
set -u
src=${top_srcdir:-$(dirname "$0")/..}/libmp
std='assert|ctype|errno|inttypes|limits|stdarg|stdbool|stddef|stdint|stdio|stdlib|string|time'
bad=$(grep -Hn '^[[:space:]]*#[[:space:]]*include' "$src"/*.c "$src"/*.h \
      | grep -Ev "#[[:space:]]*include[[:space:]]*(<($std)\.h>|<openssl/[a-z0-9_]+\.h>|\"mp[a-z0-9_]*\.h\")")
count=$(ls "$src"/*.c "$src"/*.h | wc -l)
if [ -n "$bad" ]; then
    echo "libmp may include only standard C, OpenSSL and its own headers:"
    echo "$bad"
    exit 1
fi
echo "layering: $count libmp files include only standard C, OpenSSL and mp_*.h"
