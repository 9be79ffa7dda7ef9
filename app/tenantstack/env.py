"""The tenant's configuration: read only from the environment, validated as a whole, once.

Every process (web, worker, beat, manage.py) starts by calling `load_or_exit()`. If
TENANTSTACK_ENV_FILE names an existing file, python-dotenv loads it first without overriding
variables that are already set (in Compose it is not mounted: TENANTSTACK_ENV_FILE=envs/tenant-<t>.env
is set only so that errors can name the operator's file).

Secrets (the settings marked `as_file` in deployment/envs.py) may come two ways. In the containers,
only NAME_FILE is set (e.g. REDIS_PASSWORD_FILE=/run/secrets/app/redis_password, a read-only file
./invoke derives from the tenant's env file), so `docker inspect` never shows a secret. Outside
Compose (the app's tests, a plain shell) NAME itself may be set. When both are, the file wins: it is
what the deployment manages, and a stale variable must not shadow it. A NAME_FILE that is missing or
unreadable is a config error naming the file, never a silent fallback to NAME.

Every problem is collected, then the process stops with ONE line on stderr, e.g.

    config error: REDIS_PASSWORD is missing in envs/tenant-a.env: run ./invoke init

Run `python -m tenantstack.env` to check a configuration without starting anything;
`--shell` also prints the values the entrypoint needs as shell assignments.
"""
import functools
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deployment import envs, naming
from deployment import tenant as tenant_model

ENV_FILE_VAR = "TENANTSTACK_ENV_FILE"
EXAMPLE_VALUE = envs.PLACEHOLDER  # the placeholder of the committed *.env.example files; never valid
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h, like the redis entrypoint
INIT_FIX = "run ./invoke init"
TLS_FIX = "run ./invoke init on the host (it issues the certificates and gives each key to its user)"
TLS_MOUNT_FIX = f"{TLS_FIX} and check the TLS mounts of the tenant's containers"
SECRET_FILE_FIX = (f"run ./invoke up on the host (it writes the tenant's secret files from its env file, readable by "
                   f"the app's uid only) and check the {naming.APP_SECRETS_DIR} mount of the tenant's containers")

DEFAULT_VISIBILITY = int(envs.TENANT["CELERY_VISIBILITY_TIMEOUT"].default)
# The container's wiring (where Compose mounts things); the tenant's own settings and their defaults
# come from the one table in deployment/envs.py.
DEFAULTS = {
    "REDIS_HOST": naming.REDIS_SERVICE,
    "REDIS_PORT": str(naming.REDIS_TLS_PORT),
    "TLS_CA_FILE": "/run/secrets/tls/ca.crt",
    "TLS_CERT_FILE": "/run/secrets/tls/client.crt",
    "TLS_KEY_FILE": "/run/secrets/tls/client.key",
    "DATA_DIR": "/data",
    # PostgreSQL (DATABASE=postgres): the server's service name, the one its certificate carries (verify-full)
    "DATABASE_HOST": naming.POSTGRES_SERVICE,
    "DATABASE_PORT": str(naming.POSTGRES_PORT),
    **{s.name: s.default for s in envs.TENANT_SETTINGS if s.is_integer and s.default},
}


