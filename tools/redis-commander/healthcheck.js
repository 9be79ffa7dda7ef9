'use strict';
// Container healthcheck: healthy only when the UI answers an authenticated API call AND its Redis
// connection is ready. It signs its own short-lived session token with the app's session key (see
// config/production.js) instead of logging in, so no secret is on a command line and no "Login
// success" line is logged per check. Token claims are redis-commander 0.9's (lib/app.js, pinned).
const http = require('http');
const config = require('config');
const jwt = require('jsonwebtoken');

function fail(reason) {
  console.log(`unhealthy: ${reason}`);
  process.exit(1);
}

const token = jwt.sign({}, config.get('server.httpAuth.jwtSecret'), {
  issuer: 'Redis Commander', subject: 'Session Token', expiresIn: 60, algorithm: 'HS256',
});
const request = http.get({
  host: '127.0.0.1',
  port: config.get('server.port'),
  path: `${config.get('server.urlPrefix')}/apiv2/server/info`,
  headers: {Authorization: `Bearer ${token}`},
  timeout: 4000,
}, (res) => {
  let body = '';
  res.on('data', (chunk) => { body += chunk; });
  res.on('end', () => {
    if (res.statusCode !== 200) fail(`HTTP ${res.statusCode}`);
    let servers;
    try {
      servers = JSON.parse(body).data;
    } catch (err) {
      fail(`unexpected answer: ${body.slice(0, 200)}`);
    }
    const down = (servers || []).filter((s) => s.disabled || !s.info);
    if (!servers || servers.length === 0) fail('no Redis connection configured');
    if (down.length) fail(`Redis connection not ready: ${down.map((s) => s.error || s.label).join(', ')}`);
    process.exit(0);
  });
});
request.on('timeout', () => request.destroy(new Error('timed out')));
request.on('error', (err) => fail(err.message));
