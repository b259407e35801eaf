"""Scale and cost on paper: what meterflow on AWS needs and costs per day for 1 M, 10 M and
100 M meters at 48 readings a day, next to the original design's, from figures measured on
the real binary.

    .venv-moto/bin/python bench/scale_model.py measure   # writes bench/scale_figures.json
    .venv-moto/bin/python bench/scale_model.py model     # writes docs/SCALE.md's tables

`measure` generates a wide file (meterflow generate), splits it onto a Kinesis stream of an
in-process moto server with `meterflow ingest --stream` (the splitter's own driver), reads the
stream back to count records and bytes, and applies it with `meterflow replay` (the
aggregator's own driver) into a scratch SQLite store, timing both by their CPU seconds
(getrusage of the child: moto's time is not counted). `model` only does arithmetic on those
figures and the prices below; change a price or an assumption and run it again.
"""

import argparse
import json
import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "bench" / "scale_figures.json"
DOC = ROOT / "docs" / "SCALE.md"
BEGIN, END = "<!-- scale_model.py model: begin -->", "<!-- scale_model.py model: end -->"

# List prices, us-east-1, in USD, as we read the AWS pricing pages in 2026-12 (offline: the
# stored copies we could consult render some rates dynamically, so check them before
# budgeting). Keyspaces' on-demand rates are after the November 2024 cut ("up to 56%" off
# single-Region on-demand; writes were $1.45 per million before it). The comparison with the
# original design hardly depends on them: both pay the same rates, per row and per byte.
PRICES_DATE = "2026-12"
PRICE = {
    # Lambda, arm64: per GB-second, per million requests.
    "lambda_gb_s": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    # Kinesis on-demand: per stream-hour, per GB in (each record rounded up to 1 KiB),
    # per GB read by a consumer.
    "kds_od_stream_hour": 0.04,
    "kds_od_gb_in": 0.08,
    "kds_od_gb_out": 0.04,
    # Kinesis provisioned: per shard-hour, per million PUT payload units (25 KiB each).
    "kds_shard_hour": 0.015,
    "kds_put_unit": 0.014 / 1e6,
    # Keyspaces on-demand: per million write request units (1 KiB of row each, LOCAL_QUORUM)
    # and per GB-month stored.
    "ks_wru": 0.625 / 1e6,
    "ks_gb_month": 0.25,
    # S3 Standard: per GB-month, per PUT, per GET.
    "s3_gb_month": 0.023,
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
}

# Service limits the model checks (defaults of a new account; most can be raised).
LIMIT = {
    "kds_shard_mb_s": 1.0,  # write, per shard
    "kds_shard_records_s": 1000,  # write, per shard
    "kds_od_mb_s": 200.0,  # write, per on-demand stream (default maximum)
    "ks_table_wru_s": 40_000,  # Keyspaces writes per second per table (default quota)
    "lambda_concurrency": 1000,  # per account and region
    "lambda_memory_mb": 10_240,
    "lambda_timeout_s": 900,
}

# Assumptions about the deployment (infra/template.yaml's defaults) and the workload.
ASSUME = {
    "scales": [1_000_000, 10_000_000, 100_000_000],
    # Each meter-day delivered once a day; the day's files arrive within this window, so the
    # pipeline must keep up with the day's volume in it.
    "window_hours": 4,
    # Files of this size (a provider's daily drop is cut or delivered in pieces like it).
    "file_mb": 256,
    "splitter_memory_mb": 1024,
    "aggregator_memory_mb": 512,
    # Lambda gives one vCPU at 1,769 MB, proportionally less below.
    "mb_per_vcpu": 1769,
    "aggregator_batch_records": 100,
    # Keyspaces: write latency seen by the aggregator, and the writes it keeps in flight
    # (store-cql's DEFAULT_CONCURRENCY).
    "ks_write_ms": 5.0,
    "ks_in_flight": 32,
    # Keyspaces' row size: the sum of its columns' sizes plus 100 bytes of metadata per row;
    # the key columns' sizes other than the envelope are estimated here, the envelope measured.
    "ks_row_overhead_bytes": 100,
    "ks_key_bytes": 4 + 4 + 8 + 8 + 12,  # month, day, version, line, series
    "source_bytes": 90,  # s3 key plus `#@` and a version id
    "uploads_kept_days": 30,  # UploadExpirationDays
    # The original design: one Keyspaces row per reading (a ~150-byte row: 1 WRU each), one
    # Kinesis record per CSV row (billed as 1 KiB), and the whole file in the function's
    # memory (the file and its parsed rows: about 3 times its size).
    "orig_rows_per_md": 48,
    "orig_record_bytes": 1024,
    "orig_memory_factor": 3.0,
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd, env):
    before = child_cpu()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout), child_cpu() - before


