#!/usr/bin/env bash
# One large file on 1 and 2 threads (issue 14, goal 2), all in one run on the main file of
# bench/ingest.sh (page-cached):
#   1. the splitting stage alone (bench/src/bin/split_file.rs: parse and pack into envelope
#      records, the records dropped): the file read whole by one thread, then cut in pieces
#      and read by 1 and by 2 threads;
#   2. `meterflow ingest` end to end into SQLite, the same three ways.
# Every run must accept every row of the file.
#
#   bench/scaling.sh                  # ~1 GB file
#   SIZE_METERS=1000 bench/scaling.sh # smaller, quicker
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

cargo build --release -q -p meterflow-cli -p meterflow-bench --bin meterflow --bin split_file
mf="$target/release/meterflow"
split="$target/release/split_file"

meters="${SIZE_METERS:-9000}"
main="main-$meters"
gen "$main" "$meters" 365
file="$out/$main.csv"
size=$(stat -c %s "$file")
rows=$((meters * 365))
cat "$file" > /dev/null

# timed COMMAND...: runs it, prints "seconds cpu_seconds" (user + system) and keeps its stdout
# in $out/timed.out.
timed() {
  /usr/bin/time -f "%e %U %S" -o "$out/time.txt" "$@" > "$out/timed.out"
  read -r e u s < "$out/time.txt"
  echo "$e $(python3 -c "print(round($u + $s, 2))")"
}
check() { # what accepted
  [ "$2" = "$rows" ] || { echo "$1: $2 rows accepted, expected $rows" >&2; exit 1; }
}
line() { # what threads seconds cpu base_seconds
  echo "| $1 | $2 | $3 | $(python3 -c "print(round($size / 1e6 / $3))") | $4 | $(python3 -c "print(f'{$5 / $3:.2f}x')") |"
}

report=()
base=""
for way in "whole 1 0" "pieces 1 32768" "pieces 2 32768"; do
  read -r name jobs piece <<< "$way"
  read -r s cpu < <(timed "$split" "$file" "$jobs" "$piece")
  read -r _ _ _ _ accepted < "$out/timed.out"
  check "split_file $way" "$accepted"
  base=${base:-$s}
  report+=("$(line "splitting stage alone, $name" "$jobs" "$s" "$cpu" "$base")")
done
base=""
for way in "whole 1 0" "pieces 1 32768" "pieces 2 32768"; do
  read -r name jobs piece <<< "$way"
  rm -f "$out/scaling.db"*
  read -r s cpu < <(timed "$mf" --store "$out/scaling.db" ingest --json --jobs "$jobs" --piece-kib "$piece" "$file")
  accepted=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rows_accepted'])" "$out/timed.out")
  check "ingest $way" "$accepted"
  base=${base:-$s}
  report+=("$(line "meterflow ingest (SQLite), $name" "$jobs" "$s" "$cpu" "$base")")
done

cat <<REPORT
$((size / 1000000)) MB wide file ($meters meters x 365 days, $rows rows accepted by every run); pieces of 32 MiB

| what | threads | seconds | MB/s | CPU seconds | vs read whole |
|---|---|---|---|---|---|
$(printf '%s\n' "${report[@]}")
REPORT
