"""The glue's own migrations: only grants the deployment needs from inside the tenant's database (no models)."""
