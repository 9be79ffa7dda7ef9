"""`manage.py flush_results --older-than 7d [--dry-run] [--batch-size N]`: delete old results in batches."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from deployment.durations import DURATION_HELP, parse_duration
from tenantstack.cleanup import DEFAULT_BATCH_SIZE, delete_results_older_than


class Command(BaseCommand):
    help = "Delete task and group results older than a duration, in short batches."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, metavar="DURATION",
                            help=f"age of the results to delete: {DURATION_HELP}")
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                            help=f"rows per delete transaction (default {DEFAULT_BATCH_SIZE})")

    def handle(self, *args, older_than, dry_run, batch_size, **options):
        try:
            age = parse_duration(older_than)
        except ValueError as exc:
            raise CommandError(f"--older-than {exc}") from None
        if batch_size < 1:
            raise CommandError(f"--batch-size {batch_size} is not a positive number: use e.g. {DEFAULT_BATCH_SIZE}")
        if settings.CONFIG.spec.has("results"):
            # The `results` role: Celery keeps results in Redis with result_expires as their TTL; only rows from
            # before the role (or from tasks storing elsewhere) can be in the database, and those are flushed below.
            self.stdout.write(f"tenant {settings.TENANT} keeps task results in Redis: they expire by themselves "
                              f"after result_expires; flushing only what the database still holds")
        cutoff = timezone.now() - age
        report = delete_results_older_than(cutoff, batch_size=batch_size, dry_run=dry_run)
        rows = report["task_results"] + report["group_results"]
        verb = "would delete" if dry_run else "deleted"
        rate = f"{rows / report['seconds']:.0f}" if report["seconds"] > 0 else str(rows)
        self.stdout.write(f"{verb} {report['task_results']} task results and {report['group_results']} group results "
                          f"older than {older_than.strip()} (before {cutoff.isoformat(timespec='seconds')}) "
                          f"in {report['seconds']:.2f} s ({rate} rows/s)")
