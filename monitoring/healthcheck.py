"""Healthcheck of a monitoring service: `healthcheck.py URL` exits 0 when URL answers 200, else 1 with one line.

The images have no curl or wget; python3's standard library is already there for the receiver.
"""
import sys
import urllib.error
import urllib.request
from http import HTTPStatus

TIMEOUT = 5


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: healthcheck.py URL", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(argv[0], timeout=TIMEOUT) as response:  # noqa: S310 - a fixed local URL
            if response.status == HTTPStatus.OK:
                return 0
            print(f"unhealthy: {argv[0]} answered {response.status}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {argv[0]}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
