#!/usr/bin/env bash
# Benchmarks tine's examples/hello against actix-web, axum, may_minihttp and
# nginx on this machine, all loads to 127.0.0.1 only. See README.md.
#
# Knobs (environment):
#   ROUNDS=3  DURATION=10s  SERVERS="tine tine-shared actix axum may nginx"
#   CONFIGS="1core 2core tail"
#   SCENARIOS="idle idlews plaintext json hello pipeline static4k static1m ws"
#   IDLE_CONNS=5000  IDLE_WS_PATH=/ws/echo?subscribe=idle  WS_SIZE=64  PORT_BASE=18000  SKIP_BUILD=0
#   TINE_BIN=<root>/target/release/hello  TINE_ARGS="--open-file-cache-ms 10000"
#   tail config: TAIL_LOADS="new new-slow ka ka-slow" TAIL_RATE_NEW=8000
#   TAIL_RATE_KA=20000 TAIL_CONNS=64 TAIL_SLOW_EVERY=1000 TAIL_SLOW_MS=20
#   TAIL_THREADS=1
# idle holds IDLE_CONNS keep-alive connections after one request each;
# idlews as many WebSockets on IDLE_WS_PATH after one echoed message each
# (tine's hello also subscribes each to a topic; the peers ignore the
# query). Both report the server's RSS growth per connection, each on a
# freshly started server.
# tine-shared is tine's hello with --balance shared (one listener every
# worker accepts from) instead of a SO_REUSEPORT listener per worker.
# The tail config (4 workers each, tine tine-shared actix axum) runs the
# open-loop client bench/openloop instead of SCENARIOS: fast requests
# (GET /plaintext) with 1 in TAIL_SLOW_EVERY GET /sleep?ms=TAIL_SLOW_MS
# ("-slow" loads), a new connection per request ("new") or TAIL_CONNS
# keep-alive connections ("ka"); out/tail.tsv has both classes' percentiles.
# Output: out/results.tsv (one line per round, server, config, scenario),
# out/tail.tsv, out/summary.md, out/chart.png, raw tool output under out/logs/.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out
LOGS=$OUT/logs
STATIC=$OUT/static
RESULTS=$OUT/results.tsv

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
SERVERS=${SERVERS:-tine tine-shared actix axum may nginx}
CONFIGS=${CONFIGS:-1core 2core tail}
SCENARIOS=${SCENARIOS:-idle idlews plaintext json hello pipeline static4k static1m ws}
IDLE_CONNS=${IDLE_CONNS:-5000}
IDLE_WS_PATH=${IDLE_WS_PATH:-/ws/echo?subscribe=idle}
WS_SIZE=${WS_SIZE:-64}
PORT_BASE=${PORT_BASE:-18000}
SKIP_BUILD=${SKIP_BUILD:-0}
TAIL_LOADS=${TAIL_LOADS:-new new-slow ka ka-slow}
TAIL_RATE_NEW=${TAIL_RATE_NEW:-8000}
TAIL_RATE_KA=${TAIL_RATE_KA:-20000}
TAIL_CONNS=${TAIL_CONNS:-64}
TAIL_SLOW_EVERY=${TAIL_SLOW_EVERY:-1000}
TAIL_SLOW_MS=${TAIL_SLOW_MS:-20}
TAIL_THREADS=${TAIL_THREADS:-1}
TAIL=$OUT/tail.tsv
PEER_TARGET=${CARGO_TARGET_DIR:-$BENCH/target}
TINE_BIN=${TINE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/hello}
CLK_TCK=$(getconf CLK_TCK)
PATH=$PATH:/usr/sbin:/sbin # Debian puts nginx in /usr/sbin

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
warn() { log "WARNING: $*"; }
die() {
    log "ERROR: $*"
    exit 1
}

# DURATION as whole seconds: 10s, 90, 2m.
case $DURATION in
*m) SECS=$((${DURATION%m} * 60)) ;;
*s) SECS=${DURATION%s} ;;
*) SECS=$DURATION ;;
esac
[[ $SECS =~ ^[0-9]+$ && $SECS -gt 0 ]] || die "DURATION must look like 10s, 10 or 2m"

