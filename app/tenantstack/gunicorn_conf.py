"""gunicorn settings of every tenant web container (`gunicorn -c python:tenantstack.gunicorn_conf`).

The configuration is validated here, in the master, before any worker forks: a bad environment
stops the web container with one `config error: ...` line. The master then forgets what it read, so every worker
reads the secret files itself when it loads the application: after `./invoke rotate` replaced them, new workers
(ops' rolling reload: TTIN, then TTOU for each old one, ops/deploy/containers.py) start with the new secrets on the
same listening socket.
"""
import os
from pathlib import Path

from deployment import naming
from tenantstack import env

env.load_or_exit()
env.load.cache_clear()  # forked workers inherit the master's memory: without this they would keep its secrets

wsgi_app = "tenantstack.wsgi:application"
bind = [f"0.0.0.0:{naming.WEB_CONTAINER_PORT}"]
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = 4
timeout = 30
graceful_timeout = 25  # below Compose's default 30 s stop grace period
keepalive = 5
max_requests = 2000  # recycle workers now and then; jitter keeps them from restarting together
max_requests_jitter = 200
worker_tmp_dir = "/tmp"  # tmpfs in the container: the root filesystem is read-only
control_socket_disable = True  # gunicorn >= 25.1 would create $HOME/.gunicorn/gunicorn.ctl

# Access log to stdout: path only (%(U)s), never the query string, so no token in a URL is logged.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'


def post_worker_init(worker):
    """This worker loaded the application and serves from now on: say so where ops' rolling reload looks."""
    ready = Path(naming.WEB_READY_DIR)
    ready.mkdir(mode=0o700, exist_ok=True)
    (ready / str(worker.pid)).touch()
