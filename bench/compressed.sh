#!/usr/bin/env bash
# Compressed input, all in one run on the same generated file:
#   1. `meterflow ingest` of the plain file and of its `.gz` (`gzip -6`), end to end (SQLite),
#   2. inflating the `.gz` alone with meterflow's streaming decompressor, output thrown away
#      (bench/src/bin/inflate_file.rs): the rate at which a later part of a handed-over `.gz`
#      skips to its offset, since it decompresses the object from its start again,
#   3. `gzip -dc` (the system's zlib) on the same file, as a reference for 2.
#
#   bench/compressed.sh              # ~1 GB plain file; needs ~1.3 GB of disk in bench/out
#   SIZE_METERS=1000 bench/compressed.sh   # smaller, quicker
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

ingest() { # file -> "seconds rows_accepted"
  rm -f "$out/compressed.db"*
  /usr/bin/time -f "%e" -o "$out/time.txt" "$mf" --store "$out/compressed.db" ingest --json "$1" > "$out/compressed.json"
  echo "$(cat "$out/time.txt") $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rows_accepted'])" "$out/compressed.json")"
}
read -r plain_s plain_rows < <(ingest "$out/$main.csv")
read -r gz_s gz_rows < <(ingest "$out/$main.csv.gz")
# The same rows from both, or the figures mean nothing.
if [ "$plain_rows" != "$gz_rows" ] || [ "$plain_rows" != $((meters * 365)) ]; then
  echo "rows differ: plain $plain_rows, gz $gz_rows, expected $((meters * 365))" >&2
  exit 1
fi
read -r inflated inflate_s inflate_mbs < <("$inflate" "$out/$main.csv.gz")
[ "$inflated" = "$size" ] || { echo "inflated $inflated bytes, expected $size" >&2; exit 1; }
/usr/bin/time -f "%e" -o "$out/time.txt" gzip -dc "$out/$main.csv.gz" > /dev/null
zlib_s=$(cat "$out/time.txt")

mbs() { python3 -c "print(round($size / 1e6 / $1))"; }
cat <<REPORT
$((size / 1000000)) MB plain, $((gz_size / 1000000)) MB gzip -6 ($meters meters x 365 days, $plain_rows rows from each)

| what | seconds | MB/s of plain CSV | vs plain ingest |
|---|---|---|---|
| meterflow ingest, plain file | $plain_s | $(mbs "$plain_s") | 1.00x |
| meterflow ingest, .gz | $gz_s | $(mbs "$gz_s") | $(python3 -c "print(f'{$plain_s/$gz_s:.2f}x')") |
| inflate alone (meterflow's decompressor) | $inflate_s | $inflate_mbs | |
| gzip -dc (system zlib) | $zlib_s | $(mbs "$zlib_s") | |
REPORT
