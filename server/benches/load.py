"""A plain HTTP load script: N POSTs of one JSON body at concurrency C, one keep-alive
connection per thread. Prints requests/s, p50/p99 latency and non-2xx count.

    python load.py URL BODY_FILE N C

OPSIGHT_BENCH_TOKEN, when set, is sent as a bearer token.
"""

import http.client
import json
import os
import sys
import threading
import time
from urllib.parse import urlparse


def main() -> None:
    url, body_file, n, c = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    body = open(body_file, "rb").read()
    u = urlparse(url)
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("OPSIGHT_BENCH_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    remaining = [n]

    def worker() -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            t = time.perf_counter()
            try:
                conn.request("POST", u.path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                ok = 200 <= r.status < 300
            except Exception:
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
                ok = False
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                if not ok:
                    errors[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, round((len(latencies) - 1) * p))] * 1000
    print(json.dumps({"requests": n, "concurrency": c, "wall_s": round(wall, 2),
                      "req_per_s": round(n / wall, 1), "p50_ms": round(pct(0.5), 1),
                      "p99_ms": round(pct(0.99), 1), "errors": errors[0]}))


if __name__ == "__main__":
    main()
