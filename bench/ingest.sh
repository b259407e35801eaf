#!/usr/bin/env bash
# End-to-end benchmark of local mode, all in one run on the same generated file:
#   1. `meterflow ingest` (parse → envelope records → in-process stream → SQLite store),
#   2. the parser alone on the same file (bench/src/bin/parse_file.rs),
#   3. DuckDB computing the same daily sums from the same file (PyPI duckdb, in bench/.venv),
# and the peak RSS of `ingest` for a ~0.5 GB and a ~2 GB file (it should stay flat).
#
#   bench/ingest.sh            # ~1 GB main file; needs ~4 GB of disk in bench/out
#   SIZE_METERS=1000 bench/ingest.sh   # smaller, quicker
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

cargo build --release -q -p meterflow-cli -p meterflow-bench --bin meterflow --bin parse_file
mf="$target/release/meterflow"
pf="$target/release/parse_file"

if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q duckdb
fi

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

rm -f "$out/ingest.db"*
/usr/bin/time -f "%e %M" -o "$out/time.txt" "$mf" --store "$out/ingest.db" ingest --json "$out/$main.csv" > "$out/ingest.json"
read -r ingest_s ingest_rss < "$out/time.txt"
ingest_mbs=$(python3 -c "print(round($size/1e6/$ingest_s))")

# A fast wrong answer is no answer: every row accepted, and three meters' daily totals (first,
# middle, last) read back through `meterflow query` equal the generator's oracle exactly.
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

duck_s=$(bench/.venv/bin/python - "$out/$main.csv" <<'PY'
import sys, time, duckdb
path = sys.argv[1]
with open(path) as f:
    intervals = f.readline().strip().split(",")[2:]
# The same answer meterflow stores: one exact total per meter-day (DECIMAL keeps it exact).
total = " + ".join(f'"{c}"::DECIMAL(18,6)' for c in intervals)
con = duckdb.connect()
t = time.perf_counter()
con.execute(f"""CREATE TABLE daily AS SELECT "Meter", "Date", {total} AS total FROM read_csv('{path}', header = true)""")
n = con.execute("SELECT count(*) FROM daily").fetchone()[0]
print(f"{time.perf_counter() - t:.3f}")
print(f"duckdb: {n} meter-days", file=sys.stderr)
PY
)
duck_mbs=$(python3 -c "print(round($size/1e6/$duck_s))")

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

cat <<REPORT
| what (same ${size} byte file, page-cached) | seconds | MB/s | vs DuckDB |
|---|---|---|---|
| meterflow ingest, end to end (SQLite store) | $ingest_s | $ingest_mbs | $(python3 -c "print(f'{$duck_s/$ingest_s:.2f}x')") |
| meterflow parser alone | $parse_s | $parse_mbs | $(python3 -c "print(f'{$duck_s/$parse_s:.2f}x')") |
| DuckDB read_csv + DECIMAL daily sums | $duck_s | $duck_mbs | 1.00x |

| ingest peak RSS | file | max RSS (KiB) |
|---|---|---|
| half | ${half_mb} MB | $rss_half |
| main | $((size / 1000000)) MB | $ingest_rss |
| double | ${double_mb} MB | $rss_double |
REPORT
