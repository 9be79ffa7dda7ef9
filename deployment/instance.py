"""One instance of the deployment: a Compose project with its own ports, paths, volumes and images.

TENANTSTACK_INSTANCE names it; the default, `tenantstack`, keeps the paths, ports and volumes every
deployment had before instances existed (envs/, secrets/, backups/ at the top of the checkout; Redis on
6380, tenant webs from 8001; volumes tenantstack_*). Any other instance lives under
instances/<name>/ in the checkout ({envs,secrets,backups}/, its generated Compose file), publishes its
own port block (ports.py) and tags its own images, so it never reads or changes another instance.

The instance name IS the Compose project name (passed as --project-name on every call). A
COMPOSE_PROJECT_NAME in the environment that disagrees with it is refused rather than guessed at.
Images are tagged per instance (`tenantstack/app:local` for the default, `tenantstack/app:<name>`
otherwise): builds share the engine's layer cache, so a second instance costs seconds, and rebuilding
one instance from other code never changes what another runs.
"""
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import naming, ports, postgres
from .errors import DeploymentError

INSTANCE_VAR = "TENANTSTACK_INSTANCE"
DEFAULT = "tenantstack"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
NAME_RULE = "a lowercase letter, then up to 30 lowercase letters, digits or dashes"
ROOT = Path(__file__).resolve().parent.parent  # the checkout
IMAGE_REPO = "tenantstack"
# The images an instance builds: `app` is the base every tenant project's image starts FROM, `app-build` the same
# with compilers (a project's build stage); each tenant's own image is tenant_image() (built from its project).
COMPONENTS = ("redis", "app", "app-build", "redis-commander", "monitoring", "postgres")
TENANT_IMAGE_PREFIX = "tenant-"  # tenantstack/tenant-<name>:<tag>
# Built only by `./invoke bench`, FROM the instance's app image; never deployed, removed after each bench run.
BENCH_COMPONENT = "bench"
# Compose's own labels: every object of a project carries the project (the instance name); its containers also
# carry the --project-directory they were started with (the checkout's compose/ folder).
PROJECT_LABEL = "com.docker.compose.project"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"
# UIDs the images run as; host-side private keys are given to these owners (bind mounts keep host owners).
UIDS = {"redis": 999, "app": 10001, "commander": 10002, "monitoring": 10003, "postgres": 10004}