# ---------------------------------------------------------------- tools ---
missing=()
for tool in taskset curl python3 cargo; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
# wrk drives every config but tail (openloop, built here).
if [[ -n ${CONFIGS//tail/} && ${CONFIGS//[[:space:]]/} != tail ]] && ! command -v wrk >/dev/null; then
    missing+=(wrk)
fi
if [[ " $SERVERS " == *" nginx "* ]] && ! command -v nginx >/dev/null; then
    missing+=(nginx)
fi
if ((${#missing[@]})); then
    die "missing: ${missing[*]}. On Debian/Ubuntu: apt-get install -y wrk nginx util-linux curl python3 (cargo: rustup)"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < IDLE_CONNS + 200)); then
    warn "open-file limit $(ulimit -n) is below IDLE_CONNS=$IDLE_CONNS; the idle scenario will fall short"
fi

# ---------------------------------------------------------------- build ---
if [[ $SKIP_BUILD != 1 ]]; then
    log "building the peers (release, fat LTO): first build takes several minutes"
    CARGO_TARGET_DIR=$PEER_TARGET nice -n 10 cargo build --release --quiet \
        --manifest-path "$BENCH/Cargo.toml"
    if [[ " $SERVERS " == *" tine"* ]]; then
        log "building tine's examples/hello"
        (cd "$ROOT" && nice -n 10 cargo build --release --quiet -p hello) ||
            warn "cargo build --release -p hello failed"
    fi
fi
WSLOAD=$PEER_TARGET/release/wsload
OPENLOOP=$PEER_TARGET/release/openloop

server_bin() {
    case $1 in
    tine | tine-shared) echo "$TINE_BIN" ;;
    nginx) command -v nginx ;;
    *) echo "$PEER_TARGET/release/bench-$1" ;;
    esac
}

present=()
for server in $SERVERS; do
    case $server in tine | tine-shared | actix | axum | may | nginx) ;; *) die "unknown server $server" ;; esac
    if [[ -x $(server_bin "$server") ]]; then
        present+=("$server")
    else
        warn "no binary for $server ($(server_bin "$server")): skipped"
    fi
done
((${#present[@]})) || die "no server to benchmark"

# --------------------------------------------------------- static files ---
mkdir -p "$LOGS" "$STATIC"
python3 - "$STATIC" <<'EOF'
import os, random, sys
rng = random.Random(20240808)  # fixed seed: same bytes on every machine
for name, size in (("4k.bin", 4096), ("1m.bin", 1 << 20)):
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        f.write(rng.randbytes(size))
EOF

# ------------------------------------------------------ process helpers ---
# tree_pids, tree_cpu_ticks
source "$BENCH/lib.sh"

tree_rss_kb() {
    local pid kb total=0
    for pid in $(tree_pids "$1"); do
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || continue
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

alive() { # running and not a zombie
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

SPID='' IDLE_PID=''
start_server() { # server port log
    local server=$1 port=$2 log=$3 cmd i
    case $server in
    # shellcheck disable=SC2206 # TINE_ARGS is split into words on purpose
    tine) cmd=("$TINE_BIN" --bind "127.0.0.1:$port" --workers "$WORKERS" --static "$STATIC" ${TINE_ARGS:-}) ;;
    # shellcheck disable=SC2206
    tine-shared) cmd=("$TINE_BIN" --bind "127.0.0.1:$port" --workers "$WORKERS" --balance shared
        --static "$STATIC" ${TINE_ARGS:-}) ;;
    nginx)
        local dir=$OUT/nginx-run
        rm -rf "$dir" && mkdir -p "$dir"
        sed -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$WORKERS|g" -e "s|@STATIC_DIR@|$STATIC|g" \
            -e "s|@RUN_DIR@|$dir|g" "$BENCH/nginx.conf.template" >"$dir/nginx.conf"
        cmd=(nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log")
        ;;
    *) cmd=("$(server_bin "$server")" --port "$port" --workers "$WORKERS" --static "$STATIC") ;;
    esac
    "${SERVER_PIN[@]}" "${cmd[@]}" >"$log" 2>&1 &
    SPID=$!
    for ((i = 0; i < 100; i++)); do # up to 10 s
        curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$port/plaintext" && return 0
        alive "$SPID" || break
        sleep 0.1
    done
    warn "$server did not answer on port $port (see $log)"
    stop_server
    return 1
}

stop_server() { # SIGTERM, up to 5 s, then SIGKILL the whole tree
    [[ -n $SPID ]] || return 0
    local pids i pid
    pids=$(tree_pids "$SPID")
    kill -TERM "$SPID" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        local any=0
        for pid in $pids; do alive "$pid" && any=1; done
        ((any)) || break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}

cleanup() {
    [[ -z $IDLE_PID ]] || kill "$IDLE_PID" 2>/dev/null || true
    stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ scenarios ---
declare -A PATHS=([plaintext]=/plaintext [json]=/json [hello]=/hello/bench
    [pipeline]=/plaintext [static4k]=/static/4k.bin [static1m]=/static/1m.bin)

supports() { # server scenario: what each peer can serve at all
    case $1:$2 in
    may:static* | may:ws | may:idlews | nginx:ws | nginx:idlews) return 1 ;;
    *) return 0 ;;
    esac
}

in_config() { # server: whether it runs in $CONFIG at all
    case $CONFIG:$1 in
    # One worker serves in a single process: no balancing mode to compare.
    1core:tine-shared) return 1 ;;
    # The tail scenario needs /sleep (tine's hello and the actix and axum peers).
    tail:tine | tail:tine-shared | tail:actix | tail:axum) return 0 ;;
    tail:*) return 1 ;;
    *) return 0 ;;
    esac
}

