"""Running an instance: every Compose call (compose), containers and volumes, health, preflight, instances, Redis admin."""
