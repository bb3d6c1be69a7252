// A real OpenID Provider (npm oidc-provider@9) for keycanary's integration tests.
//
//   node oidc-provider.mjs --issuer URL [--issuer URL ...] [--port N ...] [--keys jwks.json]
//                          [--client-id ID] [--client-secret SECRET] [--ttl SECONDS]
//   node oidc-provider.mjs genkey [--alg RS256|PS256|ES256|ES384|EdDSA] [--kid KID]
//
// Serve mode starts one Provider per --issuer, all sharing the same keys and client, each
// on its own 127.0.0.1 port (--port, in --issuer order; 0 or absent = any free port).
// That is how one identity provider is served on two domains (idp.example.app and
// idp.example.io) with an issuer per domain: nginx puts one domain in front of each port.
// When every Provider listens, the first stdout line is `LISTENING <port> [<port> ...]`.
// Discovery URLs (jwks_uri, token_endpoint) follow the request's Host header, so a
// proxy that forwards the client's Host gets URLs on its own origin.
//
// --keys is a JWKS file of *private* keys. All are published at /jwks; the first key of
// each alg signs, and the first key in the file decides the access-token alg. A
// rotation is a restart with the new key first and the old one still listed. Without
// --keys one RS256 key is generated.
//
// The client (default `keycanary` / `keycanary-secret`) may use client_credentials; with
// `resource=<any absolute URL>` the access token is a JWT (`typ: at+jwt`, aud = resource).
//
// genkey prints one private JWK (with kid and alg) on stdout, so tests need no crypto of
// their own to build key files.
//
// It exits when stdin closes, so it does not outlive a test process that dies without
// running its destructors. It does not do interactive login: no password grant, and
// refresh tokens only through the interactive flow (use mock-oauth2.mjs for those).

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

function die(message) {
  process.stderr.write(`oidc-provider.mjs: ${message}\n`);
  process.exit(2);
}

const GENKEY = {
  RS256: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  PS256: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  ES256: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  ES384: () => generateKeyPairSync('ec', { namedCurve: 'P-384' }),
  EdDSA: () => generateKeyPairSync('ed25519'),
};

function generateJwk(alg, kid) {
  const gen = GENKEY[alg];
  if (!gen) die(`unsupported alg ${alg}: use one of ${Object.keys(GENKEY).join(', ')}`);
  const { privateKey } = gen();
  return { ...privateKey.export({ format: 'jwk' }), kid: kid ?? `${alg.toLowerCase()}-${randomUUID()}`, alg, use: 'sig' };
}

function algOf(jwk) {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'EC') return { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }[jwk.crv];
  if (jwk.kty === 'OKP') return 'EdDSA';
  return die(`cannot tell the alg of key ${jwk.kid}: give it an "alg"`);
}

const argv = process.argv.slice(2);

if (argv[0] === 'genkey') {
  const { values } = parseArgs({
    args: argv.slice(1),
    options: { alg: { type: 'string', default: 'RS256' }, kid: { type: 'string' } },
  });
  process.stdout.write(`${JSON.stringify(generateJwk(values.alg, values.kid))}\n`);
  process.exit(0);
}

const { values } = parseArgs({
  args: argv,
  options: {
    issuer: { type: 'string', multiple: true },
    port: { type: 'string', multiple: true, default: [] },
    keys: { type: 'string' },
    'client-id': { type: 'string', default: 'keycanary' },
    'client-secret': { type: 'string', default: 'keycanary-secret' },
    ttl: { type: 'string', default: '3600' },
  },
});

// Loaded here, not at the top, so `genkey` runs without it (and its runtime warning).
const { default: Provider } = await import('oidc-provider');
const issuers = values.issuer ?? die('at least one --issuer URL is required');
const ports = issuers.map((_, i) => Number(values.port[i] ?? 0));
const keys = values.keys
  ? JSON.parse(readFileSync(values.keys, 'utf8')).keys
  : [generateJwk('RS256')];
if (!Array.isArray(keys) || keys.length === 0) die(`${values.keys}: no "keys" array`);
const signingAlg = algOf(keys[0]);
const ttl = Number(values.ttl);

function configuration() {
  return {
    clients: [
      {
        client_id: values['client-id'],
        client_secret: values['client-secret'],
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
      },
    ],
    jwks: { keys },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => ({
          scope: 'api',
          audience: resourceIndicator,
          accessTokenTTL: ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: signingAlg } },
        }),
      },
    },
    ttl: { ClientCredentials: ttl },
  };
}

const servers = [];
for (const [i, issuer] of issuers.entries()) {
  const provider = new Provider(issuer, configuration());
  provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));
  const server = provider.listen(ports[i], '127.0.0.1');
  await new Promise((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', (err) => reject(new Error(`listen on 127.0.0.1:${ports[i]} for ${issuer}: ${err.message}`)));
  }).catch((err) => die(err.message));
  servers.push(server);
}

process.stdout.write(`LISTENING ${servers.map((s) => s.address().port).join(' ')}\n`);

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
