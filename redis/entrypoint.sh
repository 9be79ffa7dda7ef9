#!/bin/sh
# Refuse to start Redis with a missing/unreadable secret or a certificate that does not match its key,
# with one line per problem naming the file and the fix. All problems are collected before exiting.
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
exec "$@"