# wrk output -> "req/s p50_us p99_us errors requests"
parse_wrk() {
    awk '
    function us(v) {
        if (v ~ /us$/) return v + 0
        if (v ~ /ms$/) return v * 1000
        if (v ~ /m$/) return v * 60e6
        if (v ~ /s$/) return v * 1e6
        return v + 0
    }
    $1 == "50%" { p50 = us($2) }
    $1 == "99%" { p99 = us($2) }
    / requests in / { n = $1 }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { errors += $NF }
    /Socket errors:/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
    END {
        # wrk sometimes prints a 99th percentile of 0.00us under pipelining: report none
        p99s = p99 < p50 ? "-" : sprintf("%.0f", p99)
        printf "%.0f %.0f %s %d %d\n", rps, p50, p99s, errors, n
    }'
}

cpu_per_req() { # ticks requests -> microseconds
    awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", n ? t * 1e6 / hz / n : 0 }'
}

emit() { # the TSV line, and a readable one on stderr
    local IFS=$'\t'
    echo "$*" >>"$RESULTS"
    if [[ $4 == idle* ]]; then
        log "  $2 $3 $4: ${11} bytes per idle connection ($9 open, $8 failed)"
    else
        local unit=request
        [[ $4 == ws ]] && unit=message
        log "  $2 $3 $4: $5 ${unit}s/s, p50 ${6}us, p99 ${7}us, errors $8, server cpu ${10}us per $unit"
    fi
}

run_load() { # round server port scenario: wrk or wsload, CPU measured around it
    local round=$1 server=$2 port=$3 scenario=$4
    local tag=$server-$CONFIG-$scenario-r$round before after rps p50 p99 errors n
    local url=http://127.0.0.1:$port${PATHS[$scenario]:-}
    if [[ $scenario != ws ]] && ! curl -sf -o /dev/null --max-time 2 "$url"; then
        warn "$server does not serve $url: $scenario skipped"
        return
    fi
    before=$(tree_cpu_ticks "$SPID")
    if [[ $scenario == ws ]]; then
        if ! "${LOAD_PIN[@]}" "$WSLOAD" --url "ws://127.0.0.1:$port/ws/echo" --conns "$CONNS" \
            --threads "$THREADS" --duration "$SECS" --size "$WS_SIZE" >"$LOGS/$tag.txt" 2>&1; then
            warn "$server: no WebSocket echo ($(tail -1 "$LOGS/$tag.txt")): ws skipped"
            return
        fi
        after=$(tree_cpu_ticks "$SPID")
        local kv
        kv=$(tail -1 "$LOGS/$tag.txt")
        read -r n rps p50 p99 errors < <(awk '{ for (i = 1; i <= NF; i++) { split($i, a, "="); v[a[1]] = a[2] }
            print v["messages"], v["msgs_per_sec"], v["p50_us"], v["p99_us"], v["errors"] }' <<<"$kv")
    else
        local args=(-t "$THREADS" -c "$CONNS" -d "${SECS}s" --latency "$url")
        [[ $scenario == pipeline ]] && args+=(-s "$BENCH/pipeline.lua" -- 16)
        if ! "${LOAD_PIN[@]}" wrk "${args[@]}" >"$LOGS/$tag.txt" 2>&1; then
            warn "wrk failed for $server $scenario (see $LOGS/$tag.txt)"
            return
        fi
        after=$(tree_cpu_ticks "$SPID")
        read -r rps p50 p99 errors n < <(parse_wrk <"$LOGS/$tag.txt")
    fi
    emit "$round" "$server" "$CONFIG" "$scenario" "$rps" "$p50" "$p99" "$errors" "$n" \
        "$(cpu_per_req $((after - before)) "$n")" -
}

