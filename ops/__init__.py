"""Host-side operations for tenantstack, used by tasks.py. Facts of the deployment come from `deployment`."""
