#!/usr/bin/env bash
# Peak memory of the splitter Lambda as deployed: the release `splitter` binary under
# `cargo lambda watch`, splitting objects of ~30 MB, ~450 MB and ~1.35 GB from moto's S3 onto
# a 4-shard moto Kinesis stream, with DELAY_MS (default 100) added to every moto response by
# bench/latency_proxy.py so that PutRecords calls overlap as they do against real Kinesis.
# Prints VmHWM (peak resident set) of the function process after each invocation; each size
# runs in a fresh process.
#
#   SIZES="large huge" EXTRA_ENV=MALLOC_ARENA_MAX=2 bench/splitter_rss.sh   # some sizes, more env
#
#   bench/splitter_rss.sh          # needs ~3 GB in bench/out, and cargo-lambda (pip, into bench/.venv)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
delay="${DELAY_MS:-100}"

moto_server="$(scripts/moto-venv)"
py="$(dirname "$moto_server")/python"
[ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
[ -x bench/.venv/bin/cargo-lambda ] || bench/.venv/bin/pip install -q cargo-lambda
export PATH="$root/bench/.venv/bin:$PATH"

cargo build --release -q -p meterflow-cli --bin meterflow
cargo build --release -q -p meterflow-splitter --bin splitter # so that no invoke waits for a build
for spec in "small 1000 100" "large 4000 365" "huge 12000 365"; do
  read -r -a fields <<<"$spec"
  set -- "${fields[@]}"
  [ -s "$out/rss-$1.csv" ] || "$target/release/meterflow" generate --format wide --meters "$2" --days "$3" --seed 3 --out "$out/rss-$1.csv" 2>/dev/null
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
moto_port=$(free_port); proxy_port=$(free_port); invoke_port=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pkill -f "invoke-port $invoke_port" 2>/dev/null || true; }
trap cleanup EXIT
"$moto_server" -p "$moto_port" >"$out/moto.log" 2>&1 & pids+=($!)
python3 bench/latency_proxy.py "$proxy_port" "$moto_port" "$delay" & pids+=($!)
"$py" - "$moto_port" "$out" <<'PY'
import sys, time, boto3
port, out = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
for _ in range(100):  # moto starting: poll until it answers
    try:
        s3 = boto3.client("s3", **kw); s3.list_buckets(); break
    except Exception:
        time.sleep(0.1)
s3.create_bucket(Bucket="meter-uploads")
boto3.client("kinesis", **kw).create_stream(StreamName="meterflow-fragments", ShardCount=4)
for name in ("small", "large", "huge"):
    s3.upload_file(f"{out}/rss-{name}.csv", "meter-uploads", f"{name}.csv")
PY

env_vars="METERFLOW_STREAM=meterflow-fragments,AWS_ENDPOINT_URL=http://127.0.0.1:$proxy_port,AWS_REGION=us-east-1,AWS_ACCESS_KEY_ID=testing,AWS_SECRET_ACCESS_KEY=testing${EXTRA_ENV:+,$EXTRA_ENV}"
echo "| object | bytes | rows | records | put calls | seconds | peak RSS (KiB) |"
echo "|---|---|---|---|---|---|---|"
for name in ${SIZES:-small large huge}; do
  cargo lambda watch --release -p meterflow-splitter --invoke-port "$invoke_port" --env-vars "$env_vars" >"$out/watch.log" 2>&1 &
  watch_pid=$!
  for _ in $(seq 300); do # until the watch server listens (it starts in a few seconds)
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $invoke_port), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
  python3 - "$root/testkit/fixtures/events/s3_put_encoded_key.json" "$name.csv" > "$out/rss-event.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
e["Records"][0]["s3"]["object"]["key"] = sys.argv[2]
print(json.dumps(e))
PY
  start=$(date +%s.%N)
  # The first invoke waits for the watch to build and start the function.
  response=$(cargo lambda invoke splitter --invoke-port "$invoke_port" --data-file "$out/rss-event.json" 2>/dev/null | tail -1)
  end=$(date +%s.%N)
  pid=$(pgrep -f "release/splitter" | head -1)
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  python3 - "$response" "$(stat -c %s "$out/rss-$name.csv")" "$start" "$end" "$hwm" "$name" <<'PY'
import json, sys
o = json.loads(sys.argv[1])["objects"][0]
assert o["outcome"] == "split" and o["rows_rejected"] == 0, o
print(f"| {sys.argv[6]} | {sys.argv[2]} | {o['rows_read']} | {o['records']} | {o['put_calls']} | {float(sys.argv[4]) - float(sys.argv[3]):.1f} | {sys.argv[5]} |")
PY
  kill "$watch_pid" 2>/dev/null || true
  pkill -f "release/splitter" 2>/dev/null || true
  wait "$watch_pid" 2>/dev/null || true
done
