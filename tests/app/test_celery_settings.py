"""The tenant's Celery settings: its own queue, prefix and user, late acks, limits from the environment."""
import ssl

from tenantstack.celery_config import celery_settings
from tests.app.tenant_apps import tenant_config


def test_everything_is_named_after_the_tenant(local_redis, tmp_path):
    settings = celery_settings(tenant_config(local_redis, "b", tmp_path))
    assert settings["broker_url"].startswith("rediss://tenant-b:")
    assert settings["broker_url"].endswith(f"@127.0.0.1:{local_redis.port}/0")
    assert (settings["task_default_queue"], settings["task_default_exchange"], settings["task_default_routing_key"]) \
        == ("tenant-b", "tenant-b", "tenant-b")
    assert [q.name for q in settings["task_queues"]] == ["tenant-b"]
    options = settings["broker_transport_options"]
    assert options["global_keyprefix"] == "tenant-b:"
    assert options["fanout_prefix"] is True and options["fanout_patterns"] is True


def test_delivery_guarantees_and_limits(local_redis, tmp_path):
    config = tenant_config(local_redis, "a", tmp_path, CELERY_TASK_TIME_LIMIT="120", CELERY_VISIBILITY_TIMEOUT="900",
                           CELERY_WORKER_CONCURRENCY="3")
    settings = celery_settings(config)
    assert settings["task_acks_late"] is True and settings["task_reject_on_worker_lost"] is True
    assert settings["task_time_limit"] == 120 and 0 < settings["task_soft_time_limit"] < 120
    assert settings["broker_transport_options"]["visibility_timeout"] == 900
    assert settings["worker_concurrency"] == 3 and settings["worker_prefetch_multiplier"] == 1
    assert settings["broker_connection_retry_on_startup"] is True
    assert settings["worker_cancel_long_running_tasks_on_connection_loss"] is False  # see celery_config
    assert settings["broker_transport_options"]["unacked_restore_interval"] == 30
    assert settings["broker_transport_options"]["unacked_restore_throttle"] == 1
    assert settings["worker_send_task_events"] is False
    assert settings["result_backend"] == "django-db" and settings["result_extended"] is True
    assert settings["task_track_started"] is True and settings["result_expires"].days >= 1
    assert settings["beat_schedule_filename"] == str(tmp_path / "celerybeat-schedule")


def test_tls_verifies_chain_client_certificate_and_hostname(local_redis, tmp_path):
    config = tenant_config(local_redis, "a", tmp_path)
    tls = celery_settings(config)["broker_use_ssl"]
    assert tls["ssl_cert_reqs"] == ssl.CERT_REQUIRED and tls["ssl_check_hostname"] is True
    assert (tls["ssl_ca_certs"], tls["ssl_certfile"], tls["ssl_keyfile"]) == \
        (str(config.tls_ca_file), str(config.tls_cert_file), str(config.tls_key_file))
