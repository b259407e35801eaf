#!/usr/bin/env bash
# End-to-end benchmark of local mode, all in one run on the same generated file:
#   1. `meterflow ingest` (parse → envelope records → in-process stream → SQLite store),
#   2. the parser alone on the same file (bench/src/bin/parse_file.rs),
#   3. DuckDB and polars computing the same daily sums from the same file, 2 threads each
#      (PyPI duckdb and polars, in bench/.venv), with their peak memory,
# and the peak RSS of `ingest` for a ~0.5 GB and a ~2 GB file (it should stay flat).
#
#   bench/ingest.sh            # ~1 GB main file; needs ~4 GB of disk in bench/out
#   SIZE_METERS=1000 bench/ingest.sh   # smaller, quicker
#   BEFORE=<commit> bench/ingest.sh    # also that commit's ingest and parser, in the same run
#   ROUNDS=5 bench/ingest.sh           # rounds of the timed runs (default 3)
#
# One run of each is noisy on a shared 2-core machine (±10 %), so the ingests (before and
# after) and the peers run in ROUNDS alternating rounds, and each row reports its median round
# (seconds, and that round's user/system time and peak RSS), with every round's seconds below.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

cargo build --release -q -p meterflow-cli -p meterflow-bench --bin meterflow --bin parse_file
mf="$target/release/meterflow"
pf="$target/release/parse_file"

[ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
bench/.venv/bin/python -c 'import duckdb, polars' 2>/dev/null || bench/.venv/bin/pip install -q duckdb polars

# ~308 bytes per meter-day: 9000 meters x 365 days ≈ 1 GB.
meters="${SIZE_METERS:-9000}"
# Files are named by their meters, so a cached file of another size is never reused.
main="main-$meters" half="half-$((meters / 2))" double="double-$((meters * 2))"
gen "$main" "$meters" 365
[ -s "$out/$main.expected.csv" ] || "$mf" generate --format wide --meters "$meters" --days 365 --seed 7 \
  --out "$out/$main.csv" --expected "$out/$main.expected.csv" 2>/dev/null
size=$(stat -c %s "$out/$main.csv")
echo "file: $out/$main.csv, $((size / 1000000)) MB"

cat "$out/$main.csv" > /dev/null # page cache: every contender reads from memory

# timed_ingest METERFLOW: ingests the main file into a fresh store; prints "seconds max_rss_kib
# user_s system_s" (the summary in ingest.json).
timed_ingest() {
  rm -f "$out/ingest.db"*
  /usr/bin/time -f "%e %M %U %S" -o "$out/time.txt" "$1" --store "$out/ingest.db" ingest --json "$out/$main.csv" > "$out/ingest.json"
  cat "$out/time.txt"
}
if [ -n "${BEFORE:-}" ]; then
  before "$BEFORE" meterflow-cli meterflow
  before "$BEFORE" meterflow-bench parse_file
  rev=$(git rev-parse --short "$BEFORE")
  read -r _ before_parse_s before_parse_mbs _ _ < <("$out/$rev-parse_file" "$out/$main.csv")
fi

# The peers, each in its own process (peak RSS from /usr/bin/time), 2 threads like meterflow,
# computing the same answer: one exact DECIMAL total per meter-day. Each prints its seconds
# (reading and summing only, the interpreter's start excluded) and its count of meter-days.
cat > "$out/duckdb_daily.py" <<'PY'
import sys, time, duckdb
path = sys.argv[1]
with open(path) as f:
    intervals = f.readline().strip().split(",")[2:]
total = " + ".join(f'"{c}"::DECIMAL(18,6)' for c in intervals)
con = duckdb.connect()
con.execute("SET threads = 2")
t = time.perf_counter()
con.execute(f"""CREATE TABLE daily AS SELECT "Meter", "Date", {total} AS total FROM read_csv('{path}', header = true)""")
n = con.execute("SELECT count(*) FROM daily").fetchone()[0]
print(f"{time.perf_counter() - t:.3f} {n}")
PY
cat > "$out/polars_daily.py" <<'PY'
import os, sys, time
os.environ["POLARS_MAX_THREADS"] = "2"
import polars as pl
path = sys.argv[1]
with open(path) as f:
    intervals = f.readline().strip().split(",")[2:]
t = time.perf_counter()
daily = (
    pl.scan_csv(path, schema_overrides={c: pl.Decimal(18, 6) for c in intervals})
    .select("Meter", "Date", pl.sum_horizontal(intervals).alias("total"))
    .collect()
)
print(f"{time.perf_counter() - t:.3f} {daily.height}")
PY
peer() { # script -> "seconds meter_days max_rss_kib"
  /usr/bin/time -f "%M" -o "$out/peer_rss.txt" bench/.venv/bin/python "$out/$1" "$out/$main.csv" > "$out/peer.txt"
  echo "$(cat "$out/peer.txt") $(cat "$out/peer_rss.txt")"
}

# The timed runs, in alternating rounds; each line of a contender's file is one round.
rounds="${ROUNDS:-3}"
rm -f "$out/rounds-"*.txt
for _ in $(seq "$rounds"); do
  [ -z "${BEFORE:-}" ] || timed_ingest "$out/$rev-meterflow" >> "$out/rounds-before.txt"
  timed_ingest "$mf" >> "$out/rounds-ingest.txt"
  peer duckdb_daily.py >> "$out/rounds-duckdb.txt"
  peer polars_daily.py >> "$out/rounds-polars.txt"
done
# median FILE: the round whose first field (seconds) is the median; then "all:" every round's.
median() {
  python3 - "$1" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
rows.sort(key=lambda r: float(r[0]))
print(" ".join(rows[(len(rows) - 1) // 2]), "all:" + "/".join(r[0] for r in rows))
PY
}
if [ -n "${BEFORE:-}" ]; then
  read -r before_s before_rss before_user before_sys before_all < <(median "$out/rounds-before.txt")
fi
read -r ingest_s ingest_rss ingest_user ingest_sys ingest_all < <(median "$out/rounds-ingest.txt")
ingest_mbs=$(python3 -c "print(round($size/1e6/$ingest_s))")

# A fast wrong answer is no answer (the store of the last round's ingest): every row accepted,
# and three meters' daily totals (first, middle, last) read back through `meterflow query`
# equal the generator's oracle exactly.
bench/.venv/bin/python - "$out/ingest.json" "$out/$main.expected.csv" "$mf" "$out/ingest.db" "$meters" <<'PY'
import csv, json, subprocess, sys
from decimal import Decimal
summary, expected, mf, db, meters = sys.argv[1:6]
s = json.load(open(summary))
rows = int(meters) * 365
assert (s["rows_accepted"], s["rows_rejected"]) == (rows, 0), s
want = {}
with open(expected) as f:
    for r in csv.DictReader(f):
        want.setdefault(r["series"], {})[r["date"]] = Decimal(r["total"])
series = sorted(want)
for meter in (series[0], series[len(series) // 2], series[-1]):
    out = subprocess.run([mf, "--store", db, "query", meter, "--from", "2019-01-01", "--to", "2019-12-31"],
                         check=True, capture_output=True, text=True).stdout
    got = {d["date"]: Decimal(str(d["total"])) for d in json.loads(out, parse_float=Decimal)["days"]}
    assert got == want[meter], f"{meter}: totals differ from the oracle"
print(f"checked: {rows} rows accepted, 0 rejected; 3 meters x 365 days equal the oracle", file=sys.stderr)
PY

read -r _ parse_s parse_mbs _ _ < <("$pf" "$out/$main.csv")

read -r duck_s duck_n duck_rss duck_all < <(median "$out/rounds-duckdb.txt")
read -r polars_s polars_n polars_rss polars_all < <(median "$out/rounds-polars.txt")
for n in "$duck_n" "$polars_n"; do
  [ "$n" = $((meters * 365)) ] || { echo "a peer found $n meter-days, expected $((meters * 365))" >&2; exit 1; }
done
duck_mbs=$(python3 -c "print(round($size/1e6/$duck_s))")
polars_mbs=$(python3 -c "print(round($size/1e6/$polars_s))")
best_s=$(python3 -c "print(min($duck_s, $polars_s))")

gen "$half" $((meters / 2)) 365
gen "$double" $((meters * 2)) 365
rss() {
  rm -f "$out/rss.db"*
  /usr/bin/time -f "%M" -o "$out/rss.txt" "$mf" --store "$out/rss.db" ingest --json "$out/$1.csv" > /dev/null
  cat "$out/rss.txt"
}
rss_half=$(rss "$half")
rss_double=$(rss "$double")
half_mb=$(( $(stat -c %s "$out/$half.csv") / 1000000 ))
double_mb=$(( $(stat -c %s "$out/$double.csv") / 1000000 ))

# The before rows, each ending its line, or nothing (an empty line would end the table).
before_rows=""
if [ -n "${BEFORE:-}" ]; then
  before_rows="| before ($rev): meterflow ingest (user $before_user s, system $before_sys s) | $before_s | $(python3 -c "print(round($size/1e6/$before_s))") | $before_rss | $(python3 -c "print(f'{$best_s/$before_s:.2f}x')") |
| before ($rev): meterflow parser alone | $before_parse_s | $before_parse_mbs | | $(python3 -c "print(f'{$best_s/$before_parse_s:.2f}x')") |
"
fi

cat <<REPORT
| what (same ${size} byte file, page-cached, 2 threads) | seconds | MB/s | peak RSS (KiB) | vs the best peer |
|---|---|---|---|---|
${before_rows}| meterflow ingest, end to end (SQLite store; user $ingest_user s, system $ingest_sys s) | $ingest_s | $ingest_mbs | $ingest_rss | $(python3 -c "print(f'{$best_s/$ingest_s:.2f}x')") |
| meterflow parser alone | $parse_s | $parse_mbs | | $(python3 -c "print(f'{$best_s/$parse_s:.2f}x')") |
| DuckDB read_csv + DECIMAL daily sums | $duck_s | $duck_mbs | $duck_rss | $(python3 -c "print(f'{$best_s/$duck_s:.2f}x')") |
| polars scan_csv + Decimal sum_horizontal | $polars_s | $polars_mbs | $polars_rss | $(python3 -c "print(f'{$best_s/$polars_s:.2f}x')") |

Each row is the median of $rounds alternating rounds; every round's seconds: $(if [ -n "${BEFORE:-}" ]; then echo "before ${before_all#all:}, "; fi)ingest ${ingest_all#all:}, DuckDB ${duck_all#all:}, polars ${polars_all#all:}.

| ingest peak RSS | file | max RSS (KiB) |
|---|---|---|
| half | ${half_mb} MB | $rss_half |
| main | $((size / 1000000)) MB | $ingest_rss |
| double | ${double_mb} MB | $rss_double |
REPORT