# The machine's count of connections dropped because an accept queue was
# full (TcpExt ListenOverflows; every listener on the machine).
listen_overflows() {
    awk '$1 == "TcpExt:" { if (!n) { for (i = 2; i <= NF; i++) h[$i] = i; n = 1 } else print $h["ListenOverflows"] }' /proc/net/netstat
}

# The tail scenario: bench/openloop at a fixed rate, fast and slow
# requests timed apart from their scheduled start. One line in tail.tsv
# and one in results.tsv (fast requests' p50/p99) per load.
run_tail() { # round server port load
    local round=$1 server=$2 port=$3 load=$4
    local tag=$server-$CONFIG-$load-r$round rate conns slow_every=0 before after load1
    case $load in
    new | new-slow) rate=$TAIL_RATE_NEW conns=0 ;;
    ka | ka-slow) rate=$TAIL_RATE_KA conns=$TAIL_CONNS ;;
    *) die "unknown tail load $load (new, new-slow, ka, ka-slow)" ;;
    esac
    [[ $load == *-slow ]] && slow_every=$TAIL_SLOW_EVERY
    if ! curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/sleep?ms=1"; then
        warn "$server has no /sleep: tail skipped"
        return
    fi
    read -r load1 _ </proc/loadavg
    local overflows_before overflows
    overflows_before=$(listen_overflows)
    before=$(tree_cpu_ticks "$SPID")
    if ! "${LOAD_PIN[@]}" "$OPENLOOP" --addr "127.0.0.1:$port" --rate "$rate" --duration "$SECS" \
        --warmup 1 --conns "$conns" --threads "$TAIL_THREADS" --fast /plaintext \
        --slow "/sleep?ms=$TAIL_SLOW_MS" --slow-every "$slow_every" >"$LOGS/$tag.txt" 2>&1; then
        warn "openloop failed for $server $load (see $LOGS/$tag.txt)"
        return
    fi
    after=$(tree_cpu_ticks "$SPID")
    overflows=$(($(listen_overflows) - overflows_before))
    # key=value lines -> variables fast_p99_us, slow_requests, client_lag_p99_us, ...
    local kv
    kv=$(awk '{ p = $1 ~ /^class=/ ? substr($1, 7) : $1
        for (i = 1; i <= NF; i++) if (split($i, a, "=") == 2 && a[1] != "class") printf "%s_%s=%s\n", p, a[1], a[2] }' "$LOGS/$tag.txt")
    local fast_requests=0 fast_errors=0 fast_p50_us=- fast_p99_us=- fast_p999_us=- fast_max_us=-
    local slow_requests=0 slow_errors=0 slow_p50_us=- slow_p99_us=- slow_max_us=- client_lag_p99_us=- client_lag_max_us=-
    local client_failed=- client_bad_status=- client_unanswered=-
    local k v
    while IFS='=' read -r k v; do
        case $k in
        fast_requests | fast_errors | fast_p50_us | fast_p99_us | fast_p999_us | fast_max_us | \
            slow_requests | slow_errors | slow_p50_us | slow_p99_us | slow_max_us | \
            client_lag_p99_us | client_lag_max_us | client_failed | client_bad_status | \
            client_unanswered) printf -v "$k" '%s' "$v" ;;
        esac
    done <<<"$kv"
    local n=$((fast_requests + slow_requests)) errors=$((fast_errors + slow_errors))
    local cpu
    cpu=$(cpu_per_req $((after - before)) "$n")
    local row=("$round" "$server" "$load" "$rate" "$conns" "$slow_every" "$fast_requests" "$fast_errors" "$fast_p50_us" "$fast_p99_us" "$fast_p999_us" "$fast_max_us" "$slow_requests" "$slow_errors" "$slow_p50_us" "$slow_p99_us" "$slow_max_us" "$client_lag_p99_us" "$client_lag_max_us" "$cpu" "$load1" "$client_failed" "$client_bad_status" "$client_unanswered" "$overflows")
    (IFS=$'\t' && echo "${row[*]}") >>"$TAIL"
    emit "$round" "$server" "$CONFIG" "tail-$load" "$((n / SECS))" "$fast_p50_us" "$fast_p99_us" "$errors" "$n" "$cpu" -
    log "    fast p99.9 ${fast_p999_us}us; slow: $slow_requests, p99 ${slow_p99_us}us; client lag p99 ${client_lag_p99_us}us; errors: $client_failed failed, $client_bad_status not 200, $client_unanswered unanswered; listen overflows $overflows; load average $load1"
}