@dataclass(frozen=True)
class Instance:
    name: str
    root: Path = ROOT

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT

    # ---- paths -------------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        """Where this instance's own files live (generated env files, secrets, backups)."""
        return self.root if self.is_default else self.root / "instances" / self.name

    @property
    def examples(self) -> Path:
        """The committed *.env.example files every instance starts from."""
        return self.root / "envs"

    @property
    def envs(self) -> Path:
        return self.home / "envs"

    @property
    def redis_env(self) -> Path:
        return self.envs / "redis.env"

    @property
    def secrets(self) -> Path:
        return self.home / "secrets"

    @property
    def tls(self) -> Path:
        return self.secrets / "tls"

    @property
    def redis_secrets(self) -> Path:
        return self.secrets / "redis"

    @property
    def redis_auth_conf(self) -> Path:
        return self.redis_secrets / "auth.conf"

    @property
    def commander_settings(self) -> Path:
        return self.secrets / "commander" / "settings.json"

    def tenant_secrets(self, tenant: str) -> Path:
        """What `./invoke up` derives from envs/tenant-<name>.env for the containers (never edited by hand):
        `app.env`, the settings without secrets (Compose env_file), and `files/`, one read-only file per
        secret owned by the app's UID, mounted at naming.APP_SECRETS_DIR."""
        return self.secrets / "tenants" / tenant

    @property
    def monitoring_secrets(self) -> Path:
        """The monitoring profile's password files (redis-exporter's, each tenant metrics exporter's)."""
        return self.secrets / "monitoring"

    @property
    def monitoring_env(self) -> Path:
        """The one file an operator edits for monitoring: alert thresholds, `for:` durations, intervals."""
        return self.envs / "monitoring.env"

    @property
    def backup_env(self) -> Path:
        """The one file an operator edits for the backup policy: schedule, retention, the copy command."""
        return self.envs / "backup.env"

    @property
    def generated(self) -> Path:
        """Files derived on every run and mounted into containers (no secrets): the monitoring configuration."""
        return self.home / "generated"

    @property
    def monitoring_config(self) -> Path:
        """Rendered prometheus.yml, rules, alertmanager.yml (ops/monitor/config.py; never edited by hand)."""
        return self.generated / "monitoring"

    @property
    def textfile_metrics(self) -> Path:
        """Metrics ops writes as files (last verified backup, certificate expiry), served by the alert receiver."""
        return self.generated / "textfile"

    @property
    def postgres_config(self) -> Path:
        """pg_hba.conf and tenantstack.conf rendered by deployment/postgres.py (no secret: verifiers go by psql)."""
        return self.generated / "postgres"

    @property
    def backups(self) -> Path:
        return self.home / "backups"

    @property
    def tenants_compose_file(self) -> Path:
        """Per-tenant services derived from compose/tenant.yaml (generated, git-ignored)."""
        if self.is_default:
            return self.root / "compose" / "tenants.generated.yaml"
        return self.home / "tenants.generated.yaml"

    # ---- engine names ------------------------------------------------------------------------
    @property
    def compose_project(self) -> str:
        return self.name

    def container(self, service: str) -> str:
        return f"{self.name}-{service}-1"

    def volume(self, short: str) -> str:
        return f"{self.name}_{short}"

    def network(self, short: str = "default") -> str:
        return f"{self.name}_{short}"

    @property
    def image_tag(self) -> str:
        return "local" if self.is_default else self.name

    def image(self, component: str) -> str:
        """component: one of COMPONENTS, or BENCH_COMPONENT."""
        if component not in (*COMPONENTS, BENCH_COMPONENT):
            raise ValueError(f"unknown image component {component!r}: one of {', '.join(COMPONENTS)}")
        return f"{IMAGE_REPO}/{component}:{self.image_tag}"

    def tenant_image(self, tenant: str) -> str:
        """The image of one tenant's project (FROM image("app")), built from its APP_BUILD_CONTEXT."""
        return f"{IMAGE_REPO}/{TENANT_IMAGE_PREFIX}{tenant}:{self.image_tag}"

    def tenant_image_reference(self) -> str:
        """A `docker images --filter reference=` pattern matching every tenant image of this instance."""
        return f"{IMAGE_REPO}/{TENANT_IMAGE_PREFIX}*:{self.image_tag}"

    # ---- host ports --------------------------------------------------------------------------
    @functools.cached_property
    def block(self) -> int:
        """This instance's port block, allocated on first use (ports.py)."""
        return ports.claim(self.name, self.root, self.is_default)

    @property
    def port_offset(self) -> int:
        return self.block * ports.STRIDE

    @property
    def redis_port(self) -> int:
        return ports.REDIS_BASE + self.port_offset

    @property
    def tools_port(self) -> int:
        return ports.TOOLS_BASE + self.port_offset

    @property
    def prometheus_port(self) -> int:
        return ports.PROMETHEUS_BASE + self.port_offset

    @property
    def alertmanager_port(self) -> int:
        return ports.ALERTMANAGER_BASE + self.port_offset

    @property
    def first_web_port(self) -> int:
        return ports.FIRST_WEB_BASE + self.port_offset

    @property
    def last_web_port(self) -> int:
        return ports.LAST_WEB_BASE + self.port_offset

    def web_port_from_example(self, example_port: int) -> int:
        """Examples carry block-0 ports; every instance shifts them into its own block."""
        return example_port + self.port_offset

    def compose_variables(self) -> dict[str, str]:
        """What compose/*.yaml interpolate: the only way instance facts reach Compose."""
        return {
            "TS_REDIS_IMAGE": self.image("redis"),
            "TS_APP_IMAGE": self.image("app"),
            "TS_APP_BUILD_IMAGE": self.image("app-build"),
            "TS_COMMANDER_IMAGE": self.image(naming.TOOLS_SERVICE),
            "TS_MONITORING_IMAGE": self.image(naming.MONITORING_PROFILE),
            "TS_SECRETS": str(self.secrets),
            "TS_REDIS_PORT": str(self.redis_port),
            "TS_TOOLS_PORT": str(self.tools_port),
            "TS_REDIS_UID": str(UIDS["redis"]),
            "TS_APP_UID": str(UIDS["app"]),
            "TS_COMMANDER_UID": str(UIDS["commander"]),
            "TS_MONITORING_UID": str(UIDS["monitoring"]),
            "TS_MONITORING_CONFIG": str(self.monitoring_config),
            "TS_TEXTFILE_METRICS": str(self.textfile_metrics),
            "TS_PROMETHEUS_PORT": str(self.prometheus_port),
            "TS_ALERTMANAGER_PORT": str(self.alertmanager_port),
            "TS_PROMETHEUS_CONTAINER_PORT": str(naming.PROMETHEUS_CONTAINER_PORT),
            "TS_ALERTMANAGER_CONTAINER_PORT": str(naming.ALERTMANAGER_CONTAINER_PORT),
            "TS_EXPORTER_CONTAINER_PORT": str(naming.EXPORTER_CONTAINER_PORT),
            "TS_RECEIVER_CONTAINER_PORT": str(naming.RECEIVER_CONTAINER_PORT),
            "TS_REDIS_CONTAINER_PORT": str(naming.REDIS_TLS_PORT),
            "TS_TOOLS_CONTAINER_PORT": str(naming.TOOLS_CONTAINER_PORT),
            "TS_POSTGRES_IMAGE": self.image(naming.POSTGRES_SERVICE),
            "TS_POSTGRES_UID": str(UIDS["postgres"]),
            "TS_POSTGRES_CONFIG": str(self.postgres_config),
            "TS_POSTGRES_PIDS_LIMIT": str(postgres.pids_limit()),
        }


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise DeploymentError(f"{INSTANCE_VAR}={name!r} is not a valid instance name: use {NAME_RULE}")
    return name


def current(environ=None) -> Instance:
    """The instance this process works on: TENANTSTACK_INSTANCE, else the default."""
    environ = os.environ if environ is None else environ
    name = check_name(environ.get(INSTANCE_VAR) or DEFAULT)
    project = environ.get("COMPOSE_PROJECT_NAME")
    if project and project != name:
        raise DeploymentError(f"COMPOSE_PROJECT_NAME={project} disagrees with instance '{name}' (the instance name is "
                              f"the Compose project): unset COMPOSE_PROJECT_NAME, or set {INSTANCE_VAR}={project}")
    return Instance(name)
