#!/bin/sh
# First start: initdb on the (empty) data volume. Every start: refuse to run without the TLS files and the rendered
# pg_hba.conf, so the server never comes up accepting connections it should not.
set -eu

for f in /run/secrets/tls/server.crt /run/secrets/tls/server.key /etc/tenantstack/rendered/pg_hba.conf \
         /etc/tenantstack/rendered/tenantstack.conf; do
  if [ ! -r "$f" ]; then
    echo "postgres-entrypoint: $f is missing or unreadable: run ./invoke up (it renders and mounts it)" >&2
    exit 1
  fi
done

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  # peer for the local socket (the bootstrap superuser `postgres`, reachable only by docker exec in this container);
  # scram-sha-256 for everything over TCP. initdb's own pg_hba.conf is never read: hba_file points at the model's.
  # Data checksums: a torn or corrupted page is reported, not silently read (dumps then fail loudly).
  initdb --pgdata="$PGDATA" --username=postgres --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 --data-checksums >/dev/null
  echo "postgres-entrypoint: initialised a new cluster in $PGDATA"
fi

exec "$@"