def measure(args):
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    binary = Path(args.bin)
    if not binary.exists():
        sys.exit(f"{binary} not found: build it with `cargo build --release -p meterflow-cli`")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "METERFLOW_STORE"
    }
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_EC2_METADATA_DISABLED="true",
    )
    kinesis = boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        kinesis.create_stream(StreamName="scale", ShardCount=args.shards)
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "wide.csv"
            subprocess.run(
                [binary, "generate", "--format", "wide", "--meters", str(args.meters),
                 "--days", str(args.days), "--seed", "7", "--out", csv],
                check=True, capture_output=True,
            )
            csv_bytes = csv.stat().st_size
            split, split_cpu = run(
                [binary, "--store", Path(tmp) / "unused.db", "ingest", "--json",
                 "--stream", "kinesis://scale", csv],
                env,
            )
            records, record_bytes = read_stream(kinesis, "scale")
            applied, apply_cpu = run(
                [binary, "--store", Path(tmp) / "replayed.db", "replay", "--json",
                 "--stream", "scale", "--all-shards", "--trim-horizon"],
                env,
            )
    finally:
        server.stop()
    meter_days = args.meters * args.days
    figures = {
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(sys.argv[1:]),
        "meter_days": meter_days,
        "csv_bytes": csv_bytes,
        "kinesis_records": records,
        "kinesis_bytes": record_bytes,
        "splitter_cpu_s": round(split_cpu, 3),
        "aggregator_cpu_s": round(apply_cpu, 3),
        "split_summary": split,
        "replay_summary": applied,
    }
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {FIGURES.relative_to(ROOT)}")


def read_stream(kinesis, name):
    count = size = 0
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            page = kinesis.get_records(ShardIterator=it, Limit=10_000)
            for r in page["Records"]:
                count += 1
                size += len(r["Data"]) + len(r["PartitionKey"].encode())
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            it = page.get("NextShardIterator")
    return count, size


def limits_over(shard_mb_s, wru_s, concurrency, memory_mb, stream_mb_s):
    """The default limits (`LIMIT`) a deployment would pass, by name."""
    over = []
    if stream_mb_s > LIMIT["kds_od_mb_s"]:
        over.append("on-demand stream write maximum")
    if wru_s > LIMIT["ks_table_wru_s"]:
        over.append(f"Keyspaces table write quota ({LIMIT['ks_table_wru_s']:,}/s)")
    if concurrency > LIMIT["lambda_concurrency"]:
        over.append("Lambda concurrency")
    if memory_mb > LIMIT["lambda_memory_mb"]:
        over.append("Lambda memory")
    return over


def first_limit(design, f):
    """The fewest meters (to 1 %) at which `design` passes a default limit, and which."""
    low, high = 1_000, 1_000
    while not design(high, f)["over"]:
        low, high = high, high * 2
        if high > 1e13:
            return math.inf, "none"
    while high / low > 1.01:
        mid = (low + high) // 2
        low, high = (low, mid) if design(mid, f)["over"] else (mid, high)
    return high, ", ".join(design(high, f)["over"])


def money(x):
    return f"${x:,.2f}" if x >= 0.01 else f"${x:,.4f}"


