#!/usr/bin/env bash
# HTTPS benchmarks: tine (examples/hello --tls-bind) against nginx (Debian's,
# with its ssl module) and actix-web with rustls, all with the same
# certificate (ECDSA P-256, made here) and loads to 127.0.0.1 only.
#
#   bench/tls.sh                  # everything
#   SERVERS="tine nginx" CONFIGS=1core DURATION=5s bench/tls.sh
#
# Scenarios, each with the server's CPU time per request or handshake
# (utime + stime of its whole process tree, from /proc):
#   keepalive  wrk over kept-alive HTTPS connections (GET /plaintext)
#   full       openssl s_time -new: a full handshake + GET per connection
#   resumed    openssl s_time -reuse: a resumed handshake + GET per connection
# Configurations: 1core (1 worker, server pinned to CPU 0, load on CPU 1)
# and 2core (2 workers, nothing pinned).
#
# Needs wrk, nginx, openssl, curl, taskset (apt-get install -y wrk nginx
# openssl curl util-linux). Output: bench/out/tls.tsv and a table on stdout.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out/tls
SERVERS=${SERVERS:-tine nginx actix}
CONFIGS=${CONFIGS:-1core 2core}
SCENARIOS=${SCENARIOS:-keepalive full resumed}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
CLIENTS=${CLIENTS:-4} # parallel s_time processes
PORT=${PORT:-18443}
SKIP_BUILD=${SKIP_BUILD:-0}
PEER_TARGET=${CARGO_TARGET_DIR:-$BENCH/target}
TINE_BIN=${TINE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/hello}
CLK_TCK=$(getconf CLK_TCK)
PATH=$PATH:/usr/sbin:/sbin
SECS=${DURATION%s}

log() { printf '[tls-bench %s] %s\n' "$(date +%T)" "$*" >&2; }

for tool in wrk openssl curl taskset; do
    command -v "$tool" >/dev/null || {
        log "missing $tool: apt-get install -y wrk nginx openssl curl util-linux"
        exit 1
    }
done

mkdir -p "$OUT"
if [[ $SKIP_BUILD != 1 ]]; then
    log "building hello and the actix peer (release)"
    (cd "$ROOT" && nice -n 10 cargo build --release --quiet -p hello)
    if [[ " $SERVERS " == *" actix "* ]]; then
        CARGO_TARGET_DIR=$PEER_TARGET nice -n 10 cargo build --release --quiet \
            --manifest-path "$BENCH/Cargo.toml" -p bench-actix --features tls ||
            log "WARNING: the actix TLS peer did not build: skipped"
    fi
fi

# One certificate for every server.
CERT=$OUT/cert.pem KEY=$OUT/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$KEY" -out "$CERT" -days 30 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null

source "$BENCH/lib.sh" # tree_pids, tree_cpu_ticks

SPID=
start() { # server workers
    local server=$1 workers=$2 dir=$OUT/run-$1
    rm -rf "$dir" && mkdir -p "$dir"
    case $server in
    tine) cmd=("$TINE_BIN" --bind 127.0.0.1:0 --workers "$workers" --tls-bind "127.0.0.1:$PORT"
        --tls-cert "$CERT" --tls-key "$KEY") ;;
    nginx)
        cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes $workers;
worker_rlimit_nofile 16384;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 10240; }
http {
    access_log off;
    client_body_temp_path $dir/cb; proxy_temp_path $dir/p; fastcgi_temp_path $dir/f;
    uwsgi_temp_path $dir/u; scgi_temp_path $dir/s;
    keepalive_requests 100000000;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    server {
        listen 127.0.0.1:$PORT ssl reuseport;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        location = /plaintext { default_type text/plain; return 200 "Hello, World!"; }
    }
}
CONF
        cmd=(nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log")
        ;;
    actix) cmd=("$PEER_TARGET/release/bench-actix" --port "$PORT" --workers "$workers"
        --tls-cert "$CERT" --tls-key "$KEY") ;;
    esac
    "${PIN_SERVER[@]}" "${cmd[@]}" >"$dir/log" 2>&1 &
    SPID=$!
    for _ in $(seq 100); do
        curl -skf -o /dev/null --max-time 1 "https://127.0.0.1:$PORT/plaintext" && return 0
        sleep 0.1
    done
    log "WARNING: $server did not answer (see $dir/log)"
    stop
    return 1
}
stop() {
    [[ -n $SPID ]] || return 0
    kill -TERM "$SPID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL $(tree_pids "$SPID") 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}
trap stop EXIT

s_time() { # mode (-new | -reuse): connections/s summed over CLIENTS processes
    local mode=$1 i
    for ((i = 0; i < CLIENTS; i++)); do
        "${PIN_LOAD[@]}" openssl s_time -connect "127.0.0.1:$PORT" "$mode" -time "$SECS" \
            -www /plaintext >"$OUT/s_time.$i" 2>&1 &
    done
    wait
    # "N connections in T real seconds, B bytes read per connection"
    cat "$OUT"/s_time.* | awk '/connections in .* real seconds/ { n += $1; t = $4 } END { if (t) printf "%.0f %d\n", n / t, n; else print "0 0" }'
}

printf 'server\tconfig\tscenario\trate_per_s\tcount\tcpu_us_each\n' >"$OUT/tls.tsv"
for config in $CONFIGS; do
    case $config in
    1core) WORKERS=1 PIN_SERVER=(taskset -c 0) PIN_LOAD=(taskset -c 1) ;;
    2core) WORKERS=2 PIN_SERVER=() PIN_LOAD=() ;;
    esac
    for server in $SERVERS; do
        start "$server" "$WORKERS" || continue
        for scenario in $SCENARIOS; do
            before=$(tree_cpu_ticks "$SPID")
            case $scenario in
            keepalive)
                out=$("${PIN_LOAD[@]}" wrk -t 1 -c "$CONNS" -d "$DURATION" "https://127.0.0.1:$PORT/plaintext")
                rate=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
                count=$(awk '/ requests in / { print $1 }' <<<"$out")
                ;;
            full) read -r rate count < <(s_time -new) ;;
            resumed) read -r rate count < <(s_time -reuse) ;;
            esac
            after=$(tree_cpu_ticks "$SPID")
            cpu=$(awk -v t=$((after - before)) -v n="$count" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }')
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$config" "$scenario" "$rate" "$count" "$cpu" | tee -a "$OUT/tls.tsv"
        done
        stop
    done
done
column -t "$OUT/tls.tsv"
