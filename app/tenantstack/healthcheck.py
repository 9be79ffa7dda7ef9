"""Container healthchecks: `python -m tenantstack.healthcheck web|worker|beat`. Exit 0 healthy, 1 not, one line why.

web:    GET http://127.0.0.1:<web container port>/healthz answers 200 (database and broker both ok).
worker: this container's worker node (celery@<hostname>) PINGed the broker within WORKER_MAX_AGE seconds
        (its consumer touches a file after every PING: jobs/liveness.py says why not `inspect ping`).
beat:   DATA_DIR/beat.heartbeat was touched less than BEAT_MAX_AGE seconds ago.
"""
import argparse
import re
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from http import HTTPStatus
from pathlib import Path

from deployment import naming

WEB_URL = f"http://127.0.0.1:{naming.WEB_CONTAINER_PORT}/healthz"
BEAT_MAX_AGE = 60  # seconds; beat ticks at least every beat_max_loop_interval (10 s)
WORKER_MAX_AGE = 30  # seconds; the worker PINGs the broker and touches its liveness file every 5 s
HEARTBEAT_FILE = "beat.heartbeat"  # touched by tenantstack.beat's scheduler on every tick
TIMEOUT = 5


def worker_node_name(hostname: str | None = None) -> str:
    """The worker's node name: the entrypoint starts workers with `-n celery@%h`."""
    return f"celery@{hostname or socket.gethostname()}"


def check_web(url: str = WEB_URL, timeout: float = TIMEOUT) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed local URL
            return None if response.status == HTTPStatus.OK else f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}: {exc.read(300).decode(errors='replace')}"
    except OSError as exc:
        return f"{url} is unreachable: {exc}"


def check_worker(node: str | None = None, max_age: float | None = None) -> str | None:
    node = node or worker_node_name()
    max_age = WORKER_MAX_AGE if max_age is None else max_age
    path = liveness_path(node)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"worker {node} is not consuming: {path} does not exist (starting, or its consumer stopped)"
    if age > max_age:
        return f"worker {node} last reached the broker {age:.0f} s ago (limit {max_age:g} s): see its log"
    return None


def liveness_path(node: str) -> Path:
    """Touched by the worker (jobs/liveness.py); in the container's own /tmp, never shared with another one."""
    return Path(tempfile.gettempdir()) / f"worker-{re.sub(r'[^A-Za-z0-9._-]', '_', node)}.alive"


def heartbeat_path(data_dir: Path) -> Path:
    return Path(data_dir) / HEARTBEAT_FILE


def check_beat(max_age: float = BEAT_MAX_AGE) -> str | None:
    # Not tenantstack.beat: importing celery.beat costs more CPU than the whole check, every 15 s, in every tenant.
    from tenantstack import env

    path = heartbeat_path(env.load_or_exit().data_dir)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"{path} does not exist: beat has not ticked yet"
    if age > max_age:
        return f"{path} is {age:.0f} s old (limit {max_age:g} s): beat is stuck"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tenantstack.healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["web", "worker", "beat"])
    parser.add_argument("--url", default=WEB_URL, help="web: the healthz URL")
    parser.add_argument("--node", default=None, help="worker: node name (default celery@<hostname>)")
    parser.add_argument("--max-age", type=float, default=None,
                        help=f"beat, worker: file age limit, seconds (beat {BEAT_MAX_AGE}, worker {WORKER_MAX_AGE})")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="web: seconds to wait for an answer")
    args = parser.parse_args(argv)
    if args.role == "web":
        problem = check_web(args.url, args.timeout)
    elif args.role == "worker":
        problem = check_worker(args.node, args.max_age)
    else:
        problem = check_beat(BEAT_MAX_AGE if args.max_age is None else args.max_age)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
