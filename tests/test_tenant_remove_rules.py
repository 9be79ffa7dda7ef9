"""What tenant-remove relies on without containers: `backup --keep` never prunes an archive, and a removed tenant
that a committed example declares stays removed until `tenant-add` brings it back."""
from ops.config import tenants
from ops.data import backup_format as fmt
from ops.data import retention


def test_backup_keep_prunes_whole_backups_only_never_archives_or_tenant_backups(tmp_path, monkeypatch):
    monkeypatch.setattr(fmt, "BACKUPS", tmp_path)
    monkeypatch.setattr(retention, "BACKUPS", tmp_path)
    monkeypatch.setattr(retention, "ARCHIVES", tmp_path / fmt.ARCHIVES)
    kept = [tmp_path / "archives" / "c-20260101T000000Z", tmp_path / "tenant-b" / "20260101T000000Z"]
    whole = [tmp_path / f"2026010{i}T000000Z" for i in range(1, 4)]
    for folder in (*kept, *whole):
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
    retention.prune_whole(1, log=lambda m: None)  # what `backup --keep 1` runs
    assert [p for p in (*kept, *whole) if p.exists()] == [*kept, whole[-1]]


def test_a_removed_example_tenant_is_no_longer_known_until_added_again(tmp_path, monkeypatch):
    monkeypatch.setattr(tenants, "REMOVED", tmp_path / "removed-tenants.json")
    monkeypatch.setattr(tenants, "STATE", tmp_path)
    monkeypatch.setattr(tenants, "ENVS", tmp_path / "envs")  # no env file: only the committed examples declare
    assert "b" in tenants.known_names() and tenants.example_path("b").exists()
    tenants.mark_removed("b")
    assert "b" not in tenants.known_names() and "a" in tenants.known_names()
    (tmp_path / "envs").mkdir()
    tenants.env_path("b").write_text("TENANT=b\n")  # tenant-add writes its env file: declared by it again
    assert "b" in tenants.known_names()
    tenants.mark_removed("b", removed=False)
    assert "b" in tenants.known_names() and tenants.removed_names() == set()
