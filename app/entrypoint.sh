#!/bin/sh
# Start one role of a tenant's project through the glue (tenantstack): web | worker | beat | manage [manage.py
# arguments...], or metrics. The project is at /srv/app; its settings, Celery app and WSGI app are named in the
# tenant's env file and wrapped by tenantstack.settings, tenantstack.celery and tenantstack.wsgi.
# `metrics` (the monitoring profile's tenant-<name>-metrics) gets none of the tenant's secrets and a read-only
# volume: it starts at once, without the tenant's configuration and without migrating. Every other role first
# applies migrations under an exclusive lock on the shared data volume, so the
# web, worker and beat of a tenant never migrate at the same time (with PostgreSQL too).
set -eu

usage="usage: entrypoint.sh web|worker|beat|manage [manage.py arguments...], or metrics"
[ $# -ge 1 ] || { echo "entrypoint: no role given: $usage" >&2; exit 64; }
role=$1
shift
case "$role" in
  web|worker|beat|manage|metrics) ;;
  *) echo "entrypoint: unknown role '$role': $usage" >&2; exit 64 ;;
esac

cd "${TENANTSTACK_PROJECT_DIR:-/srv/app}"  # the project (tests point it at app/example)
if [ "$role" = metrics ]; then
  exec python -m tenantstack.metrics
fi
# Validates the whole environment first: one `config error: ...` line and exit 78 if it is wrong.
settings=$(python -m tenantstack.env --shell)
eval "$settings"  # DATA_DIR, QUEUES (this pool's queues, then the Broadcast() queues), CONCURRENCY

# PostgreSQL tenants: reach the database first (one `database error: ...` line naming the fix if not).
python -m tenantstack.dbcheck

lock="$DATA_DIR/.migrate.lock"
status=0
flock --exclusive --timeout 300 --conflict-exit-code 75 "$lock" python -m tenantstack.manage migrate --noinput || status=$?
if [ "$status" -eq 75 ]; then
  echo "entrypoint: $lock stayed locked for 300 s: another container of this tenant is stuck migrating; stop it" >&2
  exit 75
elif [ "$status" -ne 0 ]; then
  echo "entrypoint: migrate failed (exit $status, see above): fix the database, then restart" >&2
  exit "$status"
fi

export TENANTSTACK_ROLE="$role"  # the glue logs once what it overrode, in the long-running roles only
case "$role" in
  web)
    TENANTSTACK_ROLE='' python -m tenantstack.manage ensure_admin
    exec gunicorn --config python:tenantstack.gunicorn_conf
    ;;
  worker)
    exec celery -A tenantstack.celery worker --queues "$QUEUES" --hostname 'celery@%h' --concurrency "$CONCURRENCY" \
      --loglevel INFO
    ;;
  beat)
    exec celery -A tenantstack.celery beat --schedule "$DATA_DIR/celerybeat-schedule" --loglevel INFO
    ;;
  manage)
    exec python -m tenantstack.manage "$@"
    ;;
esac
