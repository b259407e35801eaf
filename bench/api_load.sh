#!/usr/bin/env bash
# The HTTP API under load on loopback: `meterflow serve` over a SQLite store of METERS meters ×
# 365 days, driven by wrk (Debian's package; installed here if missing) with random meters,
# for a 1-day and a 1-year range: one request at a time, then 16 at a time alone and while
# `meterflow ingest` writes another year of the same meters into the same store. Prints wrk's
# requests/s and latency percentiles.
#
#   bench/api_load.sh                 # 9000 meters, 10 s per run
#   METERS=2000 SECONDS_PER_RUN=5 bench/api_load.sh
#   MF=bench/out/<rev>-meterflow bench/api_load.sh   # serve with another build (a "before";
#                                     # `before` in env.sh makes one), the store made by this one
#   AB=<other meterflow binary> ROUNDS=5 bench/api_load.sh   # only the 1-year one-connection
#                                     # run, alternating between this build and AB
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

meters="${METERS:-9000}"
seconds="${SECONDS_PER_RUN:-10}"
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; }
cargo build --release -q -p meterflow-cli --bin meterflow
mf="$target/release/meterflow"
server_bin="${MF:-$mf}"

gen "load-$meters" "$meters" 365
[ -s "$out/load-extra-$meters.csv" ] || "$mf" generate --format wide --meters "$meters" --days 365 \
  --seed 8 --start 2020-01-01 --out "$out/load-extra-$meters.csv" 2>/dev/null
base="$out/load-$meters.db"
[ -s "$base" ] || "$mf" --store "$base" ingest "$out/load-$meters.csv" > /dev/null
# Each run serves a fresh copy: the ingest below writes into it.
store="$out/load-run.db"
rm -f "$store"*
cp "$base" "$store"

servers="" writer=""
trap 'kill $servers $writer 2>/dev/null || true' EXIT
serve() { # binary store: serves the store with that build; sets `port`
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$1" --store "$2" serve --listen "127.0.0.1:$port" 2>> "$out/serve.log" &
  servers="$servers $!"
  # Ready when /health answers (polled; no fixed wait).
  for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$port/health" > /dev/null && break
    python3 -c 'import time; time.sleep(0.05)'
  done
  curl -sf "http://127.0.0.1:$port/health" > /dev/null || { echo "serve did not start" >&2; exit 1; }
}
: > "$out/serve.log"
serve "$server_bin" "$store"

# A random meter per request (EE000001..EE<meters>).
cat > "$out/random_meter.lua" <<LUA
math.randomseed(7)
request = function()
  local id = string.format("EE%06d", math.random(1, $meters))
  return wrk.format("GET", "/meters/" .. id .. "/daily?" .. os.getenv("RANGE"))
end
LUA

run() { # label, range query[, wrk threads, connections]
  echo "== $1"
  RANGE="$2" wrk -t"${3:-2}" -c"${4:-16}" -d"${seconds}s" --latency -s "$out/random_meter.lua" "http://127.0.0.1:$port" |
    grep -E "Requests/sec|^ +(50|90|99)%|Non-2xx|Socket errors"
}

if [ -n "${AB:-}" ]; then
  # Two builds side by side, each on its own copy of the store: the 1-year one-connection
  # run alternating between them for ROUNDS rounds (a before/after in one run), then stop.
  cp "$base" "$out/load-ab.db"
  after_port=$port
  serve "$AB" "$out/load-ab.db"
  before_port=$port
  # A faster wrong answer is no answer: both builds give byte-identical bodies (JSON and CSV)
  # for the first, a middle and the last meter over the year.
  for id in 1 $((meters / 2)) "$meters"; do
    for format in "" "&format=csv"; do
      url="http://127.0.0.1:PORT/meters/$(printf 'EE%06d' "$id")/daily?from=2019-01-01&to=2019-12-31$format"
      a=$(curl -sf "${url/PORT/$before_port}") b=$(curl -sf "${url/PORT/$after_port}")
      if [[ "$a" != *2019-12-31* || "$a" != "$b" ]]; then
        echo "the two builds answer $url differently (or not at all)" >&2
        exit 1
      fi
    done
  done
  echo "checked: both builds answer 3 meters x 1 year byte-identically (JSON and CSV)"
  for round in $(seq 1 "${ROUNDS:-5}"); do
    for side in before after; do
      if [ "$side" = before ]; then port=$before_port bin=$AB; else port=$after_port bin=$server_bin; fi
      run "round $round, $side ($bin): 1 year, one connection" "from=2019-01-01&to=2019-12-31" 1 1
    done
  done
  exit 0
fi

echo "server: $server_bin; store: $meters meters x 365 days ($(du -h "$store" | cut -f1)); wrk 2 threads, 16 connections, ${seconds}s per run"
# One request at a time: what one request costs, without queueing behind others.
run "1 day, one connection" "from=2019-06-01&to=2019-06-01" 1 1
run "1 year, one connection" "from=2019-01-01&to=2019-12-31" 1 1
run "1 day, alone" "from=2019-06-01&to=2019-06-01"
run "1 year, alone" "from=2019-01-01&to=2019-12-31"
# Another year of the same meters, ingested again and again (idempotent) while wrk runs.
(while :; do "$mf" --store "$store" ingest "$out/load-extra-$meters.csv" > /dev/null 2>&1; done) &
writer=$!
run "1 day, during ingests" "from=2019-06-01&to=2019-06-01"
run "1 year, during ingests" "from=2019-01-01&to=2019-12-31"
kill "$writer"
