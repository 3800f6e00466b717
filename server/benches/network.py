"""The metric store benchmark's other half, run with DuckDB from the venv `.ci/bench-store`
makes.

    python network.py generate LINES AS_OF OUT.csv
        Writes a network's order lines: 40 DCs, 8 carriers, 30 customers, 12 categories,
        5,000 SKUs, 26 weeks of due dates ending the day before AS_OF, sorted by due date
        (as exports are), with planted problems in the latest complete week: carrier 3
        late at DC05..DC09, a stockout of category 2 at DC12, and 1 failure in 10 without
        a reason code. Deterministic (hashes of the line number).

    python network.py packs CSV AS_OF SITE
        Loads the CSV into DuckDB (timed) and builds the content of Opsight's evidence pack
        on the raw table, for SITE and for the network: both weeks' KPI counts, the
        12-week trend, failures by reason, and each dimension's members with their share
        and rate in both weeks (plus the site dimension for the network); then a month, a
        quarter and a year against the period before. Prints one JSON object of median
        times in milliseconds (7 runs after a warm-up).
"""

import datetime as dt
import json
import statistics
import sys
import time

import duckdb


def generate(lines: int, as_of: str, out: str) -> None:
    end = dt.date.fromisoformat(as_of) - dt.timedelta(days=1)
    start = end - dt.timedelta(days=26 * 7 - 1)
    # The latest complete week (Monday..Sunday) before AS_OF.
    a = dt.date.fromisoformat(as_of)
    focus = a - dt.timedelta(days=a.weekday() + 7)
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (
          WITH base AS (
            SELECT i, hash(i) AS h1, hash(i * 7 + 1) AS h2, hash(i * 13 + 5) AS h3,
                   hash(i * 31 + 11) AS h4,
                   DATE '{start}' + CAST(i * 182 // {lines} AS INTEGER) AS due
            FROM range({lines}) t(i)
          ), l AS (
            SELECT i, due,
              'DC' || lpad(CAST(h1 % 40 AS VARCHAR), 2, '0') AS site,
              CAST(h1 % 40 AS INTEGER) AS s,
              CAST((h1 >> 8) % 8 AS INTEGER) AS c,
              CAST(h2 % 30 AS INTEGER) AS cu,
              CAST(h3 % 5000 AS INTEGER) AS sku,
              1 + CAST((h2 >> 16) % 40 AS INTEGER) AS ordered,
              (h4 % 1000) / 1000.0 AS r1, ((h4 >> 12) % 1000) / 1000.0 AS r2,
              ((h4 >> 24) % 1000) / 1000.0 AS r3,
              due BETWEEN DATE '{focus}' AND DATE '{focus}' + 6 AS in_focus
            FROM base
          ), f AS (
            SELECT *,
              r1 < CASE WHEN in_focus AND c = 3 AND s BETWEEN 5 AND 9 THEN 0.35
                        ELSE 0.04 + 0.002 * (s % 10) END AS late,
              r2 < CASE WHEN in_focus AND sku % 12 = 2 AND s = 12 THEN 0.30 ELSE 0.03 END AS short
            FROM l
          )
          SELECT 'SO' || lpad(CAST(i // 4 AS VARCHAR), 9, '0') AS order_id,
                 i % 4 + 1 AS line_no,
                 site,
                 'Customer ' || lpad(CAST(cu AS VARCHAR), 2, '0') AS customer,
                 'Carrier ' || CAST(c AS VARCHAR) AS carrier,
                 'SKU-' || lpad(CAST(sku AS VARCHAR), 5, '0') AS sku,
                 'Category ' || lpad(CAST(sku % 12 AS VARCHAR), 2, '0') AS category,
                 ordered AS ordered_qty,
                 CASE WHEN short THEN ordered * 6 // 10 ELSE ordered END AS delivered_qty,
                 due AS due_date,
                 CASE WHEN late THEN due + 1 + CAST(r3 * 3 AS INTEGER)
                      ELSE due - CAST(r3 * 2 AS INTEGER) END AS delivered_date,
                 CASE WHEN NOT late AND NOT short THEN ''
                      WHEN r3 < 0.1 THEN ''
                      WHEN late THEN 'carrier_late'
                      WHEN sku % 12 = 2 AND s = 12 THEN 'stockout'
                      ELSE 'short_pick' END AS reason_code
          FROM f ORDER BY due, i
        ) TO '{out}' (HEADER, DELIMITER ',')
        """
    )


SCORED = """
    CREATE TABLE lines AS
    SELECT *, delivered_date IS NOT NULL AND delivered_date <= due_date AS on_time,
              delivered_qty >= ordered_qty AS in_full
    FROM read_csv('{csv}', header = true, dateformat = '%Y-%m-%d',
                  columns = {{'order_id': 'VARCHAR', 'line_no': 'BIGINT', 'site': 'VARCHAR',
                    'customer': 'VARCHAR', 'carrier': 'VARCHAR', 'sku': 'VARCHAR',
                    'category': 'VARCHAR', 'ordered_qty': 'BIGINT', 'delivered_qty': 'BIGINT',
                    'due_date': 'DATE', 'delivered_date': 'DATE', 'reason_code': 'VARCHAR'}})
"""

COUNTS = """count(*) AS lines, sum(CAST(on_time AND in_full AS INT)) AS otif,
            sum(CAST(on_time AS INT)) AS on_time, sum(CAST(in_full AS INT)) AS in_full,
            sum(ordered_qty) AS ordered, sum(delivered_qty) AS delivered"""


def pack(con, site, cur, prev, trend_start) -> None:
    """Every query behind one pack: the content Opsight's evidence pack holds."""
    where = "" if site is None else f"site = '{site}' AND "
    span = f"due_date BETWEEN DATE '{prev[0]}' AND DATE '{prev[1]}' OR due_date BETWEEN DATE '{cur[0]}' AND DATE '{cur[1]}'"
    side = f"due_date >= DATE '{cur[0]}'"
    con.execute(f"SELECT {side} AS cur, {COUNTS} FROM lines WHERE {where}({span}) GROUP BY 1").fetchall()
    con.execute(
        f"SELECT date_trunc('week', due_date) AS w, {COUNTS} FROM lines "
        f"WHERE {where}due_date BETWEEN DATE '{trend_start}' AND DATE '{cur[1]}' GROUP BY 1"
    ).fetchall()
    con.execute(
        f"SELECT {side} AS cur, reason_code, count(*) FROM lines WHERE {where}({span}) "
        "AND NOT (on_time AND in_full) GROUP BY 1, 2"
    ).fetchall()
    dims = ["carrier", "customer", "category"] + (["site"] if site is None else [])
    for d in dims:
        # Members with their lines (share) and OTIF rate in both periods.
        con.execute(
            f"SELECT {side} AS cur, {d}, {COUNTS}, count(*) / sum(count(*)) OVER (PARTITION BY {side}) AS share "
            f"FROM lines WHERE {where}({span}) GROUP BY 1, 2"
        ).fetchall()


def timed(f, runs: int = 7) -> float:
    f()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def packs(csv: str, as_of: str, site: str) -> None:
    a = dt.date.fromisoformat(as_of)
    week = a - dt.timedelta(days=a.weekday() + 7)
    cur = (week, week + dt.timedelta(days=6))
    prev = (week - dt.timedelta(days=7), week - dt.timedelta(days=1))
    trend = week - dt.timedelta(weeks=11)
    con = duckdb.connect()
    t = time.perf_counter()
    con.execute(SCORED.format(csv=csv))
    load = time.perf_counter() - t
    n = con.execute("SELECT count(*) FROM lines").fetchone()[0]
    out = {
        "lines": n,
        "load_s": round(load, 2),
        "load_lines_per_s": round(n / load),
        "site_pack_ms": round(timed(lambda: pack(con, site, cur, prev, trend)), 1),
        "network_pack_ms": round(timed(lambda: pack(con, None, cur, prev, trend)), 1),
    }
    # A month, a quarter and a year (the data's last ones), network, against the one before.
    last = con.execute("SELECT max(due_date) FROM lines").fetchone()[0]
    month_end = last.replace(day=1) - dt.timedelta(days=1)
    month = (month_end.replace(day=1), month_end)
    pm_end = month[0] - dt.timedelta(days=1)
    prev_month = (pm_end.replace(day=1), pm_end)
    q_start = dt.date(month_end.year, 3 * ((month_end.month - 1) // 3) + 1, 1)
    quarter = (q_start - dt.timedelta(days=92), q_start - dt.timedelta(days=1))
    prev_quarter = (quarter[0] - dt.timedelta(days=91), quarter[0] - dt.timedelta(days=1))
    year = (dt.date(last.year, 1, 1), dt.date(last.year, 12, 31))
    prev_year = (dt.date(last.year - 1, 1, 1), dt.date(last.year - 1, 12, 31))
    for name, c, p in [("month", month, prev_month), ("quarter", quarter, prev_quarter), ("year", year, prev_year)]:
        out[f"network_{name}_pack_ms"] = round(timed(lambda: pack(con, None, c, p, p[0]), 3), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "packs":
        packs(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
