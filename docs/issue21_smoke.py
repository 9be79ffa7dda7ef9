"""Development aid, not part of the suite (run as root from the checkout: python docs/issue21_smoke.py after
building the image with `docker build --network host --build-arg POSTGRES_UID=10004 -t tenantstack/postgres:issue21
postgres/`). Smoke test of issue 21's server image and renderer against a real PostgreSQL 17: containers, networks
and volume named pgsmoke-*; removes nothing itself (docker rm -f pgsmoke; the volume and the three networks)."""
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, "/work/pg")
from deployment import envs, postgres
from ops.secrets import tls

IMG = "tenantstack/postgres:issue21"
T = Path(os.environ.get("PGSMOKE_DIR", "/tmp/pgsmoke"))
conf, certs = T / "conf", T / "certs"
conf.mkdir(parents=True, exist_ok=True)
certs.mkdir(exist_ok=True)

def sh(*a, check=True, inp=None):
    r = subprocess.run(a, check=False, capture_output=True, text=True, input=inp)
    if check and r.returncode:
        raise SystemExit(f"FAILED {a}: {r.stdout}{r.stderr}")
    return r

tls.make_ca(certs / "ca.crt", certs / "ca.key")
tls.make_leaf(certs / "ca.crt", certs / "ca.key", certs / "postgres.crt", certs / "postgres.key", "postgres",
              server=True)
os.chown(certs / "postgres.key", 10004, 10004)
os.chmod(certs / "postgres.key", 0o400)

def tenant(name, **extra):
    return {**envs.tenant_values(name, 8002, secret=lambda k: f"pw{name}{k}".replace("_", "")), **extra}

settings = {"a": tenant("a"), "b": tenant("b", DATABASE="postgres"),
            "c": tenant("c", DATABASE="postgres", DATABASE_CONNECTION_LIMIT="40", DATABASE_STATEMENT_TIMEOUT="1")}
redis_env = envs.redis_values(secret=lambda k: f"pw{k}".replace("_", ""))

def render(settings):
    dbs = postgres.tenant_databases(settings)
    (conf / "pg_hba.conf").write_text(postgres.pg_hba(dbs))
    (conf / "tenantstack.conf").write_text(postgres.server_conf())
    pw = postgres.operator_passwords(redis_env) | {d.role: d.password for d in dbs}
    return postgres.provisioning_sql(dbs, {r: postgres.scram_verifier(p) for r, p in pw.items()}), pw

sql, pw = render(settings)
for n in ("b", "c", "ops"):
    sh("docker", "network", "create", f"pgsmoke-{n}", check=False)
sh("docker", "rm", "-f", "pgsmoke", check=False)
sh("docker", "volume", "rm", "pgsmoke-data", check=False)
sh("docker", "run", "-d", "--name", "pgsmoke", "--user", "10004", "--read-only", "--cap-drop", "ALL",
   "--security-opt", "no-new-privileges:true", "--tmpfs", "/tmp:size=64m,mode=1777", "--pids-limit", "264",
   "--memory", "1024m", "--memory-swap", "1024m", "--cpus", "1.0", "--shm-size", "128m", "--init",
   "-v", "pgsmoke-data:/var/lib/postgresql/data", "-v", f"{conf}:/etc/tenantstack/rendered:ro",
   # the committed files over the image's (built once, before a path changed): what the next build will hold
   "-v", "/work/pg/postgres/postgresql.conf:/etc/tenantstack/postgresql.conf:ro",
   "-v", "/work/pg/postgres/entrypoint.sh:/usr/local/bin/postgres-entrypoint:ro",
   "-v", "/work/pg/postgres/healthcheck.sh:/usr/local/bin/postgres-healthcheck:ro",
   "-v", f"{certs}/ca.crt:/run/secrets/tls/ca.crt:ro", "-v", f"{certs}/postgres.crt:/run/secrets/tls/server.crt:ro",
   "-v", f"{certs}/postgres.key:/run/secrets/tls/server.key:ro",
   "--network", "pgsmoke-b", "--network-alias", "postgres", IMG)
sh("docker", "network", "connect", "--alias", "postgres", "pgsmoke-c", "pgsmoke")
sh("docker", "network", "connect", "--alias", "postgres", "pgsmoke-ops", "pgsmoke")
for _ in range(60):
    if sh("docker", "exec", "pgsmoke", "postgres-healthcheck", check=False).returncode == 0:
        break
    time.sleep(1)
else:
    print(sh("docker", "logs", "pgsmoke", check=False).stderr)
    raise SystemExit("never healthy")
print("healthy; logs:", sh("docker", "logs", "pgsmoke").stdout.strip())

def provision(sql):
    return sh("docker", "exec", "-i", "pgsmoke", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "/tmp",
              "-U", "postgres", "-d", "postgres", inp=sql)
r = provision(sql)
print("provisioned:", r.stdout.strip(), r.stderr.strip())
r = provision(sql)
print("again (idempotent):", r.stdout.strip(), r.stderr.strip())

