"""Monitoring: the profile's rendered configuration, ops' textfile metrics, and `./invoke status`.

Sits above deploy, secrets and data (it reads what they own) and below tasks.py.
"""
