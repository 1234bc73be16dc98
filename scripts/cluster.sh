#!/usr/bin/env bash
# Starts the docker-compose.yml topology from local binaries, for machines
# without Docker: one redis-server and N keyrelay instances sharing it, all
# on loopback. (There is no load balancer: point each peer at any instance;
# the load tester can spread peers over all of them.)
#
#   scripts/cluster.sh [instances] [first-port]     default: 2 instances from 8081
#
# Redis listens on first-port - 1 (8080 by default); instance i on
# first-port + i - 1. Ctrl-C stops everything.
set -euo pipefail
n=${1:-2}
base=${2:-8081}
redis_port=$((base - 1))
dir=$(mktemp -d)
cd "$(dirname "$0")/.."

command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
go build -o "$dir/keyrelay" ./cmd/keyrelay

pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
pids+=($!)
for _ in $(seq 50); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done

for i in $(seq 1 "$n"); do
  port=$((base + i - 1))
  "$dir/keyrelay" --addr "127.0.0.1:$port" --redis-url "redis://127.0.0.1:$redis_port" 2>"$dir/relay$i.log" &
  pids+=($!)
done
for i in $(seq 1 "$n"); do
  port=$((base + i - 1))
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "relay $i: ws://127.0.0.1:$port/v1/ws   (log: $dir/relay$i.log)"
done
echo "redis:   127.0.0.1:$redis_port"
echo "Ctrl-C to stop."
wait
