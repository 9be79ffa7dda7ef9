#!/bin/sh
# Start one role of a tenant: web | worker | beat | manage [manage.py arguments...], or metrics.
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

cd "$(dirname "$0")"
if [ "$role" = metrics ]; then
  exec python -m jobs.metrics
fi
# Validates the whole environment first: one `config error: ...` line and exit 78 if it is wrong.
settings=$(python -m tenantstack.env --shell)
eval "$settings"  # DATA_DIR, QUEUES (the tenant's queue, then its Broadcast() queues), CONCURRENCY

if [ "$role" = web ] && [ ! -f static/staticfiles.json ]; then
  echo "entrypoint: static/staticfiles.json is missing: rebuild the image (collectstatic runs at build time)" >&2
  exit 70
fi

lock="$DATA_DIR/.migrate.lock"
status=0
flock --exclusive --timeout 300 --conflict-exit-code 75 "$lock" python manage.py migrate --noinput || status=$?
if [ "$status" -eq 75 ]; then
  echo "entrypoint: $lock stayed locked for 300 s: another container of this tenant is stuck migrating; stop it" >&2
  exit 75
elif [ "$status" -ne 0 ]; then
  echo "entrypoint: manage.py migrate failed (exit $status, see above): fix the database, then restart" >&2
  exit "$status"
fi

case "$role" in
  web)
    python manage.py ensure_admin
    exec gunicorn --config gunicorn.conf.py
    ;;
  worker)
    exec celery -A tenantstack worker --queues "$QUEUES" --hostname 'celery@%h' --concurrency "$CONCURRENCY" \
      --loglevel INFO
    ;;
  beat)
    exec celery -A tenantstack beat --schedule "$DATA_DIR/celerybeat-schedule" --loglevel INFO
    ;;
  manage)
    exec python manage.py "$@"
    ;;
esac
