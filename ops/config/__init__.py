"""Readers of the instance's configuration: its paths, its env files, its tenants. Nothing of ops is imported here."""