def per_md(figures):
    md = figures["meter_days"]
    return {
        "csv_bytes": figures["csv_bytes"] / md,
        "stream_bytes": figures["kinesis_bytes"] / md,
        "records": figures["kinesis_records"] / md,
        "record_bytes": figures["kinesis_bytes"] / figures["kinesis_records"],
        "split_cpu_per_gb": figures["splitter_cpu_s"] / (figures["csv_bytes"] / 1e9),
        "apply_cpu": figures["aggregator_cpu_s"] / md,
    }


def lambda_seconds(cpu_s, memory_mb):
    """A single-threaded function's wall time at `memory_mb`, from its CPU seconds."""
    return cpu_s / min(1.0, memory_mb / ASSUME["mb_per_vcpu"])


def ours(meters, f):
    a, p = ASSUME, PRICE
    md = meters
    window_s = a["window_hours"] * 3600
    csv_gb = md * f["csv_bytes"] / 1e9
    stream_gb = md * f["stream_bytes"] / 1e9
    records = md * f["records"]
    kib_per_record = math.ceil(f["record_bytes"] / 1024)
    stream_billed_gb = records * kib_per_record * 1024 / 1e9
    mb_s = md * f["stream_bytes"] / 1e6 / window_s
    shards = max(
        1,
        math.ceil(mb_s / LIMIT["kds_shard_mb_s"]),
        math.ceil(records / window_s / LIMIT["kds_shard_records_s"]),
    )
    files = math.ceil(csv_gb * 1000 / a["file_mb"])
    split_s = lambda_seconds(f["split_cpu_per_gb"] * csv_gb, a["splitter_memory_mb"])
    split_gb_s = split_s * a["splitter_memory_mb"] / 1024
    # The aggregator waits on Keyspaces more than it computes: its wall time is the larger of
    # its CPU time and the writes' latency over the writes in flight.
    rows = md
    write_s = rows * a["ks_write_ms"] / 1000 / a["ks_in_flight"]
    agg_s = max(lambda_seconds(f["apply_cpu"] * md, a["aggregator_memory_mb"]), write_s)
    agg_gb_s = agg_s * a["aggregator_memory_mb"] / 1024
    invocations = files + math.ceil(records / a["aggregator_batch_records"])
    row_bytes = (
        a["ks_row_overhead_bytes"] + a["ks_key_bytes"] + a["source_bytes"]
        + f["stream_bytes"] + 8 + 4 + 3 + 4  # slots, total, interval, unit, quality
    )
    wru = rows * math.ceil(row_bytes / 1024)
    ks_gb_year = rows * row_bytes * 365 / 1e9
    costs = {
        "Lambda": (split_gb_s + agg_gb_s) * p["lambda_gb_s"] + invocations * p["lambda_request"],
        "Kinesis": 24 * p["kds_od_stream_hour"] + stream_billed_gb * p["kds_od_gb_in"]
        + stream_gb * p["kds_od_gb_out"],
        "Keyspaces writes": wru * p["ks_wru"],
        "Keyspaces storage": ks_gb_year / 2 * p["ks_gb_month"] / 30,
        "S3": csv_gb * a["uploads_kept_days"] * p["s3_gb_month"] / 30
        + files * (p["s3_put"] + 50 * p["s3_get"]),
    }
    over = limits_over(
        shard_mb_s=mb_s / shards,
        wru_s=wru / window_s,
        concurrency=math.ceil(agg_s / window_s) + math.ceil(split_s / window_s),
        memory_mb=a["splitter_memory_mb"],
        stream_mb_s=mb_s,
    )
    return {
        "over": over,
        "csv_gb": csv_gb,
        "stream_gb": stream_gb,
        "records": records,
        "mb_s": mb_s,
        "shards": shards,
        "files": files,
        "split_gb_s": split_gb_s,
        "agg_gb_s": agg_gb_s,
        "agg_concurrency": math.ceil(agg_s / window_s),
        "split_concurrency": math.ceil(split_s / window_s),
        "rows": rows,
        "row_bytes": row_bytes,
        "wru_s": wru / window_s,
        "ks_gb_year": ks_gb_year,
        "costs": costs,
    }


