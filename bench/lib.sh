# Helpers the bench scripts share: `source "$BENCH/lib.sh"` (bash).

# The process $1 and all its descendants (prefork workers, nginx workers).
tree_pids() {
    local child
    echo "$1"
    for child in $(pgrep -P "$1" || true); do tree_pids "$child"; done
}

# utime + stime (clock ticks) over the tree of $1: fields 14 and 15 of
# /proc/PID/stat, counted after the ")" that ends the command name.
tree_cpu_ticks() {
    local pid stat f total=0
    for pid in $(tree_pids "$1"); do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        read -r -a f <<<"${stat##*) }"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# callgrind_prepare: from the repository root, builds hello (release) and
# makes the scratch folder $CALLGRIND_OUT, removed on exit.
callgrind_prepare() {
    cargo build --release -q -p hello
    CALLGRIND_OUT=$(mktemp -d)
    trap 'rm -rf "$CALLGRIND_OUT"' EXIT
}

# callgrind_instructions N PORT [HELLO_ARG...] -- CLIENT...
# After callgrind_prepare: runs ${CARGO_TARGET_DIR:-target}/release/hello (the
# build callgrind_prepare made) in one process under
# callgrind on 127.0.0.1:PORT with the HELLO_ARGs, waits until it accepts
# connections (up to 120 s: valgrind starts slowly), runs CLIENT... against
# it, stops it with SIGINT and prints the program's total count of
# instructions. Callgrind's file and hello's log are
# $CALLGRIND_OUT/cg.N and $CALLGRIND_OUT/log.N.
callgrind_instructions() {
    local out=$CALLGRIND_OUT n=$1 port=$2 hello=() pid i
    shift 2
    while [[ $1 != -- ]]; do
        hello+=("$1")
        shift
    done
    shift
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.$n" \
        "${CARGO_TARGET_DIR:-target}"/release/hello --bind "127.0.0.1:$port" "${hello[@]}" >"$out/log.$n" 2>&1 &
    pid=$!
    for ((i = 0; ; i++)); do
        # A probe connection; both runs make one, so it cancels out.
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        if ((i >= 600)); then
            echo "server did not start (see $out/log.$n)" >&2
            kill -KILL "$pid"
            return 1
        fi
        sleep 0.2
    done
    "$@"
    kill -INT "$pid"
    wait "$pid" || true
    callgrind_annotate "$out/cg.$n" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",","",$1); print $1; seen=1}'
}
