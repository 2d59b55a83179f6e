# Shell helpers of the benchmark scripts (sourced: run.sh, alternate.sh, slow_disk.sh).

wait_port() { # wait_port PORT [TRIES]: until something accepts on 127.0.0.1:PORT (TRIES x 50 ms, 10 s by default)
    for _ in $(seq 1 "${2:-200}"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on port $1" >&2
    return 1
}
