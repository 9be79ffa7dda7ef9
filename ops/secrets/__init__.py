"""Secrets of an instance: generation (generate), certificates (tls), the one ACL writer (acl),
redis-commander's logins (commander), tenant-add."""
