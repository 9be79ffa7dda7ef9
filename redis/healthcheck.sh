#!/bin/sh
# A real check: TLS with a client certificate, authenticated as the PING-only `health` user.
set -eu
REDISCLI_AUTH=$(cat /run/secrets/redis/health.pass) redis-cli --no-auth-warning \
  --tls --cacert /run/secrets/tls/ca.crt --cert /run/secrets/tls/server.crt --key /run/secrets/tls/server.key \
  -h 127.0.0.1 -p 6380 --user health ping | grep -qx PONG
