'use strict';
// tenantstack's settings for redis-commander, merged by node-config over the package's default.json.
//
// Nothing secret is in the image. Passwords come from /run/secrets/commander/settings.json, which
// `./invoke up` / `./invoke init` render from envs/redis.env (ops/secrets/commander.py); TLS material from the
// mounted CA, client certificate and key. Behaviour flags (--read-only, --use-scan, ...) are on the
// command line in compose/compose.yaml, where operators see them.
const crypto = require('crypto');
const fs = require('fs');

const SETTINGS_FILE = '/run/secrets/commander/settings.json';
const TLS_DIR = '/run/secrets/tls';

function readMounted(path) {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch (err) {
    console.error(`error: ${path} is unreadable (${err.code}): compose.yaml mounts it; ` +
                  'run `./invoke up --tools` to render it and recreate this container');
    process.exit(2);
  }
}

const settings = JSON.parse(readMounted(SETTINGS_FILE));
const redis = settings.redis;

module.exports = {
  server: {
    httpAuth: {
      username: settings.httpAuth.username,
      password: settings.httpAuth.password,
      // Session tokens are signed with a key derived from the login password: stable across restarts
      // (open sessions survive them), changed by a password rotation, and usable by healthcheck.js.
      jwtSecret: crypto.createHmac('sha256', settings.httpAuth.password)
        .update('redis-commander session tokens').digest('base64'),
    },
  },
  connections: [{
    label: 'tenantstack',
    host: redis.host,
    port: redis.port,
    dbIndex: redis.db,
    username: redis.username,
    password: redis.password,
    // Mutual TLS: verify the server against our private CA (and its name), present our own certificate.
    tls: {
      ca: readMounted(`${TLS_DIR}/ca.crt`),
      cert: readMounted(`${TLS_DIR}/client.crt`),
      key: readMounted(`${TLS_DIR}/client.key`),
      servername: redis.host,
    },
  }],
};
