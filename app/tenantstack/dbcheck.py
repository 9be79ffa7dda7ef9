"""Before a tenant's process migrates or starts: can it reach its PostgreSQL database? One line if not, naming the fix.

Run by the entrypoint (`python -m tenantstack.dbcheck`) for every role but `metrics`, on DATABASE=postgres only
(SQLite has nothing to reach). Without it, a wrong password or a stopped server ends in Django's migration
traceback. The server being down or still starting is retried for a while (RETRY_SECONDS: `up` starts it healthy
first, but it may restart under a running tenant); refusals that waiting cannot fix end at once. Exit codes:
0 reachable, 78 (EX_CONFIG) refused: password, rules or database missing, 75 (EX_TEMPFAIL) not reachable in time.
The password travels only inside psycopg's connection; no message printed here contains it.
"""
import sys
import time

from deployment import naming
from tenantstack import env

RETRY_SECONDS = 60
CONNECT_TIMEOUT = 5
EX_TEMPFAIL, EX_CONFIG = 75, 78


def classify(message: str, config: env.Config) -> tuple[int, str]:
    """(exit code, the one line) for a failed connection's message from libpq."""
    role, db, t = naming.database_role(config.tenant), naming.database_name(config.tenant), config.tenant
    where = f"PostgreSQL at {config.database_host}:{config.database_port}"
    up = f"./invoke up --tenant {t}"
    if "password authentication failed" in message:
        return EX_CONFIG, (f"{where} refused role {role}'s password (DATABASE_PASSWORD in the tenant's env file and "
                           f"the role's password differ): run {up}, which sets the role's password from the env file")
    if "no pg_hba.conf entry" in message or "does not exist" in message:
        return EX_CONFIG, (f"{where} has no database {db} or no rule letting role {role} reach it: run {up}, which "
                           "provisions the tenant's role, database and rules")
    if "certificate" in message or "SSL" in message:
        return EX_CONFIG, (f"{where}: TLS verification failed ({first_line(message)}): the server's certificate "
                           "must come from the deployment's CA and name `postgres`: run ./invoke init, then " + up)
    if "too many connections" in message or "connection limit" in message:
        return EX_TEMPFAIL, (f"{where}: role {role} is at its CONNECTION LIMIT (DATABASE_CONNECTION_LIMIT): raise "
                             f"it in the tenant's env file, then {up}")
    return EX_TEMPFAIL, (f"{where} is not reachable ({first_line(message)}): start it with {up}")


def first_line(message: str) -> str:
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "no message")[:200]


def retryable(message: str) -> bool:
    return any(s in message for s in ("could not translate host name", "Connection refused", "timeout expired",
                                      "the database system is starting up", "the database system is shutting down",
                                      "server closed the connection"))


def check(config: env.Config, retry_seconds: float = RETRY_SECONDS) -> tuple[int, str]:
    import psycopg

    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            with psycopg.connect(host=config.database_host, port=config.database_port,
                                 dbname=naming.database_name(config.tenant), user=naming.database_role(config.tenant),
                                 password=config.database_password, sslmode="verify-full",
                                 sslrootcert=str(config.tls_ca_file), connect_timeout=CONNECT_TIMEOUT) as conn:
                conn.execute("SELECT 1")
            return 0, ""
        except psycopg.OperationalError as exc:
            message = str(exc)
            if not retryable(message) or time.monotonic() >= deadline:
                return classify(message, config)
            time.sleep(2)


def main() -> int:
    config = env.load_or_exit()
    if not config.on_postgres:
        return 0
    code, line = check(config)
    if code:
        print(f"database error: tenant {config.tenant}: {line}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
