#!/usr/bin/env bash
# Starts the docker-compose.yml topology from local binaries, for machines
# without Docker: one redis-server and N keyrelay instances sharing it, all
# on loopback. (There is no load balancer: point each peer at any instance;
# the load tester can spread peers over all of them.)
#
#   scripts/cluster.sh [options] [instances] [first-port]
#
#   instances         relays to start (default 2)
#   first-port        relay i listens on first-port + i - 1; default: each
#                     relay on a free port the kernel picks (--addr
#                     127.0.0.1:0; the port is read from its log)
#   --redis-port N    Redis's port; default: a free port below the
#                     ephemeral range, tried again elsewhere if taken
#   --check           start everything, check each relay's /healthz and
#                     /readyz, then stop and exit 0 (for tests and CI)
#   --keep-logs       keep the logs' directory after a normal stop
#   CLUSTER_START_TIMEOUT   seconds each process has to come up (default 30)
#
# Every port is checked to be held by the process this script started
# (Redis by its process ID, a relay by the address in its own log), so a
# server already listening there is never mistaken for ours. If Redis or
# any relay does not come up, or exits later, the script stops everything
# it started and exits 1, keeping the logs and printing their directory.
# Ctrl-C (or SIGTERM) stops everything and exits 0.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "$0"; }