@dataclass(frozen=True)
class Config:
    tenant: str
    secret_key: str
    redis_password: str
    redis_host: str
    redis_port: int
    tls_ca_file: Path
    tls_cert_file: Path
    tls_key_file: Path
    data_dir: Path
    database_url: str  # empty: SQLite at data_dir/db.sqlite3 (or PostgreSQL from its parts, DATABASE=postgres)
    task_time_limit: int
    visibility_timeout: int
    worker_concurrency: int
    worker_prefetch_multiplier: int
    allowed_hosts: tuple[str, ...]
    admin_password: str  # empty: the web entrypoint leaves the admin user alone
    broadcast_queues: tuple[str, ...] = ()  # Broadcast() queues the workers consume besides the tenant's queue
    # The tenant's declarations (deployment/tenant.py): project, Redis roles, queues, pools. None only when
    # the configuration has problems (then read_config raises).
    spec: tenant_model.Spec | None = None
    pool: str = tenant_model.DEFAULT_POOL  # the worker pool this process belongs to (WORKER_POOL, set per service)
    # DATABASE=postgres: the connection's parts (the database and role names come from naming, the CA is tls_ca_file)
    database_host: str = naming.POSTGRES_SERVICE
    database_port: int = naming.POSTGRES_PORT
    database_password: str = ""  # from DATABASE_PASSWORD_FILE; read only on PostgreSQL

    @property
    def soft_time_limit(self) -> int:
        """Seconds after which a task gets SoftTimeLimitExceeded: 10% (at most 30 s) before the hard kill."""
        return max(1, self.task_time_limit - min(30, max(1, self.task_time_limit // 10)))

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "db.sqlite3"

    @property
    def on_postgres(self) -> bool:
        return bool(self.spec and self.spec.on_postgres)

    @property
    def queue(self) -> str:
        """The tenant's default queue: the first of CELERY_QUEUES (tenant-<name> when none are declared)."""
        return self.spec.default_queue if self.spec else naming.queue_name(self.tenant)

    @property
    def queues(self) -> tuple[str, ...]:
        return self.spec.queues if self.spec else (self.queue,)

    @property
    def roles(self) -> tuple[str, ...]:
        return self.spec.roles if self.spec else ("broker",)

    @property
    def worker_pool(self) -> tenant_model.Pool:
        return self.spec.pool(self.pool)

    @property
    def consumed_queues(self) -> tuple[str, ...]:
        """What this pool's workers consume: the pool's queues, then the declared Broadcast() queues (by name)."""
        return (*self.worker_pool.queues, *self.broadcast_queues)


class ConfigError(Exception):
    """Every problem found in the configuration; str() is the one line the operator sees."""

    def __init__(self, problems: list[str]):
        super().__init__(problems)
        self.problems = problems

    def __str__(self) -> str:
        return "; ".join(self.problems)


def load_env_file() -> None:
    """python-dotenv loads TENANTSTACK_ENV_FILE if that file exists, never overriding variables already set."""
    path = os.environ.get(ENV_FILE_VAR)
    if path and os.path.isfile(path):
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


def read_config(environ: Mapping[str, str]) -> Config:
    """Validate `environ` as a whole; raise ConfigError naming every problem."""
    return _Reader(environ).config()


class _Reader:
    """Collects problems grouped by what is wrong and how to fix it, so the one line stays short."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        self.where = environ.get(ENV_FILE_VAR) or "the environment"
        self.groups: dict[tuple[str, bool, str], list[str]] = {}
        self.bad_files: set[str] = set()  # settings whose NAME_FILE is missing or unreadable
        self.whole: list[str] = []  # problems the model states whole (deployment/tenant.py cross-checks)

    def problem(self, subject: str, state: str, fix: str, *, in_env_file: bool = True) -> None:
        """Record `<subject> is <state> [in <env file>]: <fix>`; same state and fix share one clause."""
        self.groups.setdefault((state, in_env_file, fix), []).append(subject)

    @property
    def problems(self) -> list[str]:
        lines = []
        for (state, in_env_file, fix), subjects in self.groups.items():
            names = subjects[0] if len(subjects) == 1 else f"{', '.join(subjects[:-1])} and {subjects[-1]}"
            where = f" in {self.where}" if in_env_file else ""
            lines.append(f"{names} {'is' if len(subjects) == 1 else 'are'} {state}{where}: {fix}")
        return lines + [f"{p} (in {self.where})" for p in self.whole]

    def raw(self, key: str) -> str:
        value = self.environ.get(key, "").strip()
        return value or DEFAULTS.get(key, "")

    def from_file(self, key: str) -> tuple[bool, str]:
        """(True, value) from the file KEY_FILE names, or (False, '') without KEY_FILE; a bad file is a problem."""
        var = naming.secret_file_var(key)
        path = self.environ.get(var, "").strip()
        if not path:
            return False, ""
        subject = f"{var} {path}"
        try:
            with open(path, encoding="utf-8") as fh:
                return True, fh.read().strip()  # stripped like a variable's value: a trailing newline is not part of it
        except FileNotFoundError:
            self.problem(subject, "missing", SECRET_FILE_FIX, in_env_file=False)
        except IsADirectoryError:
            self.problem(subject, "a directory, not a file", SECRET_FILE_FIX, in_env_file=False)
        except UnicodeDecodeError:
            self.problem(subject, "not UTF-8 text", SECRET_FILE_FIX, in_env_file=False)
        except OSError as exc:
            self.problem(subject, f"not readable by uid {os.geteuid()} ({exc.strerror})", SECRET_FILE_FIX,
                         in_env_file=False)
        self.bad_files.add(key)
        return True, ""

    def secret(self, key: str, *, required: bool = True) -> str:
        """A file-delivered setting: from KEY_FILE if set (it wins), else KEY."""
        in_file, value = self.from_file(key)
        if key in self.bad_files:
            return ""  # already named, with its own fix
        if not in_file:
            value = self.raw(key)
        if not value and required:
            self.problem(key, "missing", INIT_FIX)
        elif value == EXAMPLE_VALUE:
            self.problem(key, f"still the example value '{EXAMPLE_VALUE}'", INIT_FIX)
            return ""
        return value

    def integer(self, key: str, *, low: int, high: int, fix: str) -> int:
        value = self.raw(key)
        try:
            number = int(value)
        except ValueError:
            self.problem(f"{key}={value!r}", "not a whole number", fix)
            return 0
        if not low <= number <= high:
            self.problem(f"{key}={number}", f"out of range {low}..{high}", fix)
            return 0
        return number

    def setting(self, key: str) -> int:
        """An integer tenant setting, validated by its row in deployment/envs.py."""
        row = envs.TENANT[key]
        return self.integer(key, low=row.low, high=row.high, fix=row.fix)

    def names(self, key: str) -> tuple[str, ...]:
        """A comma-separated list setting, each item validated by its row in deployment/envs.py."""
        row = envs.TENANT[key]
        values, problem = envs.items(row, self.raw(key))
        if problem:  # "<KEY> has invalid item '<item>'"
            self.problem(f"{key} item {problem.rsplit(' ', 1)[-1]}", "not valid", row.fix)
        return values

    def tenant(self) -> str:
        value = self.raw("TENANT")
        if not value:
            self.problem("TENANT", "missing", "set TENANT to the tenant's name, e.g. TENANT=a")
        elif not naming.is_valid_tenant_name(value):
            self.problem(f"TENANT={value!r}", "not a valid tenant name", envs.TENANT["TENANT"].fix)
        return value

    def readable_file(self, key: str) -> Path:
        path = Path(self.raw(key))
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except FileNotFoundError:
            self.problem(f"{key} {path}", "missing", TLS_MOUNT_FIX, in_env_file=False)
        except IsADirectoryError:
            self.problem(f"{key} {path}", "a directory, not a file", "mount the file itself there, not its folder",
                         in_env_file=False)
        except OSError as exc:
            self.problem(f"{key} {path}", f"not readable by uid {os.geteuid()} ({exc.strerror})", TLS_FIX,
                         in_env_file=False)
        return path

    def data_dir(self) -> Path:
        path = Path(self.raw("DATA_DIR"))
        uid = os.geteuid()
        if not path.is_absolute():
            self.problem(f"DATA_DIR={str(path)!r}", "not an absolute path", "set it to the tenant's volume, e.g. /data")
            return path
        volume_fix = "mount the tenant's data volume there"
        try:
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except FileNotFoundError:
            self.problem(f"DATA_DIR {path}", "missing", volume_fix, in_env_file=False)
        except OSError as exc:
            self.problem(f"DATA_DIR {path}", f"not reachable by uid {uid} ({exc.strerror})", volume_fix,
                         in_env_file=False)
        else:
            if not is_dir:
                self.problem(f"DATA_DIR {path}", "not a directory", volume_fix, in_env_file=False)
            elif not os.access(path, os.W_OK | os.X_OK, effective_ids=True):
                self.problem(f"DATA_DIR {path}", f"not writable by uid {uid}",
                             "give the tenant's data volume to that uid",
                             in_env_file=False)
        return path

    def database_url(self) -> str:
        value = self.secret("DATABASE_URL", required=False)  # may embed a password: file-delivered in Compose
        if not value:
            return ""
        import dj_database_url

        try:
            dj_database_url.parse(value)
        except Exception:  # noqa: BLE001 - the URL holds a password: never echo it or its parser's message
            scheme = value.split("://", 1)[0] if "://" in value else "(none)"
            self.problem(f"DATABASE_URL (scheme {scheme})", "not a database URL that Django supports",
                         "use postgres://USER:PASSWORD@HOST:5432/NAME, or leave it empty for SQLite on DATA_DIR")
        return value

    def postgres(self, spec: tenant_model.Spec | None, database_url: str) -> dict:
        """DATABASE=postgres: host, port and the password file, each missing part its own clause; {} on SQLite."""
        if not (spec and spec.on_postgres):
            return {}
        if database_url:  # the model refuses it in the env file; a DATABASE_URL_FILE could still bring one
            self.problem("DATABASE_URL", "set together with DATABASE=postgres",
                         "empty DATABASE_URL (the connection is built from its parts, the password from "
                         "DATABASE_PASSWORD_FILE), or set DATABASE=sqlite to use the URL")
        host = self.raw("DATABASE_HOST")  # unset or empty: the server's service name (DEFAULTS)
        port = self.integer("DATABASE_PORT", low=1, high=65535,
                            fix=f"leave it unset: PostgreSQL listens on {naming.POSTGRES_PORT}")
        return {"database_host": host, "database_port": port,
                "database_password": self.secret("DATABASE_PASSWORD")}

    def allowed_hosts(self, tenant: str) -> tuple[str, ...]:
        hosts = tuple(h.strip() for h in self.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip())
        return hosts or ("127.0.0.1", "localhost", naming.service_name(tenant, "web"))

    def spec(self, tenant: str) -> tenant_model.Spec | None:
        """Project, roles, queues and pools, cross-checked (deployment/tenant.py); problems join the others."""
        if not tenant or not naming.is_valid_tenant_name(tenant):
            return None
        values = {s.name: self.raw(s.name) for s in envs.TENANT_SETTINGS if not s.as_file}
        found, problems = tenant_model.read(tenant, values)
        self.whole.extend(problems)  # already one sentence each, with its fix
        return found

    def pool(self, spec: tenant_model.Spec | None) -> str:
        name = self.raw("WORKER_POOL") or tenant_model.DEFAULT_POOL
        if spec and name not in {p.name for p in spec.pools}:
            self.problem(f"WORKER_POOL={name!r}", "not a pool of WORKER_POOLS",
                         f"use one of {', '.join(p.name for p in spec.pools)}")
        return name

    def config(self) -> Config:
        tenant = self.tenant()
        spec = self.spec(tenant)
        time_limit = self.setting("CELERY_TASK_TIME_LIMIT")
        visibility = self.setting("CELERY_VISIBILITY_TIMEOUT")
        if time_limit and visibility and visibility <= time_limit:
            self.problem(f"CELERY_VISIBILITY_TIMEOUT={visibility}",
                         f"not larger than CELERY_TASK_TIME_LIMIT={time_limit}",
                         "a task still running would be delivered a second time; "
                         f"set it well above the time limit, e.g. {max(DEFAULT_VISIBILITY, time_limit * 2)}")
        database_url = self.database_url()
        config = Config(
            tenant=tenant,
            secret_key=self.secret("DJANGO_SECRET_KEY"),
            redis_password=self.secret("REDIS_PASSWORD"),
            redis_host=self.raw("REDIS_HOST"),
            redis_port=self.integer("REDIS_PORT", low=1, high=65535,
                                    fix=f"set it to the Redis TLS port, e.g. {naming.REDIS_TLS_PORT}"),
            tls_ca_file=self.readable_file("TLS_CA_FILE"),
            tls_cert_file=self.readable_file("TLS_CERT_FILE"),
            tls_key_file=self.readable_file("TLS_KEY_FILE"),
            data_dir=self.data_dir(),
            database_url=database_url,
            task_time_limit=time_limit,
            visibility_timeout=visibility,
            worker_concurrency=self.setting("CELERY_WORKER_CONCURRENCY"),
            worker_prefetch_multiplier=self.setting("CELERY_WORKER_PREFETCH_MULTIPLIER"),
            allowed_hosts=self.allowed_hosts(tenant),
            admin_password=self.secret("DJANGO_ADMIN_PASSWORD", required=False),
            broadcast_queues=self.names("CELERY_BROADCAST_QUEUES"),
            spec=spec,
            pool=self.pool(spec),
            **self.postgres(spec, database_url),
        )
        if self.problems:
            raise ConfigError(self.problems)
        return config


@functools.cache
def load() -> Config:
    """The process's configuration (TENANTSTACK_ENV_FILE loaded first); raises ConfigError."""
    load_env_file()
    return read_config(os.environ)


def load_or_exit() -> Config:
    """The process's configuration, or exit with one `config error: ...` line on stderr."""
    try:
        return load()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG) from None


def export_secrets(config: Config) -> None:
    """Put the file-delivered settings into this process's environment (never the container's).

    A project's settings module often reads `os.environ["DJANGO_SECRET_KEY"]` or DATABASE_URL at import; in the
    containers only NAME_FILE is set (`docker inspect` shows no secret), so the glue reads the files (load())
    and hands the values to the process and its children here, before the project's settings are imported.
    On PostgreSQL the URL is built from the parts (a project like cookiecutter-django's stops at import without
    one); the glue's DATABASES replaces what the project makes of it anyway."""
    values = {"DJANGO_SECRET_KEY": config.secret_key, "REDIS_PASSWORD": config.redis_password,
              "DJANGO_ADMIN_PASSWORD": config.admin_password,
              "DATABASE_URL": postgres_url(config) if config.on_postgres else config.database_url,
              "DATABASE_PASSWORD": config.database_password}
    for name, value in values.items():
        if value:
            os.environ[name] = value


def postgres_url(config: Config) -> str:
    """The tenant's PostgreSQL connection as a URL, for project settings that read DATABASE_URL at import only.

    The generated passwords are URL-safe (token_urlsafe); quoting keeps any other one intact."""
    from urllib.parse import quote, urlencode

    query = urlencode({"sslmode": "verify-full", "sslrootcert": str(config.tls_ca_file)})
    return (f"postgres://{naming.database_role(config.tenant)}:{quote(config.database_password, safe='')}@"
            f"{config.database_host}:{config.database_port}/{naming.database_name(config.tenant)}?{query}")


def shell_assignments(config: Config) -> str:
    """What entrypoint.sh needs, as `NAME=value` lines safe for `eval`."""
    import shlex

    values = {"DATA_DIR": config.data_dir, "QUEUES": ",".join(config.consumed_queues),
              "CONCURRENCY": config.worker_pool.concurrency}
    return "".join(f"{name}={shlex.quote(str(value))}\n" for name, value in values.items())


if __name__ == "__main__":
    _config = load_or_exit()
    if sys.argv[1:] == ["--shell"]:
        print(shell_assignments(_config), end="")
