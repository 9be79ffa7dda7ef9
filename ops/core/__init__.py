"""What every layer uses: the one error type (errors), the one subprocess runner and the one waiter (run)."""
