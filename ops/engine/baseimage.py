"""Make sure `debian:trixie-slim` (Debian 13) exists: pull it, or build it from Debian's own packages.

With no registry reachable, the image is made the way the official one is: a minbase debootstrap
(here mmdebstrap) of trixie, with the slim image's path exclusions, imported under the same name.
No mirror is hard-coded: the Debian entries of this machine's own apt sources are reused with their
suites switched to trixie (a Debian 12 host lists `bookworm bookworm-updates` and `bookworm-security`;
the image gets `trixie trixie-updates` and `trixie-security` from the same mirrors, signed by the
trixie keys that Debian 12's debian-archive-keyring already ships). Entries that are not Debian's
(a vendor's repository) are left out of the image. On a machine with Docker Hub the pull succeeds and
nothing is built.
"""
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ops.core.errors import OpsError
from ops.core.run import probe, run

BASE_IMAGE = "debian:trixie-slim"
SUITE = "trixie"
# Debian's codenames a host's sources may name; any of them (and their -updates/-security/-backports
# pockets) is switched to SUITE. A suite that is none of these (a vendor's "nodistro") is not Debian's.
DEBIAN_CODENAMES = ("buster", "bullseye", "bookworm", "trixie", "forky", "sid", "stable", "testing")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# What the official -slim variant leaves out (debuerreotype's slimification), as dpkg path filters.
SLIM_DPKG_OPTS = [
    "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*", "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/lintian/*", "path-exclude=/usr/share/linda/*", "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
]


@dataclass(frozen=True)
class Source:
    """One apt source entry: a mirror, its suites and components (the image never gets deb-src)."""
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def apt_sources() -> list[Path]:
    """The machine's own apt sources (deb822 files first, then the one-line lists)."""
    found = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    found += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        found.append(legacy)
    return found


def parse(path: Path) -> list[Source]:
    """The binary (`deb`) entries of one sources file, deb822 (.sources) or one-line (.list)."""
    text = path.read_text()
    out = []
    if path.suffix == ".sources":
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                if line.lstrip().startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
            if "deb" not in fields.get("types", []) or fields.get("enabled", ["yes"]) == ["no"]:
                continue
            out += [Source(uri, tuple(fields.get("suites", [])), tuple(fields.get("components", [])))
                    for uri in fields.get("uris", [])]
        return out
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # drop [options]
        kind, *rest = words or [""]
        if kind == "deb" and rest[1:]:  # deb URI SUITE [COMPONENT...]
            out.append(Source(rest[0], (rest[1],), tuple(rest[2:])))
    return out


def switch_suite(suite: str, to: str = SUITE) -> str | None:
    """`bookworm-security` -> `trixie-security`; None for a suite that is not one of Debian's."""
    codename, sep, pocket = suite.partition("-")
    if codename not in DEBIAN_CODENAMES or pocket not in ("", "updates", "security", "backports"):
        return None
    return to + sep + pocket


def image_sources(sources: list[Source], to: str = SUITE) -> list[Source]:
    """The host's Debian entries with their suites switched to `to`; vendors' entries left out."""
    out, seen = [], set()
    for src in sources:
        suites = tuple(s for s in (switch_suite(x, to) for x in src.suites) if s)
        key = (src.uri, suites)
        if suites and key not in seen:
            seen.add(key)
            out.append(Source(src.uri, suites, src.components or ("main",)))
    return out


def render_deb822(sources: list[Source]) -> str:
    return "\n".join(f"Types: deb\nURIs: {s.uri}\nSuites: {' '.join(s.suites)}\nComponents: {' '.join(s.components)}\n"
                     f"Signed-By: {KEYRING}\n" for s in sources)


def exists(image: str = BASE_IMAGE) -> bool:
    return probe(["docker", "image", "inspect", image]).returncode == 0


def ensure(log=print) -> None:
    if exists():
        return
    log(f"base image: {BASE_IMAGE} is not here; trying to pull it")
    try:
        pulled = probe(["docker", "pull", BASE_IMAGE], timeout=300)
        if pulled.returncode == 0:
            log(f"base image: pulled {BASE_IMAGE}")
            return
        reason = (pulled.stderr.strip().splitlines() or ["no output"])[-1]
    except OpsError:  # the time-out
        reason = "timed out after 300s"
    log(f"base image: no registry answered ({reason[:160]}); building it from Debian's packages")
    build(log)


def build(log=print) -> None:
    if not shutil.which("mmdebstrap"):
        raise OpsError(f"{BASE_IMAGE} cannot be pulled and mmdebstrap is missing: run `apt-get install -y mmdebstrap` "
                       "(or `sudo ./invoke engine`), then retry")
    sources = image_sources([s for path in apt_sources() for s in parse(path)])
    if not sources:
        raise OpsError("no Debian entry in this machine's apt sources (/etc/apt/sources.list(.d)) to build "
                       f"{BASE_IMAGE} from: add Debian's mirror (`deb http://deb.debian.org/debian bookworm main`) "
                       "and retry")
    if not KEYRING.exists():
        raise OpsError(f"{KEYRING} is missing: run `apt-get install -y debian-archive-keyring`, then retry")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tenantstack-base-") as tmp:
        listing = Path(tmp) / f"{SUITE}.sources"
        listing.write_text(render_deb822(sources))
        tarball = Path(tmp) / "rootfs.tar"
        cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
               *(f"--dpkgopt={o}" for o in SLIM_DPKG_OPTS), SUITE, str(tarball), str(listing)]
        log(f"base image: {SUITE} from " + ", ".join(f"{s.uri} ({' '.join(s.suites)})" for s in sources))
        log("+ " + " ".join(cmd))
        run(cmd, what=f"mmdebstrap (building {BASE_IMAGE})")
        size_mib = tarball.stat().st_size // 2**20
        log(f"base image: rootfs built in {time.monotonic() - t0:.1f}s ({size_mib} MiB); importing")
        # Same metadata as the official image: bash as the default command.
        run(["docker", "import", "--change", 'CMD ["bash"]', str(tarball), BASE_IMAGE], what=f"importing {BASE_IMAGE}")
    log(f"base image: {BASE_IMAGE} ready in {time.monotonic() - t0:.1f}s")
