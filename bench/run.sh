#!/usr/bin/env bash
# Runs the parse benchmark (release build, criterion) and prints MB/s for meterflow's parser
# and the csv-crate baseline, and their ratio on the wide corpus.
#
#   bench/run.sh                      # full corpora (~240 MB in memory), ~1 min after the build
#   METERFLOW_BENCH_SCALE=20 bench/run.sh   # smaller corpora, quicker and noisier
#   bench/run.sh wide                 # extra arguments go to criterion (here: a name filter)
#   BEFORE=<commit> bench/run.sh nem12   # that commit's parsers first, in the same run
#
# Honours CARGO_TARGET_DIR. Needs python3 for the summary (criterion's JSON estimates).
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

if [ -n "${BEFORE:-}" ]; then
  # The same benchmark of commit BEFORE first (its own bench/run.sh, in its worktree and
  # bench/out/target-before), so that a before/after comes from one run.
  rev=$(git rev-parse --short "$BEFORE")
  echo "== before: $rev"
  (cd "$(worktree "$rev")" && CARGO_TARGET_DIR="$out/target-before" BEFORE="" bash bench/run.sh "$@")
  echo "== after: this tree"
fi

crit="$target/criterion"
# Old estimates of skipped groups would otherwise be reported as fresh.
for g in wide-30min wide-gaps long-30min nem12-30min nem12-5min; do rm -rf "${crit:?}/$g"; done

cargo bench -p meterflow-bench --bench parse -- "$@"

python3 - "$crit" <<'PY'
import json, os, sys
out = sys.argv[1]
# Throughput in MB/s (10^6 bytes) from criterion's estimates: mean and median of the samples'
# per-iteration times, and the fastest sample (least disturbed by other load on the machine).
ours, base = {}, {}
print(f"{'corpus':12} {'parser':17} {'MB':>6} {'mean':>7} {'median':>7} {'best':>7}  (MB/s)")
for group in ["wide-30min", "wide-gaps", "long-30min", "nem12-30min", "nem12-5min"]:
    for bench in ["meterflow", "csv-f64-baseline"]:
        d = os.path.join(out, group, bench, "new")
        try:
            est = json.load(open(os.path.join(d, "estimates.json")))
            meta = json.load(open(os.path.join(d, "benchmark.json")))
            sample = json.load(open(os.path.join(d, "sample.json")))
        except FileNotFoundError:
            if bench == "meterflow":
                print(f"{group:12} {bench:17} skipped (see the bench output above)")
            continue
        size = meta["throughput"]["Bytes"]
        mbs = lambda ns: size / ns * 1e3
        fastest = min(t / n for t, n in zip(sample["times"], sample["iters"]))
        fig = {
            "mean": mbs(est["mean"]["point_estimate"]),
            "median": mbs(est["median"]["point_estimate"]),
            "best": mbs(fastest),
        }
        (ours if bench == "meterflow" else base)[group] = fig
        print(f"{group:12} {bench:17} {size/1e6:6.1f} {fig['mean']:7.0f} {fig['median']:7.0f} {fig['best']:7.0f}")
o, b = ours.get("wide-30min"), base.get("wide-30min")
if o and b:
    for k in ["median", "best"]:
        print(f"wide-30min meterflow/baseline ({k}): {o[k] / b[k]:.2f}x")
    g = ours.get("wide-gaps")
    if g:
        print(f"wide-gaps (5% blank cells) / wide-30min (median): {g['median'] / o['median']:.2f}x")
    print(f"goal wide >= 1500 MB/s (median): {'met' if o['median'] >= 1500 else 'NOT met'}; "
          f">= 4x baseline (median): {'met' if o['median'] >= 4 * b['median'] else 'NOT met'}")
PY
