"""Running an instance: every Compose call (compose), containers and volumes, health, preflight, instances,
and the operator's Redis client (redis_admin)."""
