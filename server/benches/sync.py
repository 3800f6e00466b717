"""Sync benchmark: 10M order lines in a PostgreSQL source, synced into a fresh SQLite
Opsight as lines and as pushed-down tallies, in the same run.

Usage: python3 sync.py OPSIGHT_BIN WORK_DIR PG_SERVER_URL LINES

Reports, for each way: wall time, peak RSS of `opsight sources sync`, rows and bytes of
values read from the source (from the sync's record), and checks that both give the
same network totals in the metric store. The source table is generated once in the
database `opsight_bench_src` (40 DCs, 180 days, 8 carriers, 200 customers, 12
categories, late and short lines) and kept for the next run when it has LINES rows.
"""
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.parse

BIN, WORK, SERVER, LINES = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
DB = "opsight_bench_src"
AS_OF = "2026-11-21"


def psql(url, sql):
    return subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qtAc", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def source_url():
    u = urllib.parse.urlparse(SERVER)
    return urllib.parse.urlunparse(u._replace(path="/" + DB))


def ensure_source():
    exists = psql(SERVER, f"SELECT 1 FROM pg_database WHERE datname = '{DB}'")
    url = source_url()
    if exists:
        have = psql(url, "SELECT COUNT(*) FROM shipments") if psql(
            url, "SELECT to_regclass('shipments') IS NOT NULL") == "t" else "0"
        if int(have or 0) == LINES:
            print(f"source table: {LINES:,} rows (kept from an earlier run)")
            return url
        psql(SERVER, f"DROP DATABASE {DB} WITH (FORCE)")
    psql(SERVER, f"CREATE DATABASE {DB}")
    started = time.time()
    days = 180
    per_day = max(1, LINES // days + 1)
    psql(url, """CREATE TABLE shipments (so_number TEXT, line INTEGER, dc_code TEXT,
        account TEXT, haulier TEXT, item TEXT, item_group TEXT, qty_ordered INTEGER,
        qty_shipped INTEGER, must_arrive DATE, arrived_at TIMESTAMP, why TEXT, region TEXT)""")
    psql(url, f"""INSERT INTO shipments
        SELECT 'SO-' || g, 1 + g % 3, 'DC' || lpad((g % 40)::text, 2, '0'),
               'Customer ' || (g * 7 % 200), 'Carrier ' || (g % 8), 'SKU-' || (g % 5000),
               'Category ' || (g % 12), 1 + g % 20,
               CASE WHEN g % 23 = 0 THEN (1 + g % 20) / 2 ELSE 1 + g % 20 END,
               DATE '{AS_OF}' - 1 - (g / {per_day})::int,
               CASE WHEN g % 101 = 0 THEN NULL
                    ELSE (DATE '{AS_OF}' - 1 - (g / {per_day})::int)
                         + (CASE WHEN g % 17 = 0 THEN 2 ELSE 0 END) + TIME '10:00' END,
               CASE WHEN g % 17 = 0 THEN 'carrier_late' WHEN g % 23 = 0 THEN 'stockout' END,
               'R' || (g % 4)
        FROM generate_series(1, {LINES}) g""")
    psql(url, "ANALYZE shipments")
    print(f"source table: {LINES:,} rows generated in {time.time() - started:.1f} s")
    return url


COLUMNS = {
    "order_id": "so_number", "line_no": "line", "site": "dc_code", "customer": "account",
    "carrier": "haulier", "sku": "item", "category": "item_group",
    "ordered_qty": "qty_ordered", "delivered_qty": "qty_shipped",
    "due_date": "must_arrive", "delivered_date": "arrived_at", "reason_code": "why",
}


def run(name, pushdown, url):
    folder = os.path.join(WORK, name)
    os.makedirs(folder, exist_ok=True)
    db = os.path.join(folder, "opsight.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    sources = os.path.join(folder, "sources.toml")
    with open(sources, "w") as f:
        f.write(f'[[source]]\nname = "wms"\nkind = "postgres"\nurl_env = "BENCH_SOURCE_URL"\n'
                f'table = "shipments"\nwindow_days = 200\ntimeout_secs = 3600\n'
                f'pushdown = {"true" if pushdown else "false"}\n[source.columns]\n')
        for k, v in COLUMNS.items():
            f.write(f'{k} = "{v}"\n')
    env = dict(os.environ, DATABASE_URL=f"sqlite:{db}", OPSIGHT_SOURCES_FILE=sources,
               BENCH_SOURCE_URL=url, OPSIGHT_AS_OF=AS_OF, OPSIGHT_AGENTS_FILE="",
               RUST_LOG="warn")
    subprocess.run([BIN, "migrate"], env=env, check=True, capture_output=True)
    started = time.time()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", BIN, "sources", "sync", "wms"],
                       env=env, capture_output=True, text=True)
    wall = time.time() - started
    if p.returncode != 0:
        print(p.stdout, p.stderr)
        raise SystemExit(f"{name}: the sync failed")
    rss_mb = int(p.stderr.strip().splitlines()[-1]) / 1024
    listed = json.loads(subprocess.run([BIN, "sources", "list"], env=env, check=True,
                                       capture_output=True, text=True).stdout)
    last = listed[0]["last_sync"]
    con = sqlite3.connect(db)
    totals = con.execute("SELECT SUM(lines), SUM(otif_lines), SUM(on_time_lines), "
                         "SUM(in_full_lines), SUM(units_ordered), SUM(units_delivered), "
                         "SUM(open_lines) FROM kpi_facts WHERE site = '*' AND dimension = ''"
                         ).fetchone()
    stored = con.execute("SELECT COUNT(*) FROM order_lines").fetchone()[0]
    size = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))
    con.close()
    return {"name": name, "wall": wall, "rss_mb": rss_mb, "rows": last["rows_read"],
            "bytes": last["bytes_read"], "lines": last["inserted"], "totals": totals,
            "stored_lines": stored, "db_mb": size / 1e6}


def main():
    os.makedirs(WORK, exist_ok=True)
    url = ensure_source()
    results = [run("lines", False, url), run("pushdown", True, url)]
    lines, pushed = results
    if lines["totals"] != pushed["totals"]:
        raise SystemExit(f"the network totals differ: {lines['totals']} vs {pushed['totals']}")
    print(f"\nsync of {LINES:,} PostgreSQL lines into SQLite (same network totals both ways: "
          f"{lines['totals'][0]:,} lines, {lines['totals'][1]:,} OTIF)\n")
    print("| way | wall | peak RSS | rows read | bytes of values read | lines kept in Opsight | database |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['wall']:.1f} s | {r['rss_mb']:.0f} MB | {r['rows']:,} | "
              f"{r['bytes'] / 1e6:,.1f} MB | {r['stored_lines']:,} | {r['db_mb']:,.0f} MB |")
    print(f"\npush-down vs lines: time {pushed['wall'] / lines['wall']:.2f}x, "
          f"bytes {pushed['bytes'] / max(1, lines['bytes']):.4f}x")


main()
