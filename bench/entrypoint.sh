#!/bin/sh
# The bench's worker: migrate its own scratch database, then run a Celery worker of tenantbench.worker
# (the tenant's Celery app plus a no-op task, in the configuration BENCH_CONFIG names).
# `driver` keeps a container alive for `docker exec python -m tenantbench.drive ...` (the load generator).
set -eu
cd /srv/app
# The same validation as the shipped entrypoint: one `config error: ...` line if the env file is wrong.
settings=$(python -m tenantstack.env --shell)
eval "$settings"  # DATA_DIR, QUEUES, CONCURRENCY
case "${1:-worker}" in
  worker)
    python -m tenantstack.manage migrate --noinput -v 0
    # The shipped worker's command line, with the bench module instead of `tenantstack.celery`.
    exec celery -A tenantbench.worker worker --queues "$QUEUES" --hostname 'celery@%h' --concurrency "$CONCURRENCY" \
      --loglevel INFO
    ;;
  driver)
    exec sleep infinity
    ;;
  *)
    echo "bench entrypoint: unknown role '$1': worker|driver" >&2
    exit 64
    ;;
esac
