"""`python -m tenantstack.manage <command>`: Django's manage.py with the glue's settings, for any project.

The entrypoint and ops tasks run this instead of the project's manage.py, which may set another settings module.
"""
import os
import sys


def main(argv=None) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tenantstack.settings"
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
