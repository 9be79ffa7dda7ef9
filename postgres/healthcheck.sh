#!/bin/sh
# Healthy = accepting connections and serving queries with TLS on: a query as the bootstrap superuser over the
# container's own socket (peer), no password involved.
set -eu
[ "$(psql -X -q -A -t -h /tmp -U postgres -d postgres -c 'SHOW ssl')" = "on" ]