def original(meters, f):
    a, p = ASSUME, PRICE
    md = meters
    window_s = a["window_hours"] * 3600
    csv_gb = md * f["csv_bytes"] / 1e9
    records = md  # one record per CSV row
    stream_billed_gb = records * a["orig_record_bytes"] / 1e9
    shards = max(
        1,
        math.ceil(records / window_s / LIMIT["kds_shard_records_s"]),
        math.ceil(records * f["csv_bytes"] / 1e6 / window_s / LIMIT["kds_shard_mb_s"]),
    )
    files = math.ceil(csv_gb * 1000 / a["file_mb"])
    memory_mb = min(LIMIT["lambda_memory_mb"], max(1024, a["file_mb"] * a["orig_memory_factor"]))
    split_s = lambda_seconds(f["split_cpu_per_gb"] * csv_gb, memory_mb)
    rows = md * a["orig_rows_per_md"]
    agg_s = rows * a["ks_write_ms"] / 1000 / a["ks_in_flight"]
    gb_s = split_s * memory_mb / 1024 + agg_s * a["aggregator_memory_mb"] / 1024
    row_bytes = a["ks_row_overhead_bytes"] + 50
    costs = {
        "Lambda": gb_s * p["lambda_gb_s"] + (files + records / 100) * p["lambda_request"],
        "Kinesis": 24 * p["kds_od_stream_hour"] + stream_billed_gb * p["kds_od_gb_in"]
        + records * f["csv_bytes"] / 1e9 * p["kds_od_gb_out"],
        "Keyspaces writes": rows * p["ks_wru"],
        "Keyspaces storage": rows * row_bytes * 365 / 1e9 / 2 * p["ks_gb_month"] / 30,
        "S3": csv_gb * a["uploads_kept_days"] * p["s3_gb_month"] / 30
        + files * (p["s3_put"] + p["s3_get"]),
    }
    over = limits_over(
        shard_mb_s=records * f["csv_bytes"] / 1e6 / window_s / shards,
        wru_s=rows / window_s,
        concurrency=math.ceil(agg_s / window_s) + math.ceil(split_s / window_s),
        memory_mb=memory_mb,
        stream_mb_s=records * a["orig_record_bytes"] / 1e6 / window_s,
    )
    return {
        "over": over,
        "shards": shards,
        "rows": rows,
        "wru_s": rows / window_s,
        "memory_mb": memory_mb,
        "costs": costs,
    }


