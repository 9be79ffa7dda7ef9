#!/usr/bin/env python3
"""Django's command-line utility of the example project (the deployment runs `python -m tenantstack.manage`)."""
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
