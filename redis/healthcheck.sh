#!/bin/sh
# A real check: TLS with a client certificate, authenticated as the `health` user (PING and SCRIPT LOAD
# only). It also (re)loads kombu's Lua scripts, which tenants may EVALSHA but never load themselves:
# Redis forgets scripts at every restart (and restore), so healthy means "answers AND every script
# kombu needs is loaded under the SHA1 the tenants' ACL allows". One valkey-cli session: the commands
# (SCRIPT LOAD ..., PING) and the expected answers are rendered by ./invoke (deployment/lua.py).
set -eu
dir=/run/secrets/redis
want=$(cat "$dir/load.expect")
got=$(REDISCLI_AUTH=$(cat "$dir/health.pass") valkey-cli --no-auth-warning \
  --tls --cacert /run/secrets/tls/ca.crt --cert /run/secrets/tls/server.crt --key /run/secrets/tls/server.key \
  -h 127.0.0.1 -p 6380 --user health < "$dir/load.redis-cli" 2>&1) || true
if [ "$got" != "$want" ]; then
  echo "redis-healthcheck: expected the SHA1s of $dir/load.expect then PONG, got: $(echo "$got" | head -c 300)" >&2
  exit 1
fi
