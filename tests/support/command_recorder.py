"""Record which commands each ACL user sends to a test Redis, to derive exact allow-lists from.

Set TENANTSTACK_RECORD_COMMANDS=<file> for `./invoke test --fast -k ...`: the session's local_redis
then runs an operator MONITOR for the whole session and writes, per user, every command (with its
subcommand) seen, as JSON. MONITOR names a connection only by address, so the recorder samples
CLIENT LIST often to map an address to its user; commands run inside Lua show as user "lua".
Recording is a development aid only: with the variable unset nothing here runs.
"""
import json
import threading
import time
from collections import defaultdict

import redis

RECORD_VAR = "TENANTSTACK_RECORD_COMMANDS"
# Commands whose first argument is a subcommand (Redis 7.0 container commands kombu/Celery/redis-py use).
CONTAINERS = {"client", "script", "config", "object", "memory", "acl", "command", "pubsub", "function", "xinfo",
              "cluster", "latency", "slowlog", "module", "debug"}


class Recorder:
    def __init__(self, server, out_path: str):
        self.server = server
        self.out_path = out_path
        self.users: dict[str, str] = {}
        self.seen: dict[str, set] = defaultdict(set)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._monitor, daemon=True),
                        threading.Thread(target=self._sample_clients, daemon=True)]

    def start(self) -> "Recorder":
        for t in self.threads:
            t.start()
        time.sleep(0.3)
        return self

    def _sample_clients(self) -> None:
        c = self.server.client()
        while not self.stopping.is_set():
            try:
                for entry in c.client_list():
                    self.users[entry["addr"]] = entry["user"]
            except redis.RedisError:
                pass
            time.sleep(0.02)

    def _monitor(self) -> None:
        c = self.server.client(socket_timeout=None)
        with c.monitor() as m:
            while not self.stopping.is_set():
                try:
                    cmd = m.next_command()
                except (redis.RedisError, ValueError):
                    continue
                parts = cmd["command"].split(" ")
                name = parts[0].strip('"').lower()
                if name in CONTAINERS and len(parts) > 1:
                    name = f"{name}|{parts[1].strip(chr(34)).lower()}"
                if cmd.get("client_type") == "lua":
                    user = "lua"
                else:
                    user = self.users.get(f"{cmd['client_address']}:{cmd['client_port']}", "?")
                self.seen[user].add(name)

    def stop(self) -> None:
        self.stopping.set()
        time.sleep(0.3)
        with open(self.out_path, "w") as fh:
            json.dump({u: sorted(s) for u, s in sorted(self.seen.items())}, fh, indent=1)
