// A permissive OAuth 2 server (npm oauth2-mock-server@8.2.3) for keycanary's tests of the
// grants oidc-provider does not do non-interactively: password and refresh_token (and
// client_credentials) all return JWT access tokens, for any client credentials.
//
//   node mock-oauth2.mjs [--port N] [--issuer URL] [--keys jwks.json] [--alg RS256]
//
// Prints `LISTENING <port>` as the first stdout line once it accepts connections.
// Endpoints: /.well-known/openid-configuration, /token, /jwks. Without --issuer the
// issuer is http://127.0.0.1:<port> (not the library's localhost, which may be ::1).
// --keys is a JWKS file of private keys; without it one key of --alg is generated. With
// several keys the signer rotates round-robin per token (the library's behaviour),
// unlike oidc-provider.
//
// It exits when stdin closes, so it does not outlive the test process.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { OAuth2Server } from 'oauth2-mock-server';

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    port: { type: 'string', default: '0' },
    issuer: { type: 'string' },
    keys: { type: 'string' },
    alg: { type: 'string', default: 'RS256' },
  },
});

const server = new OAuth2Server();
if (values.keys) {
  for (const jwk of JSON.parse(readFileSync(values.keys, 'utf8')).keys) {
    await server.issuer.keys.add(jwk);
  }
} else {
  await server.issuer.keys.generate(values.alg);
}
if (values.issuer) server.issuer.url = values.issuer;

try {
  await server.start(Number(values.port), '127.0.0.1');
} catch (err) {
  process.stderr.write(`mock-oauth2.mjs: listen on 127.0.0.1:${values.port}: ${err.message}\n`);
  process.exit(2);
}
const { port } = server.address();
// The library's default issuer is http://localhost:PORT, which may resolve to ::1.
if (!values.issuer) server.issuer.url = `http://127.0.0.1:${port}`;
process.stdout.write(`LISTENING ${port}\n`);

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
