"""The accuracy benchmark's peer: wise-pizza (PyPI) on the same worlds as the built-in
analyst, run by `.ci/bench-accuracy` with the venv it makes.

    python accuracy.py OUT_DIR

Reads OUT_DIR/worlds.jsonl and world-N.csv (written by `cargo bench --bench accuracy`),
asks wise-pizza's `explain_changes_in_average` for the segments (depth 1 and 2, up to 3)
that explain each world's change in OTIF between the previous and the current period,
and scores it as the analyst is scored: top-1 (the first segment in the direction of the
change is, or contains, the planted member), top-3, no segment where nothing changed. A
process (short picks everywhere) and a data problem have no segment, so a segment named
there is a miss. Prints both tables side by side, and wise-pizza's time per world.
"""

import json
import sys
import time
import warnings

import pandas as pd
from wise_pizza import explain_changes_in_average

warnings.simplefilter("ignore")


def segments(world, df):
    dims = world["dims"]
    d1 = df[df["period"] == "previous"].drop(columns="period")
    d2 = df[df["period"] == "current"].drop(columns="period")
    sf = explain_changes_in_average(
        d1, d2, dims=dims, total_name="otif", size_name="lines",
        max_segments=3, min_depth=1, max_depth=2, solver="lasso", how="totals",
    )
    change = d2["otif"].sum() / d2["lines"].sum() - d1["otif"].sum() / d1["lines"].sum()
    found = [s for s in sf.segments if "No unusual segments" not in s["segment"]]
    # In the direction of the change, largest first (wise-pizza lists rises first).
    found = [s for s in found if s.get("impact", 0) * change > 0]
    found.sort(key=lambda s: abs(s.get("impact", 0)), reverse=True)
    return [s["segment"] for s in found]


def matches(segment, planted):
    if planted in ("data",) or planted.startswith("process:"):
        return False
    dim, member = planted.split(":", 1)
    return segment.get(dim) == member


def score(world, named):
    planted = world["planted"]
    if world["kind"] == "nothing":
        return (not named, not named)
    if world["kind"] == "two_causes":
        top1 = bool(named) and any(matches(named[0], p) for p in planted)
        top3 = all(any(matches(s, p) for s in named[:3]) for p in planted)
        return (top1, top3)
    p = planted[0]
    return (bool(named) and matches(named[0], p), any(matches(s, p) for s in named[:3]))


def main():
    out = sys.argv[1]
    worlds = [json.loads(line) for line in open(f"{out}/worlds.jsonl")]
    table = {}
    spent = 0.0
    examples = {}
    for w in worlds:
        df = pd.read_csv(f"{out}/world-{w['world']}.csv", dtype={"lines": "int64", "otif": "int64"})
        t = time.perf_counter()
        try:
            named = segments(w, df)
        except Exception as e:  # a failure is a miss, and is shown
            print(f"wise-pizza failed on world {w['world']} ({w['kind']}): {e}", file=sys.stderr)
            named = []
        spent += time.perf_counter() - t
        top1, top3 = score(w, named)
        key = (w["kind"], w["scope"], w["grain"])
        row = table.setdefault(key, [0, 0, 0, 0, 0])
        row[0] += 1
        row[1] += w["top1"]
        row[2] += w["top3"]
        row[3] += top1
        row[4] += top3
        examples.setdefault(key, (w["analyst"][:3], [" & ".join(f"{k}={v}" for k, v in s.items()) for s in named[:3]]))
    print(f"wise-pizza: {len(worlds)} worlds, {1000 * spent / max(1, len(worlds)):.0f} ms per world")
    print()
    print("| world | scope | grain | worlds | analyst top-1 | analyst top-3 | wise-pizza top-1 | wise-pizza top-3 |")
    print("|---|---|---|---|---|---|---|---|")
    totals = [0, 0, 0, 0, 0]
    for key in sorted(table):
        r = table[key]
        totals = [a + b for a, b in zip(totals, r)]
        print(f"| {key[0]} | {key[1]} | {key[2]} | {r[0]} | {r[1]}/{r[0]} | {r[2]}/{r[0]} | {r[3]}/{r[0]} | {r[4]}/{r[0]} |")
    n = totals[0]
    print(f"| **all** | | | {n} | {totals[1]}/{n} | {totals[2]}/{n} | {totals[3]}/{n} | {totals[4]}/{n} |")
    print()
    print("One world of each kind, what each named first (analyst | wise-pizza):")
    for key in sorted(examples):
        a, wp = examples[key]
        print(f"  {key[0]:<24} {key[1]:<8} {key[2]:<6} {', '.join(a) or '(none)'} | {', '.join(wp) or '(none)'}")


if __name__ == "__main__":
    main()
