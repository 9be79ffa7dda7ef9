#!/bin/sh
# Refuse to start Redis with a missing/unreadable secret or a certificate that does not match its key,
# with one line per problem naming the file and the fix. All problems are collected before exiting.
# Then start Redis on loopback, load kombu's scripts, and only then accept clients (below).
set -eu
fix="run \`./invoke init\` on the host (\`./invoke init --rotate\` to reissue)"
errors=0
fail() { echo "redis: $1: $fix" >&2; errors=$((errors + 1)); }

for f in /etc/redis/redis.conf /run/secrets/tls/ca.crt /run/secrets/tls/server.crt /run/secrets/tls/server.key \
         /run/secrets/redis/auth.conf /run/secrets/redis/health.pass \
         /run/secrets/redis/load.redis-cli /run/secrets/redis/load.expect; do
  if [ ! -e "$f" ]; then fail "$f is missing"; elif [ ! -r "$f" ]; then fail "$f is not readable by uid $(id -u)"; fi
done
if [ "$errors" -eq 0 ]; then
  cert_key=$(openssl x509 -in /run/secrets/tls/server.crt -noout -pubkey 2>/dev/null || echo cert-unreadable)
  key_key=$(openssl pkey -in /run/secrets/tls/server.key -pubout 2>/dev/null || echo key-unreadable)
  [ "$cert_key" = "$key_key" ] || fail "/run/secrets/tls/server.crt does not match /run/secrets/tls/server.key"
  openssl verify -CAfile /run/secrets/tls/ca.crt /run/secrets/tls/server.crt >/dev/null 2>&1 \
    || fail "/run/secrets/tls/server.crt is not signed by /run/secrets/tls/ca.crt"
  if grep -q -- '>change-me\b\|requirepass change-me' /run/secrets/redis/auth.conf; then
    fail "/run/secrets/redis/auth.conf holds an example password"
  fi
fi
[ "$errors" -eq 0 ] || exit 78  # EX_CONFIG

# Tenants may EVALSHA kombu's scripts but never load them, and Redis starts with none: a worker that
# reconnected before they were loaded would die on NOSCRIPT + a refused SCRIPT LOAD. So Redis listens
# on loopback only until the healthcheck has loaded every script (and checked its SHA1), and only then
# binds what redis.conf says, with CONFIG SET under its generated name as the operator (password and
# name read from the auth file, passed in the environment, never on a command line). The loader is
# detached (double fork, so init reaps it) and Redis itself is exec'd: it gets SIGTERM directly and
# shuts down gracefully (final AOF fsync), as before.
( (
  until /usr/local/bin/redis-healthcheck 2>/dev/null; do sleep 0.1; done
  auth=/run/secrets/redis/auth.conf
  config=$(sed -n 's/^rename-command CONFIG //p' "$auth")
  bind=$(sed -n 's/^bind //p' /etc/redis/redis.conf)
  if REDISCLI_AUTH=$(sed -n 's/^requirepass //p' "$auth") valkey-cli --no-auth-warning \
       --tls --cacert /run/secrets/tls/ca.crt --cert /run/secrets/tls/server.crt --key /run/secrets/tls/server.key \
       -h 127.0.0.1 -p 6380 "$config" SET bind "$bind" | grep -qx OK; then
    echo "redis: kombu's scripts loaded; listening on $bind" >&2
  else
    echo "redis: could not bind $bind after loading kombu's scripts: still on loopback only" >&2
  fi
) & )
exec "$@" --bind 127.0.0.1
