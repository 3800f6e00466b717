"""A local double of the Databricks SQL Statement Execution API (2.0) that runs the
statements on a real SQL engine (SQLite, on the file given) and serves their results the
way a SQL warehouse does: asynchronously (PENDING, RUNNING, then SUCCEEDED or FAILED),
in chunks, INLINE or as EXTERNAL_LINKS (short-lived URLs that must be fetched without the
Authorization header, as presigned cloud-storage URLs are).

Authentication: a personal access token (`--token`), or OAuth machine-to-machine
(`--client-id` / `--client-secret`: `POST /oidc/v1/token` with HTTP basic auth and
`grant_type=client_credentials`, `scope=all-apis`, gives a bearer token).

Dialect: Databricks SQL quotes identifiers with backticks (SQLite accepts them) and names
the text type STRING, which the double maps to SQLite's TEXT (`CAST(x AS STRING)`); its
date functions `to_date(x)` and `date_add(d, n)` are registered as SQLite functions.

Endpoints:
  POST /api/2.0/sql/statements                      execute (wait_timeout, disposition)
  GET  /api/2.0/sql/statements/{id}                 status, manifest, first chunk
  GET  /api/2.0/sql/statements/{id}/result/chunks/N a chunk
  POST /api/2.0/sql/statements/{id}/cancel
  GET  /external/{id}/{N}?sig=...                   an external link's data (JSON_ARRAY)
  POST /oidc/v1/token                               OAuth M2M
It prints `listening on PORT` when ready. Counters of what it served are at
GET /double/stats (statements, rows, bytes of result data).

Usage: python3 databricks_sql.py --db FILE [--port 0] [--token T] [--client-id I
       --client-secret S] [--chunk-rows N] [--delay-ms N] [--warehouse W] [--token-ttl S]
"""
import argparse
import base64
import datetime
import json
import math
import re
import secrets
import sqlite3
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
STATEMENTS = {}
LOCK = threading.Lock()
OAUTH_TOKENS = {}  # token -> expiry (time.time())
STATS = {"statements": 0, "rows": 0, "result_bytes": 0, "external_fetches": 0,
         "external_with_auth": 0}


def to_date(v):
    """Databricks' to_date: the date of a date, timestamp or ISO text."""
    if v is None:
        return None
    return datetime.date.fromisoformat(str(v)[:10]).isoformat()


def date_add(d, n):
    if d is None:
        return None
    return (datetime.date.fromisoformat(str(d)[:10]) + datetime.timedelta(days=int(n))).isoformat()


def run_statement(st):
    """Runs a statement on SQLite in the background, as a warehouse would."""
    with LOCK:
        st["state"] = "RUNNING"
    time.sleep(ARGS.delay_ms / 1000.0)
    sql = re.sub(r"\bAS\s+STRING\)", "AS TEXT)", st["statement"], flags=re.IGNORECASE)
    try:
        conn = sqlite3.connect(ARGS.db)
        conn.create_function("to_date", 1, to_date)
        conn.create_function("date_add", 2, date_add)
        conn.create_function("floor", 1, lambda v: None if v is None else math.floor(float(v)))
        cur = conn.execute(sql)
        columns = [d[0] for d in (cur.description or [])]
        rows = [[None if v is None else str(v) for v in r] for r in cur.fetchall()]
        conn.close()
    except sqlite3.Error as e:
        with LOCK:
            st["state"] = "FAILED"
            st["error"] = {"error_code": "BAD_REQUEST",
                           "message": f"[PARSE_SYNTAX_ERROR] {e}"}
        return
    n = max(1, ARGS.chunk_rows)
    chunks = [rows[i:i + n] for i in range(0, len(rows), n)] or [[]]
    with LOCK:
        st["columns"] = columns
        st["chunks"] = chunks
        st["state"] = "SUCCEEDED" if st["state"] == "RUNNING" else st["state"]
        STATS["rows"] += len(rows)


def manifest(st):
    offsets, offset = [], 0
    for i, c in enumerate(st["chunks"]):
        offsets.append({"chunk_index": i, "row_offset": offset, "row_count": len(c)})
        offset += len(c)
    return {
        "format": "JSON_ARRAY",
        "schema": {"column_count": len(st["columns"]),
                   "columns": [{"name": c, "type_name": "STRING", "type_text": "STRING",
                                "position": i} for i, c in enumerate(st["columns"])]},
        "total_chunk_count": len(st["chunks"]),
        "chunks": offsets,
        "total_row_count": offset,
        "truncated": False,
    }


def chunk(st, i, host):
    rows = st["chunks"][i]
    offset = sum(len(c) for c in st["chunks"][:i])
    out = {"chunk_index": i, "row_offset": offset, "row_count": len(rows)}
    nxt = i + 1 if i + 1 < len(st["chunks"]) else None
    if st["disposition"] == "EXTERNAL_LINKS":
        link = {"chunk_index": i, "row_offset": offset, "row_count": len(rows),
                "byte_count": len(json.dumps(rows)),
                "external_link": f"{host}/external/{st['id']}/{i}?sig={st['sig']}",
                "expiration": time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                            time.gmtime(time.time() + 900))}
        if nxt is not None:
            link["next_chunk_index"] = nxt
            link["next_chunk_internal_link"] = \
                f"/api/2.0/sql/statements/{st['id']}/result/chunks/{nxt}"
        out["external_links"] = [link]
    else:
        out["data_array"] = rows
        STATS["result_bytes"] += len(json.dumps(rows))
        if nxt is not None:
            out["next_chunk_index"] = nxt
            out["next_chunk_internal_link"] = \
                f"/api/2.0/sql/statements/{st['id']}/result/chunks/{nxt}"
    return out


