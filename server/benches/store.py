"""The metric store benchmark (`.ci/bench-store`): Opsight's release binary against DuckDB
on the same generated network, in the same run, at each size.

    python store.py BIN SITE_ROOT WORK_DIR SIZES [PG_URL]

For each size (lines): generates the CSV (network.py), times DuckDB loading it and building
the packs' content on the raw table, then `opsight import orders` into a fresh SQLite
database (wall time, peak RSS) and SQLite's own insert rate for the same lines into the same
schema (the import's ceiling on this machine), serves it and times `GET /api/v1/evidence` for a DC and the
network (median of 7 after a warm-up) and for a month, a quarter and a year; requests every
page once and reads the server's RSS; and, when `wrk` is installed, loads the overview at
concurrency 32 next to a static file from the same server. With PG_URL, also imports into a
fresh PostgreSQL database. Prints one JSON line per size and a summary table of ratios.
"""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

AS_OF = "2026-11-21"
SITE = "DC07"
# network.py's categories ("Category 00" .. "Category 11").
CATEGORIES = [f"Category {i:02d}" for i in range(12)]
HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_run(cmd, env) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB and stderr of a command, via GNU time."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{cmd} failed:\n{p.stdout}\n{p.stderr}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return wall, rss // 1024, p.stdout


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=600) as r:
        return r.read()


def median_ms(url: str, runs: int = 7) -> float:
    get(url)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        get(url)
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 1)


def rss_mb(pid: int) -> tuple[int, int]:
    status = open(f"/proc/{pid}/status").read()
    now = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
    return now // 1024, peak // 1024


def wrk(url: str) -> dict | None:
    if subprocess.run(["sh", "-c", "command -v wrk"], capture_output=True).returncode != 0:
        return None
    out = subprocess.run(
        ["wrk", "-t2", "-c32", "-d8s", "--latency", url], capture_output=True, text=True
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        v, unit = float(m.group(1)), m.group(2)
        return round(v / 1000 if unit == "us" else v * 1000 if unit == "s" else v, 3)

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"p50_ms": ms("50%"), "p99_ms": ms("99%"), "rps": round(rps)}


CEILING_LINES = 2_000_000