check=0 keep_logs=0 redis_port="" pos=()
while [ $# -gt 0 ]; do
  case $1 in
    --check) check=1 ;;
    --keep-logs) keep_logs=1 ;;
    --redis-port) [ $# -ge 2 ] || { usage >&2; exit 2; }; redis_port=$2; shift ;;
    --redis-port=*) redis_port=${1#*=} ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "cluster.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) pos+=("$1") ;;
  esac
  shift
done
[ "${#pos[@]}" -le 2 ] || { usage >&2; exit 2; }
n=${pos[0]:-2}
base=${pos[1]:-}
timeout=${CLUSTER_START_TIMEOUT:-30}
isnum() { [[ $1 =~ ^[0-9]+$ ]]; }
bad() { echo "cluster.sh: $*" >&2; exit 2; }
if ! isnum "$n" || [ "$n" -lt 1 ] || [ "$n" -gt 64 ]; then bad "instances must be 1 to 64, not '$n'"; fi
if [ -n "$base" ] && { ! isnum "$base" || [ "$base" -lt 1 ] || [ $((base + n - 1)) -gt 65535 ]; }; then bad "bad first-port '$base'"; fi
if [ -n "$redis_port" ] && { ! isnum "$redis_port" || [ "$redis_port" -lt 1 ] || [ "$redis_port" -gt 65535 ]; }; then bad "bad --redis-port '$redis_port'"; fi
isnum "$timeout" || bad "bad CLUSTER_START_TIMEOUT '$timeout'"

cd "$(dirname "$0")/.."
for tool in redis-server redis-cli curl go; do
  command -v "$tool" >/dev/null || { echo "cluster.sh: $tool is not installed (Debian: apt-get install redis-server curl; Go from go.dev)" >&2; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/keyrelay-cluster.XXXXXX")
pids=() names=()
failed=0
stopping=0

log() { printf 'cluster.sh: %s\n' "$*" >&2; }

# stop_all sends SIGTERM to everything this script started, then SIGKILL
# to what is still running after 10 s.
stop_all() {
  local pid i
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 100; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stopping=1
  [ "$failed" = 1 ] && status=1
  stop_all
  if [ "$status" != 0 ]; then
    log "FAILED; everything it started is stopped; logs kept in $dir"
  elif [ "$keep_logs" = 1 ]; then
    log "stopped; logs kept in $dir"
  else
    rm -rf "$dir"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# fail says why, with the end of the log concerned, and exits 1.
fail() {
  failed=1
  log "$1"
  if [ -n "${2:-}" ] && [ -s "$2" ]; then
    log "last lines of $2:"
    tail -n 5 "$2" | sed 's/^/    /' >&2
  fi
  exit 1
}

# port_listens reports whether something accepts connections on the port.
port_listens() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_redis starts redis-server on port $1 and waits until that very
# process answers (INFO's process_id is its PID). It returns 1 if the
# process exited (the port is most likely taken).
start_redis() {
  local port=$1 pid deadline
  : >"$dir/redis.log"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --daemonize no --dir "$dir" --logfile "$dir/redis.log" &
  pid=$!
  deadline=$((SECONDS + timeout))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      return 1
    fi
    if [ "$(redis-cli -p "$port" INFO server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')" = "$pid" ]; then
      pids+=("$pid") names+=("redis")
      return 0
    fi
    sleep 0.1
  done
  pids+=("$pid") names+=("redis")
  fail "redis-server (pid $pid) did not answer on 127.0.0.1:$port within ${timeout}s" "$dir/redis.log"
}

log "building keyrelay (logs in $dir)"
go build -o "$dir/keyrelay" ./cmd/keyrelay

if [ -n "$redis_port" ]; then
  start_redis "$redis_port" || fail "redis-server could not listen on 127.0.0.1:$redis_port (taken?)" "$dir/redis.log"
else
  ok=0
  for _ in 1 2 3 4 5 6 7 8; do
    # Below Linux's ephemeral range (32768-60999), so that no outgoing
    # connection holds it; the process check catches any collision.
    redis_port=$((20000 + RANDOM % 12000))
    port_listens "$redis_port" && continue
    if start_redis "$redis_port"; then ok=1; break; fi
  done
  [ "$ok" = 1 ] || fail "redis-server could not listen on any port tried (last: $redis_port)" "$dir/redis.log"
fi
echo "redis:   127.0.0.1:$redis_port (pid ${pids[0]}, log $dir/redis.log)"

level=info # the "listening" line that gives the address is at info
[ "${KEYRELAY_LOG_LEVEL:-}" = debug ] && level=debug
addrs=()
for i in $(seq 1 "$n"); do
  if [ -n "$base" ]; then addr=127.0.0.1:$((base + i - 1)); else addr=127.0.0.1:0; fi
  "$dir/keyrelay" --addr "$addr" --redis-url "redis://127.0.0.1:$redis_port" \
    --log-format text --log-level "$level" >"$dir/relay$i.log" 2>&1 &
  pids+=($!) names+=("relay $i")
done
for i in $(seq 1 "$n"); do
  pid=${pids[$i]} rlog=$dir/relay$i.log addr=""
  deadline=$((SECONDS + timeout))
  while :; do
    kill -0 "$pid" 2>/dev/null || fail "relay $i (pid $pid) exited before it was ready" "$rlog"
    # The address this very process listens on, from its own log.
    [ -n "$addr" ] || addr=$(sed -n 's/.*msg=listening addr=\([^ ]*\).*/\1/p' "$rlog" | head -n 1)
    if [ -n "$addr" ] && curl -fsS -m 2 -o /dev/null "http://$addr/healthz" 2>/dev/null &&
      curl -fsS -m 2 -o /dev/null "http://$addr/readyz" 2>/dev/null; then
      break
    fi
    [ "$SECONDS" -lt "$deadline" ] || fail "relay $i (pid $pid) not ready within ${timeout}s (address: ${addr:-none logged})" "$rlog"
    sleep 0.1
  done
  addrs+=("$addr")
  echo "relay $i: ws://$addr/v1/ws   (pid $pid, log $rlog)"
done

if [ "$check" = 1 ]; then
  # Everything must still run: a process that came up and died since
  # would make a green check a lie.
  for j in "${!pids[@]}"; do
    kill -0 "${pids[$j]}" 2>/dev/null || fail "${names[$j]} (pid ${pids[$j]}) exited"
  done
  echo "check passed: redis and $n relays ready"
  exit 0
fi

echo "Ctrl-C to stop."
# Watch every process: if one exits, the cluster is broken.
while :; do
  for j in "${!pids[@]}"; do
    if ! kill -0 "${pids[$j]}" 2>/dev/null; then
      [ "$stopping" = 1 ] && exit 0
      lf=$dir/redis.log
      [ "${names[$j]}" = redis ] || lf=$dir/relay${names[$j]#relay }.log
      fail "${names[$j]} (pid ${pids[$j]}) exited" "$lf"
    fi
  done
  sleep 1 &
  wait $! || true
done