def client(network, user, db, password, query="SELECT current_user", sslmode="verify-full"):
    return sh("docker", "run", "--rm", "--network", f"pgsmoke-{network}", "-e", f"PGPASSWORD={password}",
              "-v", f"{certs}/ca.crt:/ca.crt:ro", "--entrypoint", "psql", IMG, "-X", "-A", "-t", "-c", query,
              f"host=postgres port=5432 dbname={db} user={user} sslmode={sslmode} sslrootcert=/ca.crt "
              "connect_timeout=5", check=False)

results = {}
def expect(label, r, ok, contains=""):
    out = (r.stdout + r.stderr).strip()
    # this engine's `docker run --rm` returns 0 even when psql fails: judge by psql's own FATAL/ERROR lines
    refused = "FATAL:" in out or "ERROR:" in out
    good = refused != ok and contains in out
    results[label] = good
    print(("PASS " if good else "FAIL ") + label + ": " + out.replace("\n", " | ")[:300])

expect("b reaches its database over TLS, verify-full", client("b", "tenant_b", "tenant_b", pw["tenant_b"],
       "SELECT current_user, current_setting('statement_timeout'), ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
       True, "tenant_b|30s|t")
expect("plain TCP refused", client("b", "tenant_b", "tenant_b", pw["tenant_b"], sslmode="disable"), False,
       "no encryption")
expect("wrong password refused", client("b", "tenant_b", "tenant_b", "wrong"), False, "password authentication failed")
expect("b cannot reach c's database", client("c", "tenant_b", "tenant_c", pw["tenant_b"]), False,
       "no pg_hba.conf entry")
expect("b cannot reach postgres db", client("b", "tenant_b", "postgres", pw["tenant_b"]), False, "no pg_hba.conf entry")
expect("b is no superuser/createdb", client("b", "tenant_b", "tenant_b", pw["tenant_b"],
       "SELECT rolsuper, rolcreatedb, rolcreaterole, rolconnlimit FROM pg_roles WHERE rolname = current_user"),
       True, "f|f|f|20")
expect("c statement_timeout 1s", client("c", "tenant_c", "tenant_c", pw["tenant_c"], "SELECT pg_sleep(2)"), False,
       "statement timeout")
expect("b owns and writes its database", client("b", "tenant_b", "tenant_b", pw["tenant_b"],
       "CREATE TABLE t (x int); INSERT INTO t VALUES (42); "
       "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"),
       True, "tenant_b")
expect("ops reads b's table (member of its role)", client("ops", "tenantstack_ops", "tenant_b",
       pw["tenantstack_ops"], "SELECT x FROM t"), True, "42")
expect("monitor sees sizes, no rows", client("ops", "tenantstack_monitor", "postgres", pw["tenantstack_monitor"],
       "SELECT pg_database_size('tenant_b') > 0"), True, "t")
expect("monitor cannot reach b's database", client("ops", "tenantstack_monitor", "tenant_b", pw["tenantstack_monitor"]),
       False, "no pg_hba.conf entry")
expect("b lists databases (known gap: pg_database is PUBLIC)", client("b", "tenant_b", "tenant_b", pw["tenant_b"],
       "SELECT string_agg(datname, ',') FROM pg_database"), True, "tenant_c")
expect("superuser not over TCP", client("b", "postgres", "postgres", "x"), False, "no pg_hba.conf entry")
# stored verifier matches the password (scram_matches against what the server stores)
stored = sh("docker", "exec", "pgsmoke", "psql", "-X", "-A", "-t", "-h", "/tmp", "-U", "postgres", "-d", "postgres",
            "-c",
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'tenant_b'").stdout.strip()
results["scram_matches on stored"] = postgres.scram_matches(pw["tenant_b"], stored)
print("scram_matches on the stored verifier:", results["scram_matches on stored"])
# retire c: back on SQLite
sql2, _ = render({**settings, "c": tenant("c")})
provision(sql2)
sh("docker", "exec", "pgsmoke", "psql", "-X", "-h", "/tmp", "-U", "postgres", "-d", "postgres", "-c",
   "SELECT pg_reload_conf()")
expect("c retired: no login", client("c", "tenant_c", "tenant_c", pw["tenant_c"]), False, "")
canlogin = sh("docker", "exec", "pgsmoke", "psql", "-X", "-A", "-t", "-h", "/tmp", "-U", "postgres", "-d", "postgres",
              "-c", "SELECT rolname || ':' || rolcanlogin FROM pg_roles WHERE rolname LIKE 'tenant%' ORDER BY 1").stdout
print("after retiring c:", canlogin.split())
results["c NOLOGIN, b still LOGIN"] = canlogin.split() == ["tenant_b:true", "tenant_c:false",
                                                           "tenantstack_monitor:true", "tenantstack_ops:true"]
print("ALL PASS" if all(results.values()) else f"FAILED: {[k for k, v in results.items() if not v]}")
