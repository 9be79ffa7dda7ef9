"""Host-side operations for tenantstack, used by tasks.py. Facts of the deployment come from `deployment`.

Layers, bottom up (each imports only those below it):
  config   readers of the instance's configuration (paths, env files, tenants); nothing of ops
  core     the one error type, the one subprocess runner, the one waiter
  engine   the host's container engine: find or provision it, base image, healthcheck runner, host packages
  deploy   running the deployment: Compose calls, containers, health, preflight, instances, Redis admin client,
           per-tenant Redis connection caps
  secrets  generating secrets and certificates; the one writer of ACL rules; tenant-add
  data     what holds data: the backup format (backup writes it, restore reads it; neither imports the
           other), space checks, the journal, bgsave, backup, restore, recover, flush-results,
           retention (the one pruner), the backup schedule (backup-schedule)
  monitor  the monitoring profile: its configuration from envs/monitoring.env, ops' textfile metrics, status
  bench    the benchmark (its monitoring section uses monitor)
  lint     every linter (above all layers: it regenerates what Compose reads, then checks it)
"""
