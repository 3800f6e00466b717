"""What the team's catalogue costs: the same generated network imported into fresh SQLite
stores without a catalogue and with one (three KPIs defined as expressions), alternating
in the same run; wall time, peak RSS, the store's size, and the re-tally a catalogue
change makes (`opsight retally`). Usage: catalogue.py OPSIGHT_BIN WORK LINES ROUNDS
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from store import AS_OF, timed_run  # noqa: E402

CATALOGUE = """
[[kpi]]
key = "late_3d"
name = "Late by more than 3 days"
direction = "lower"
numerator = "days(due_date, delivered_date) > 3 or is_empty(delivered_date)"
target = 2
at_risk = 1

[[kpi]]
key = "delay_days"
name = "Delivery delay"
unit = "days"
direction = "lower"
numerator = "days(due_date, delivered_date)"

[[kpi]]
key = "short_units"
name = "Units short"
unit = "count"
direction = "lower"
numerator = "ordered_qty - delivered_qty"
"""


def main() -> None:
    bin_, work, n, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.makedirs(work, exist_ok=True)
    csv = os.path.join(work, f"network-{n}.csv")
    if not os.path.exists(csv):
        subprocess.run([sys.executable, os.path.join(HERE, "network.py"), "generate", str(n), AS_OF, csv],
                       check=True)
    sources = os.path.join(work, "catalogue.toml")
    with open(sources, "w") as f:
        f.write(CATALOGUE)
    results = {"without": [], "with": []}
    for r in range(rounds):
        for kind in ("without", "with"):
            db = os.path.join(work, f"cat-{kind}.db")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(db + suffix):
                    os.remove(db + suffix)
            env = dict(os.environ, DATABASE_URL=f"sqlite:{db}", OPSIGHT_AS_OF=AS_OF)
            if kind == "with":
                env["OPSIGHT_SOURCES_FILE"] = sources
            else:
                env.pop("OPSIGHT_SOURCES_FILE", None)
            wall, rss, _ = timed_run([bin_, "import", "orders", csv], env)
            size = sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))
            results[kind].append((wall, rss, size / 1e6))
            print(f"round {r + 1} {kind:>7}: import {wall:6.1f} s  peak RSS {rss:4d} MB  store {size / 1e6:6.0f} MB",
                  flush=True)
    # A catalogue change re-tallies every line: what that costs on the store with it.
    env = dict(os.environ, DATABASE_URL=f"sqlite:{os.path.join(work, 'cat-with.db')}", OPSIGHT_AS_OF=AS_OF,
               OPSIGHT_SOURCES_FILE=sources)
    retally, retally_rss, _ = timed_run([bin_, "retally"], env)
    best = {k: min(v) for k, v in results.items()}
    print()
    print(f"{n:,} lines, best of {rounds} (same run, alternating):")
    print(f"  import without a catalogue: {best['without'][0]:.1f} s, peak RSS {best['without'][1]} MB, "
          f"store {best['without'][2]:.0f} MB")
    print(f"  import with 3 catalogue KPIs: {best['with'][0]:.1f} s, peak RSS {best['with'][1]} MB, "
          f"store {best['with'][2]:.0f} MB")
    print(f"  ratio with / without: {best['with'][0] / best['without'][0]:.2f}x time, "
          f"{best['with'][1] / max(best['without'][1], 1):.2f}x RSS")
    print(f"  re-tally with the catalogue (a catalogue change): {retally:.1f} s, peak RSS {retally_rss} MB")


if __name__ == "__main__":
    main()