def model(args):
    figures = json.loads(Path(args.figures).read_text())
    f = per_md(figures)
    a = ASSUME
    out = []
    w = out.append
    w(f"Figures measured {figures['measured']} (`bench/scale_model.py {figures['command']}`):")
    w("")
    w("| per meter-day | value |")
    w("|---|---|")
    w(f"| wide CSV bytes (48 values, 3 decimals) | {f['csv_bytes']:.0f} |")
    w(f"| bytes on the stream (envelope records, partition key included) | {f['stream_bytes']:.1f} |")
    w(f"| Kinesis records | {f['records']:.5f} (one per {1 / f['records']:,.0f} meter-days; "
      f"{f['record_bytes'] / 1024:,.0f} KiB each) |")
    w(f"| splitter CPU seconds per GB of CSV | {f['split_cpu_per_gb']:.2f} |")
    w(f"| aggregator CPU microseconds (decode, fold, write to SQLite) | {f['apply_cpu'] * 1e6:.2f} |")
    w(f"| store rows (one fragment per meter-day and delivery) | 1 |")
    w("")
    w(f"Prices: us-east-1 list prices of {PRICES_DATE} (the script's `PRICE`). Assumptions: "
      f"each meter-day delivered once, the day's files ({a['file_mb']} MB each) arriving within "
      f"{a['window_hours']} hours; splitter {a['splitter_memory_mb']} MB, aggregator "
      f"{a['aggregator_memory_mb']} MB (the template's defaults); Keyspaces writes "
      f"{a['ks_write_ms']:.0f} ms with {a['ks_in_flight']} in flight; uploads kept "
      f"{a['uploads_kept_days']} days; Keyspaces storage averaged over the first year.")
    w("")
    names = [f"{m // 1_000_000} M meters" for m in a["scales"]]
    rows = [ours(m, f) for m in a["scales"]]
    origs = [original(m, f) for m in a["scales"]]

    def table(title, results, lines):
        """A table of `lines` (label, format of one result), then the costs and limits."""
        w(f"### {title}")
        w("")
        w("| | " + " | ".join(names) + " |")
        w("|---|" + "---|" * len(names))
        lines = lines + [(k, lambda r, k=k: money(r["costs"][k])) for k in results[0]["costs"]]
        lines.append(("**total per day**", lambda r: f"**{money(sum(r['costs'].values()))}**"))
        lines.append(("default limits passed", lambda r: ", ".join(r["over"]) or "none"))
        for label, fmt in lines:
            w(f"| {label} | " + " | ".join(fmt(r) for r in results) + " |")
        w("")

    table("meterflow, per day", rows, [
        ("CSV in", lambda r: f"{r['csv_gb']:,.1f} GB in {r['files']:,} files"),
        ("on the stream", lambda r: f"{r['stream_gb']:,.2f} GB in {r['records']:,.0f} records"),
        ("stream write rate in the window", lambda r: f"{r['mb_s']:.2g} MB/s"),
        ("shards needed (1 MB/s, 1,000 records/s each)", lambda r: f"{r['shards']:,}"),
        ("splitter GB-s", lambda r: f"{r['split_gb_s']:,.0f} (≈{r['split_concurrency']} running)"),
        ("aggregator GB-s", lambda r: f"{r['agg_gb_s']:,.0f} (≈{r['agg_concurrency']} running)"),
        ("Keyspaces rows written", lambda r: f"{r['rows']:,} of {r['row_bytes']:.0f} B"),
        ("Keyspaces writes/s in the window", lambda r: f"{r['wru_s']:,.0f}"),
        ("Keyspaces data added per year", lambda r: f"{r['ks_gb_year']:,.0f} GB"),
    ])
    table("The original design, per day (one Keyspaces row per reading, one Kinesis record per "
          "CSV row, the whole file in memory)", origs, [
        ("shards needed", lambda r: f"{r['shards']:,}"),
        ("Keyspaces rows written", lambda r: f"{r['rows']:,}"),
        ("Keyspaces writes/s in the window", lambda r: f"{r['wru_s']:,.0f}"),
    ])
    for label, design in (("meterflow", ours), ("The original design", original)):
        meters, over = first_limit(design, f)
        w(f"{label} passes its first default limit at about {meters / 1e6:,.0f} M meters "
          f"(files arriving within {a['window_hours']} hours): {over}.")
        w("")
    w("Cost per day, original ÷ meterflow: " + ", ".join(
        f"{n} {sum(o['costs'].values()) / sum(r['costs'].values()):.0f}×"
        for n, o, r in zip(names, origs, rows)
    ) + ".")
    text = "\n".join(out)
    if args.print:
        print(text)
        return
    doc = DOC.read_text()
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    print(f"wrote the tables of {DOC.relative_to(ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="measure the figures on the real binary")
    m.add_argument("--bin", default=str(ROOT / "target" / "release" / "meterflow"))
    m.add_argument("--meters", type=int, default=20_000)
    m.add_argument("--days", type=int, default=7)
    m.add_argument("--shards", type=int, default=4)
    d = sub.add_parser("model", help="write the model's tables into docs/SCALE.md")
    d.add_argument("--figures", default=str(FIGURES))
    d.add_argument("--print", action="store_true", help="print them instead")
    args = parser.parse_args()
    measure(args) if args.command == "measure" else model(args)


if __name__ == "__main__":
    main()