run_idle() { # round server port scenario: RSS growth per idle connection
    local round=$1 server=$2 port=$3 scenario=$4 ready=$OUT/idle.ready before after opened failed i
    local ws=()
    [[ $scenario == idlews ]] && ws=(--ws "$IDLE_WS_PATH")
    rm -f "$ready"
    sleep 0.5
    before=$(tree_rss_kb "$SPID")
    "${LOAD_PIN[@]}" python3 "$BENCH/idle.py" --port "$port" --conns "$IDLE_CONNS" \
        --ready "$ready" --hold 120 "${ws[@]}" >"$LOGS/$server-$CONFIG-$scenario-r$round.txt" 2>&1 &
    IDLE_PID=$!
    for ((i = 0; i < 900; i++)); do # up to 90 s
        [[ -s $ready ]] && break
        alive "$IDLE_PID" || break
        sleep 0.1
    done
    if [[ -s $ready ]]; then
        sleep 1 # let the server settle
        after=$(tree_rss_kb "$SPID")
    fi
    kill "$IDLE_PID" 2>/dev/null || true
    wait "$IDLE_PID" 2>/dev/null || true
    IDLE_PID=
    if [[ ! -s $ready ]]; then
        warn "$server: idle client did not finish: $scenario skipped"
        return
    fi
    read -r opened failed < <(sed 's/[a-z]*=//g' "$ready")
    ((failed == 0)) || warn "$server: $failed of $IDLE_CONNS $scenario connections failed"
    local per_conn=-
    ((opened > 0)) && per_conn=$(((after - before) * 1024 / opened))
    emit "$round" "$server" "$CONFIG" "$scenario" - - - "$failed" "$opened" - "$per_conn"
    sleep 1 # let the server close them
}

set_config() {
    CONFIG=$1
    case $1 in
    1core) WORKERS=1 CONNS=64 THREADS=1 SERVER_PIN=(taskset -c 0) LOAD_PIN=(taskset -c 1) ;;
    2core) WORKERS=2 CONNS=128 THREADS=2 SERVER_PIN=() LOAD_PIN=() ;;
    tail) WORKERS=4 CONNS=$TAIL_CONNS THREADS=$TAIL_THREADS SERVER_PIN=() LOAD_PIN=() ;;
    *) die "unknown config $1 (1core, 2core or tail)" ;;
    esac
}

