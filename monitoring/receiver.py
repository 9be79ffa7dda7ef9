"""The monitoring profile's local alert receiver, and the server of ops' textfile metrics (python3 stdlib only).

POST /           Alertmanager's webhook: each notification is appended as one JSON line to LOG (rotated
                 to LOG.1 beyond MAX_LOG_BYTES), so alerts reach something on this box out of the box.
GET  /metrics    the `*.prom` files ./invoke writes into TEXTFILE_DIR (last verified backup, certificate
                 expiry: facts only root on the host can read), plus this receiver's own counter.
GET  /healthz    200 when the log folder is writable.

Usage: receiver.py --port PORT [--log FILE] [--textfile DIR]
"""
import argparse
import datetime as dt
import json
import os
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 1 << 20  # Alertmanager's notifications are a few KiB; refuse anything absurd
MAX_LOG_BYTES = 10 << 20  # then LOG.1: the volume never grows without bound
_lock = threading.Lock()
_counts = {"received": 0}  # notifications logged since start (the receiver's own metric)


class Handler(BaseHTTPRequestHandler):
    server_version = "tenantstack-alert-receiver"
    log_path: Path
    textfile_dir: Path

    def log_message(self, fmt, *args):  # one short line per request on stderr, no bodies
        sys.stderr.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")

    def _answer(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            return self._answer(HTTPStatus.BAD_REQUEST, b"a JSON body of at most 1 MiB is expected\n")
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError:
            return self._answer(HTTPStatus.BAD_REQUEST, b"the body is not JSON\n")
        line = json.dumps({"received": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "notification": payload}, sort_keys=True) + "\n"
        with _lock:
            if self.log_path.exists() and self.log_path.stat().st_size > MAX_LOG_BYTES:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(line)
            _counts["received"] += 1
        return self._answer(HTTPStatus.OK, b"logged\n")

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/healthz":
            ok = os.access(self.log_path.parent, os.W_OK)
            return self._answer(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE,
                                b"ok\n" if ok else b"the alert log folder is not writable\n")
        if self.path != "/metrics":
            return self._answer(HTTPStatus.NOT_FOUND, b"POST / (webhook), GET /metrics, GET /healthz\n")
        parts = []
        for path in sorted(self.textfile_dir.glob("*.prom")):
            try:
                parts.append(path.read_text(encoding="utf-8"))
            except OSError:
                continue  # being replaced right now: the next scrape reads it
        parts.append("# HELP tenantstack_alert_notifications_received_total Webhook notifications logged.\n"
                     "# TYPE tenantstack_alert_notifications_received_total counter\n"
                     f"tenantstack_alert_notifications_received_total {_counts['received']}\n")
        return self._answer(HTTPStatus.OK, "".join(parts).encode(), "text/plain; version=0.0.4; charset=utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", default="/var/log/alerts/alerts.jsonl")
    parser.add_argument("--textfile", default="/textfile")
    args = parser.parse_args(argv)
    Handler.log_path = Path(args.log)
    Handler.textfile_dir = Path(args.textfile)
    server = ThreadingHTTPServer(("0.0.0.0", args.port), Handler)  # noqa: S104 - on the monitoring network only
    print(f"alert receiver: logging to {args.log}, serving {args.textfile}/*.prom on :{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
