#!/usr/bin/env bash
# Compressed input, all in one run on the same generated file:
#   1. `meterflow ingest` of the plain file and of its `.gz` (`gzip -6`), end to end (SQLite),
#   2. inflating the `.gz` alone with meterflow's streaming decompressor, output thrown away
#      (bench/src/bin/inflate_file.rs): the rate at which a later part of a handed-over `.gz`
#      skips to its offset, since it decompresses the object from its start again,
#   3. `gzip -dc` (the system's zlib) on the same file, as a reference for 2,
#   4. the `.gz` read as a Lambda hand-over reads it in $PARTS parts (default 10): each part
#      entering at the access point the previous one kept (inflate_file FILE PARTS), against
#      restarting every part from the start (the cost before access points: the cuts' offsets).
#
#   bench/compressed.sh              # ~1 GB plain file; needs ~1.3 GB of disk in bench/out
#   SIZE_METERS=1000 bench/compressed.sh   # smaller, quicker
#   BEFORE=<commit> bench/compressed.sh    # also that commit's build, in the same run (rows
#                                          # "before"): a before/after table
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

cargo build --release -q -p meterflow-cli -p meterflow-bench --bin meterflow --bin inflate_file
mf="$target/release/meterflow"
inflate="$target/release/inflate_file"

meters="${SIZE_METERS:-9000}"
main="main-$meters"
gen "$main" "$meters" 365
[ -s "$out/$main.csv.gz" ] || gzip -6 -c "$out/$main.csv" > "$out/$main.csv.gz"
size=$(stat -c %s "$out/$main.csv")
gz_size=$(stat -c %s "$out/$main.csv.gz")
cat "$out/$main.csv" "$out/$main.csv.gz" > /dev/null # page cache for every contender

ingest() { # meterflow file -> "seconds rows_accepted"
  rm -f "$out/compressed.db"*
  /usr/bin/time -f "%e" -o "$out/time.txt" "$1" --store "$out/compressed.db" ingest --json "$2" > "$out/compressed.json"
  echo "$(cat "$out/time.txt") $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rows_accepted'])" "$out/compressed.json")"
}
mbs() { python3 -c "print(round($size / 1e6 / $1))"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }

# measure LABEL METERFLOW INFLATE_FILE: the table's rows for one build.
measure() {
  local label=$1 mf=$2 inflate=$3 plain_s plain_rows gz_s gz_rows inflated inflate_s inflate_mbs
  read -r plain_s plain_rows < <(ingest "$mf" "$out/$main.csv")
  read -r gz_s gz_rows < <(ingest "$mf" "$out/$main.csv.gz")
  # The same rows from both, or the figures mean nothing.
  if [ "$plain_rows" != "$gz_rows" ] || [ "$plain_rows" != $((meters * 365)) ]; then
    echo "$label: rows differ: plain $plain_rows, gz $gz_rows, expected $((meters * 365))" >&2
    exit 1
  fi
  read -r inflated inflate_s inflate_mbs < <("$inflate" "$out/$main.csv.gz")
  [ "$inflated" = "$size" ] || { echo "$label: inflated $inflated bytes, expected $size" >&2; exit 1; }
  echo "| $label: meterflow ingest, plain file | $plain_s | $(mbs "$plain_s") | 1.00x |"
  echo "| $label: meterflow ingest, .gz | $gz_s | $(mbs "$gz_s") | $(ratio "$plain_s" "$gz_s") |"
  echo "| $label: inflate alone (meterflow's decompressor) | $inflate_s | $inflate_mbs | |"
}

rows=()
if [ -n "${BEFORE:-}" ]; then
  before "$BEFORE" meterflow-cli meterflow
  before "$BEFORE" meterflow-bench inflate_file
  rev=$(git rev-parse --short "$BEFORE")
  rows+=("$(measure "before ($rev)" "$out/$rev-meterflow" "$out/$rev-inflate_file")")
fi
rows+=("$(measure "after ($(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo +changes))" "$mf" "$inflate")")
/usr/bin/time -f "%e" -o "$out/time.txt" gzip -dc "$out/$main.csv.gz" > /dev/null
zlib_s=$(cat "$out/time.txt")
parts="${PARTS:-10}"
read -r _ parts_bytes parts_s skipped restart < <("$inflate" "$out/$main.csv.gz" "$parts" | tail -1)
restart=${restart#restart_bytes=}

cat <<REPORT
$((size / 1000000)) MB plain, $((gz_size / 1000000)) MB gzip -6 ($meters meters x 365 days, $((meters * 365)) rows from each)

| what | seconds | MB/s of plain CSV | vs plain ingest of the same build |
|---|---|---|---|
$(printf '%s\n' "${rows[@]}")
| gzip -dc (system zlib) | $zlib_s | $(mbs "$zlib_s") | |

The .gz read in $parts parts, as hand-overs read it:

| how each part starts | bytes inflated | vs the file | seconds |
|---|---|---|---|
| at the previous part's access point | $parts_bytes ($skipped skipped) | $(ratio "$parts_bytes" "$size") | $parts_s |
| from the start again (before access points) | $restart | $(ratio "$restart" "$size") | |
REPORT