# ----------------------------------------------------------------- main ---
# Estimate (measured): a load run takes SECS + ~1.2 s, an idle run ~3-4 s
# (plus a restart after the first scenario), a restart ~2-3 s.
per_round=0
for config in $CONFIGS; do
    CONFIG=$config
    for server in "${present[@]}"; do
        in_config "$server" || continue
        per_round=$((per_round + 3))
        if [[ $config == tail ]]; then
            per_round=$((per_round + $(wc -w <<<"$TAIL_LOADS") * (SECS + 3)))
            continue
        fi
        for scenario in $SCENARIOS; do
            supports "$server" "$scenario" || continue
            if [[ $scenario == idle* ]]; then per_round=$((per_round + 7)); else per_round=$((per_round + SECS + 1)); fi
        done
    done
done
estimate=$((ROUNDS * per_round / 60 + 1))
log "servers: ${present[*]}; configs: $CONFIGS; scenarios: $SCENARIOS"
read -r load1 _ </proc/loadavg
if awk -v l="$load1" 'BEGIN { exit !(l > 1.0) }'; then
    warn "load average is $load1: other work is running on this machine, results will be noisy"
fi
log "$ROUNDS round(s) of ${SECS}s runs: about $estimate min (less where a server lacks a scenario)"

[[ -f $RESULTS ]] && mv "$RESULTS" "$OUT/results.prev.tsv"
printf 'round\tserver\tconfig\tscenario\treq_per_s\tp50_us\tp99_us\terrors\trequests\tcpu_us_per_req\tidle_bytes_per_conn\n' >"$RESULTS"
if [[ " $CONFIGS " == *" tail "* ]]; then
    [[ -x $OPENLOOP ]] || die "no $OPENLOOP: build bench/ (cargo build --release -p openloop) or drop the tail config"
    [[ -f $TAIL ]] && mv "$TAIL" "$OUT/tail.prev.tsv"
    printf 'round\tserver\tload\trate\tconns\tslow_every\tfast_requests\tfast_errors\tfast_p50_us\tfast_p99_us\tfast_p999_us\tfast_max_us\tslow_requests\tslow_errors\tslow_p50_us\tslow_p99_us\tslow_max_us\tlag_p99_us\tlag_max_us\tcpu_us_per_req\tload1\tfailed\tbad_status\tunanswered\tlisten_overflows\n' >"$TAIL"
fi

port=$PORT_BASE
for ((round = 1; round <= ROUNDS; round++)); do
    # Rotate the server order each round so no server always goes first.
    shift_by=$(((round - 1) % ${#present[@]}))
    order=("${present[@]:shift_by}" "${present[@]:0:shift_by}")
    for config in $CONFIGS; do
        set_config "$config"
        for server in "${order[@]}"; do
            in_config "$server" || continue
            port=$((port + 1))
            log "round $round/$ROUNDS, $config: starting $server on port $port"
            start_server "$server" "$port" "$LOGS/$server-$config-r$round.server.log" || continue
            if [[ $config == tail ]]; then
                for load in $TAIL_LOADS; do
                    run_tail "$round" "$server" "$port" "$load"
                    sleep 1
                done
                stop_server
                continue
            fi
            fresh=1
            for scenario in $SCENARIOS; do
                supports "$server" "$scenario" || continue
                if [[ $scenario == idle* && $fresh == 0 ]]; then
                    # An idle scenario measures growth: a server that held
                    # thousands of connections already has the room for
                    # them (its slab, its allocator's free lists), and
                    # would seem to need nothing more. A fresh one each.
                    stop_server
                    port=$((port + 1))
                    start_server "$server" "$port" "$LOGS/$server-$config-r$round-$scenario.server.log" || continue 2
                fi
                fresh=0
                case $scenario in
                idle | idlews) run_idle "$round" "$server" "$port" "$scenario" ;;
                plaintext | json | hello | pipeline | static4k | static1m | ws)
                    run_load "$round" "$server" "$port" "$scenario"
                    sleep 1
                    ;;
                *) die "unknown scenario $scenario" ;;
                esac
            done
            stop_server
        done
    done
done

log "results: $RESULTS"
python3 "$BENCH/summarize.py" "$RESULTS" --chart "$OUT/chart.png" | tee "$OUT/summary.md"
if [[ -f $TAIL && " $CONFIGS " == *" tail "* ]]; then
    python3 "$BENCH/summarize_tail.py" "$TAIL" | tee -a "$OUT/summary.md"
fi
