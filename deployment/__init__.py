"""The deployment model: every fact of a tenantstack instance, owned here once.

Imported by the host tooling (tasks.py, ops/, tests/ run from the repository root) and by the app
image (copied next to the app as /srv/app/deployment), both as a plain top-level package.
It imports nothing but the standard library, so either side can use any of it.

  naming           names derived from a tenant's short name (user, prefix, queue, channels, services, volume)
  instance         one instance: its Compose project, host ports, paths, volumes, images
  ports            the host-wide registry of port blocks, so instances never collide
  tenant_settings  the one table of a tenant's env-file settings (default, validation, comment)
  acl              the one renderer of Redis ACL rules and the auth file
  durations        the short durations operators type (7d)
"""