def sqlite_insert_rate(opsight_db: str, csv_path: str, work: str) -> int:
    """SQLite's own rate, in lines/s, for inserting (up to CEILING_LINES of) the file's lines
    into Opsight's `order_lines` schema (read from the database Opsight just imported into:
    same indexes and foreign key, same pragmas, same SQLite version through apsw), with the
    lines already parsed in memory and nothing else to do: no parsing, no validation, no
    metric store. The ceiling for any importer of this schema on this machine. Holds the
    parsed lines in memory: about 2 GB at CEILING_LINES."""
    import apsw
    import csv

    src = apsw.Connection(opsight_db)
    ddl = [sql for (sql,) in src.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name IN ('sites', 'order_lines') "
        "AND sql IS NOT NULL ORDER BY type DESC")]
    src.close()
    path = os.path.join(work, "sqlite-insert-rate.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    con = apsw.Connection(path)
    # One statement per call: apsw stops a multi-statement string at the first row returned,
    # and `journal_mode` returns one.
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
        con.execute(f"PRAGMA {pragma}").fetchall()
    assert con.execute("PRAGMA foreign_keys").fetchall() == [(1,)]
    for sql in ddl:
        con.execute(sql)
    rows, sites = [], set()
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for i, r in enumerate(reader):
            if i >= CEILING_LINES:
                break
            sites.add(r[2])
            rows.append((r[0], int(r[1]), r[2], r[3], r[4], r[5], r[6], int(r[7]), int(r[8]),
                         r[9], r[10] or None, r[11] or None, "bench", i + 2))
    con.executemany("INSERT INTO sites (code, name, region) VALUES (?, ?, '')",
                    [(s, s) for s in sorted(sites)])
    cols = ("order_id, line_no, site, customer, carrier, sku, category, ordered_qty, "
            "delivered_qty, due_date, delivered_date, reason_code, import_id, import_line")
    t = time.perf_counter()
    con.execute("BEGIN")
    con.executemany(f"INSERT INTO order_lines ({cols}) VALUES ({', '.join('?' * 14)}) "
                    "ON CONFLICT (order_id, line_no) DO NOTHING", rows)
    con.execute("COMMIT")
    wall = time.perf_counter() - t
    con.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return round(len(rows) / wall)


def one_size(bin_, site_root, work, n, pg_url) -> dict:
    py = sys.executable
    csv = os.path.join(work, f"network-{n}.csv")
    if not os.path.exists(csv):
        subprocess.run([py, os.path.join(HERE, "network.py"), "generate", str(n), AS_OF, csv], check=True)
    duck = json.loads(
        subprocess.run(
            [py, os.path.join(HERE, "network.py"), "packs", csv, AS_OF, SITE],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    db = os.path.join(work, f"opsight-{n}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    env = dict(os.environ, DATABASE_URL=f"sqlite:{db}", OPSIGHT_AS_OF=AS_OF, RUST_LOG="warn")
    wall, rss, _ = timed_run([bin_, "import", "orders", csv], env)
    out = {"lines": n, "duckdb": duck, "import_s": round(wall, 1),
           "import_lines_per_s": round(n / wall), "import_peak_rss_mb": rss,
           "sqlite_insert_lines_per_s": sqlite_insert_rate(db, csv, work)}
    if pg_url:
        name = f"opsight_bench_{n}"
        subprocess.run(["psql", pg_url, "-qc", f"DROP DATABASE IF EXISTS {name}"], check=True)
        subprocess.run(["psql", pg_url, "-qc", f"CREATE DATABASE {name}"], check=True)
        pg = pg_url.rsplit("/", 1)[0] + "/" + name
        wall, rss, _ = timed_run([bin_, "import", "orders", csv], dict(env, DATABASE_URL=pg))
        out["pg_import_s"] = round(wall, 1)
        out["pg_import_lines_per_s"] = round(n / wall)
        out["pg_import_peak_rss_mb"] = rss
        subprocess.run(["psql", pg_url, "-qc", f"DROP DATABASE IF EXISTS {name}"], check=True)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [bin_, "serve"],
        env=dict(env, OPSIGHT_ADDR=f"127.0.0.1:{port}", OPSIGHT_ANONYMOUS_ROLE="viewer",
                 LEPTOS_SITE_ROOT=site_root),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                get(base + "/readyz")
                break
            except Exception:
                time.sleep(0.2)
        ev = base + "/api/v1/evidence?metric=otif&site="
        out["site_pack_ms"] = median_ms(ev + SITE)
        out["network_pack_ms"] = median_ms(ev + "network")
        # The data's last complete month and quarter, and its year (to date), as network.py
        # picks them for DuckDB.
        for name, p in [("month", "2026-10"), ("quarter", "2026-Q3"), ("year", "2026")]:
            out[f"network_{name}_pack_ms"] = median_ms(f"{ev}network&period={p}", 3)
        for page in ["/", "/?period=month", f"/kpi/{SITE}/otif", "/kpi/network/otif",
                     "/kpi/network/otif?period=quarter", "/api/v1/dashboard", "/runs",
                     "/rules", "/schedules", "/notifications"]:
            get(base + page)
        out["serve_rss_mb"], out["serve_peak_rss_mb"] = rss_mb(server.pid)
        overview, static = wrk(base + "/"), wrk(base + "/favicon.svg")
        if overview:
            out["overview_c32"], out["static_c32"] = overview, static
    finally:
        server.terminate()
        server.wait()
    # Re-scoring: saving unit costs re-tallies every line (as editing the on-time window or
    # the in-full tolerance does), in the saving transaction.
    costs = os.path.join(work, "costs.csv")
    with open(costs, "w") as f:
        f.write("category,unit_cost\n" + "".join(f"{c},{5 + i}\n" for i, c in enumerate(CATEGORIES)))
    wall, rss, _ = timed_run([bin_, "import", "costs", costs], env)
    out["rescore_s"], out["rescore_peak_rss_mb"] = round(wall, 1), rss
    return out


def main() -> None:
    bin_, site_root, work, sizes = sys.argv[1:5]
    pg_url = sys.argv[5] if len(sys.argv) > 5 else None
    os.makedirs(work, exist_ok=True)
    results = []
    for n in [int(s) for s in sizes.split(",")]:
        r = one_size(bin_, site_root, work, n, pg_url)
        print(json.dumps(r), flush=True)
        results.append(r)
    print("\nlines      import l/s (peak MB)  DuckDB load l/s  site pack ms (DuckDB)  network pack ms (DuckDB)  serve RSS MB")
    for r in results:
        d = r["duckdb"]
        print(f"{r['lines']:<10} {r['import_lines_per_s']:>10} ({r['import_peak_rss_mb']:>4})    {d['load_lines_per_s']:>10}"
              f"       {r['site_pack_ms']:>7} ({d['site_pack_ms']})        {r['network_pack_ms']:>7} ({d['network_pack_ms']})"
              f"        {r['serve_rss_mb']} (peak {r['serve_peak_rss_mb']})")
    for r in results:
        d = r["duckdb"]
        print(f"{r['lines']} lines: site pack {r['site_pack_ms'] / d['site_pack_ms']:.2f}x DuckDB, "
              f"network pack {r['network_pack_ms'] / d['network_pack_ms']:.2f}x DuckDB; month/quarter/year "
              f"{r['network_month_pack_ms']}/{r['network_quarter_pack_ms']}/{r['network_year_pack_ms']} ms "
              f"(DuckDB {d['network_month_pack_ms']}/{d['network_quarter_pack_ms']}/{d['network_year_pack_ms']})")
        print(f"  import: {r['import_lines_per_s']} lines/s, {r['import_lines_per_s'] / d['load_lines_per_s']:.2f}x "
              f"DuckDB's load; SQLite's own insert of these lines (parsed, nothing else to do, first "
              f"{min(r['lines'], CEILING_LINES)}): {r['sqlite_insert_lines_per_s']} lines/s, import "
              f"{r['import_lines_per_s'] / r['sqlite_insert_lines_per_s']:.2f}x of it")
        if "pg_import_lines_per_s" in r:
            print(f"  PostgreSQL import (COPY): {r['pg_import_lines_per_s']} lines/s "
                  f"({r['pg_import_s']} s, peak {r['pg_import_peak_rss_mb']} MB)")
        print(f"  re-scoring every line (a unit-cost or scoring edit): {r['rescore_s']} s, "
              f"peak {r['rescore_peak_rss_mb']} MB")
        if "overview_c32" in r:
            o, s = r["overview_c32"], r["static_c32"]
            print(f"  overview at c32: p50 {o['p50_ms']} ms, p99 {o['p99_ms']} ms; static file p50 "
                  f"{s['p50_ms']} ms: ratio {o['p50_ms'] / max(s['p50_ms'], 0.001):.1f}x")
    if len(results) >= 2:
        a, b = results[0], results[-1]
        print(f"pack at {b['lines']} vs {a['lines']} lines: site {b['site_pack_ms'] / a['site_pack_ms']:.2f}x, "
              f"network {b['network_pack_ms'] / a['network_pack_ms']:.2f}x")


if __name__ == "__main__":
    main()