def response(st, host):
    body = {"statement_id": st["id"], "status": {"state": st["state"]}}
    if st["state"] == "FAILED":
        body["status"]["error"] = st["error"]
    if st["state"] == "SUCCEEDED":
        body["manifest"] = manifest(st)
        body["result"] = chunk(st, 0, host)
    return body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def host(self):
        return f"http://{self.headers.get('Host')}"

    def authorized(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return False
        t = auth[len("Bearer "):]
        return (ARGS.token and t == ARGS.token) or OAUTH_TOKENS.get(t, 0) > time.time()

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_POST(self):
        path = urllib.parse.urlparse(self.path).path
        raw = self.body()
        if path == "/oidc/v1/token":
            auth = self.headers.get("Authorization", "")
            form = urllib.parse.parse_qs(raw.decode())
            want = "Basic " + base64.b64encode(
                f"{ARGS.client_id}:{ARGS.client_secret}".encode()).decode()
            if not ARGS.client_id or auth != want or \
                    form.get("grant_type") != ["client_credentials"]:
                return self.send(401, {"error": "invalid_client",
                                       "error_description": "Client authentication failed"})
            t = "oauth-" + secrets.token_hex(16)
            OAUTH_TOKENS[t] = time.time() + ARGS.token_ttl
            STATS["oauth_tokens"] = STATS.get("oauth_tokens", 0) + 1
            return self.send(200, {"access_token": t, "token_type": "Bearer",
                                   "scope": "all-apis", "expires_in": ARGS.token_ttl})
        if not self.authorized():
            return self.send(401, {"error_code": "UNAUTHENTICATED",
                                   "message": "Credential was not sent or was of an unsupported type for this API."})
        if path == "/api/2.0/sql/statements":
            req = json.loads(raw or b"{}")
            if req.get("warehouse_id") != ARGS.warehouse:
                return self.send(404, {"error_code": "RESOURCE_DOES_NOT_EXIST",
                                       "message": f"Warehouse {req.get('warehouse_id')} does not exist."})
            st = {"id": str(uuid.uuid4()), "statement": req.get("statement", ""),
                  "state": "PENDING", "disposition": req.get("disposition", "INLINE"),
                  "sig": secrets.token_hex(8), "chunks": [], "columns": []}
            with LOCK:
                STATEMENTS[st["id"]] = st
                STATS["statements"] += 1
            t = threading.Thread(target=run_statement, args=(st,), daemon=True)
            t.start()
            wait = req.get("wait_timeout", "10s")
            secs = int(wait.rstrip("s") or 0)
            t.join(timeout=secs if secs > 0 else 0)
            with LOCK:
                return self.send(200, response(st, self.host()))
        m = re.fullmatch(r"/api/2.0/sql/statements/([^/]+)/cancel", path)
        if m and m.group(1) in STATEMENTS:
            with LOCK:
                STATEMENTS[m.group(1)]["state"] = "CANCELED"
            return self.send(200, {})
        return self.send(404, {"error_code": "NOT_FOUND", "message": path})

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        m = re.fullmatch(r"/external/([^/]+)/(\d+)", url.path)
        if m:
            STATS["external_fetches"] += 1
            if self.headers.get("Authorization"):
                # Presigned storage URLs refuse a second credential.
                STATS["external_with_auth"] += 1
                return self.send(400, {"error": "InvalidArgument: only one auth mechanism allowed"})
            st = STATEMENTS.get(m.group(1))
            sig = urllib.parse.parse_qs(url.query).get("sig", [""])[0]
            if not st or sig != st["sig"]:
                return self.send(403, {"error": "AccessDenied"})
            rows = st["chunks"][int(m.group(2))]
            STATS["result_bytes"] += len(json.dumps(rows))
            return self.send(200, rows)
        if url.path == "/double/stats":
            return self.send(200, STATS)
        if not self.authorized():
            return self.send(401, {"error_code": "UNAUTHENTICATED",
                                   "message": "Credential was not sent or was of an unsupported type for this API."})
        m = re.fullmatch(r"/api/2.0/sql/statements/([^/]+)(/result/chunks/(\d+))?", url.path)
        if m and m.group(1) in STATEMENTS:
            st = STATEMENTS[m.group(1)]
            with LOCK:
                if m.group(3) is None:
                    return self.send(200, response(st, self.host()))
                i = int(m.group(3))
                if st["state"] != "SUCCEEDED" or i >= len(st["chunks"]):
                    return self.send(404, {"error_code": "NOT_FOUND", "message": "no such chunk"})
                return self.send(200, chunk(st, i, self.host()))
        return self.send(404, {"error_code": "NOT_FOUND", "message": url.path})


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token")
    p.add_argument("--client-id")
    p.add_argument("--client-secret")
    p.add_argument("--warehouse", default="wh-1")
    p.add_argument("--chunk-rows", type=int, default=10000)
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--token-ttl", type=int, default=3600,
                   help="seconds an OAuth token lasts (expires_in)")
    ARGS = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
