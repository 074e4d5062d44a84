# lib.sh - what the integration scripts share: free loopback ports, and
# starting and stopping one Apache by PID. Sourced by run.sh and
# run_broker.sh (bash). The caller sets APACHE2 and T (its temp dir),
# defines apache_ready (0 once its ports answer) and keeps apid.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null && return
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    return 1
}

# Waits up to $2 seconds for pid $1 to exit; reaps it. 0 if it exited.
wait_exit() {
    local pid=$1 n=$(($2 * 10))
    while [ $n -gt 0 ] && kill -0 "$pid" 2>/dev/null; do
        sleep 0.1
        n=$((n - 1))
    done
    if kill -0 "$pid" 2>/dev/null; then return 1; fi
    wait "$pid" 2>/dev/null
    return 0
}

# start_apache CONF: starts in the foreground as a background job; 0 once
# apache_ready says so, within 10 s.
start_apache() {
    # its own session: on stop Apache signals its whole process group
    setsid "$APACHE2" -f "$1" -DFOREGROUND >>"$T/apache.out" 2>&1 &
    apid=$!
    local n=100
    while [ $n -gt 0 ]; do
        if ! kill -0 "$apid" 2>/dev/null; then
            wait "$apid" 2>/dev/null
            apid=""
            return 1
        fi
        apache_ready && return 0
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

# Stops the Apache of apid (TERM, then KILL of it and its children after 15 s).
stop_apache() {
    [ -n "$apid" ] || return 0
    local children
    children=$(pgrep -P "$apid" 2>/dev/null | tr '\n' ' ')
    kill -TERM "$apid" 2>/dev/null
    if ! wait_exit "$apid" 15; then
        echo "     apache2 $apid did not stop within 15 s; killing it" >&2
        # shellcheck disable=SC2086
        kill -KILL "$apid" $children 2>/dev/null
        wait_exit "$apid" 5
        apid=""
        return 1
    fi
    apid=""
    return 0
}
