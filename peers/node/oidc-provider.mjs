// A real OpenID Provider (npm oidc-provider@9) for keycanary's integration tests and the
// rotation rehearsal stage (scripts/rehearse).
//
//   node oidc-provider.mjs --issuer URL [--issuer URL ...] [--port N ...] [--keys jwks.json]
//                          [--client-id ID] [--client-secret SECRET] [--ttl SECONDS]
//                          [--jwt-client-jwks public-jwks.json]
//   node oidc-provider.mjs genkey [--alg RS256|PS256|ES256|ES384|EdDSA] [--kid KID] [--pem]
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
// each alg signs, and the first key in the file decides the access-token alg. Without
// --keys one RS256 key is generated.
//
// Key changes, the way a rolling restart of an IdP does them (no request is refused):
// rewrite the --keys file, then send SIGHUP or `POST /__stage/reload` to any port. The
// Providers are rebuilt from the file and take over the listening sockets. Publishing a
// key that does not sign yet (staging) = adding it after the signer; a rotation = the new
// key first, the old one still listed; a retirement = dropping the old key.
//
// Fault injection: `POST /__stage/fail?url=/jwks&status=503&count=1` to one port makes
// that port's next `count` requests for exactly `url` (query included, so cache-busting
// fetches do not match) answer `status`. Every /__stage/ answer is JSON.
//
// The client (default `keycanary` / `keycanary-secret`) may use client_credentials; with
// `resource=<any absolute URL>` the access token is a JWT (`typ: at+jwt`, aud = resource).
// With --jwt-client-jwks (a JWKS file of public keys), a second client `keycanary-jwt`
// authenticates with private_key_jwt (RFC 7523) signed by one of those keys, for the same
// grants.
//
// It may also use authorization_code (PKCE S256) with --redirect-uri (default
// http://127.0.0.1:9/callback, a loopback URL nobody serves): the sign-in goes through
// oidc-provider's own development interaction pages, a login form (any login and any
// password are accepted) and then a consent form.
//
// genkey prints one private JWK (with kid and alg) on stdout, so tests need no crypto of
// their own to build key files.
//
// It exits when stdin closes, so it does not outlive a test process that dies without
// running its destructors (run it with `</dev/null` replaced by a held pipe, or with
// --no-stdin when started in the background by a script). It does not do interactive
// login over the token endpoint: no password grant, and refresh tokens only through the
// interactive flow (use mock-oauth2.mjs for those).

import { createPrivateKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
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
    options: { alg: { type: 'string', default: 'RS256' }, kid: { type: 'string' }, pem: { type: 'boolean', default: false } },
  });
  const jwk = generateJwk(values.alg, values.kid);
  // --pem: the same private key as PKCS#8 PEM too, in a `pem` member (for a client key).
  if (values.pem) {
    jwk.pem = createPrivateKey({ key: jwk, format: 'jwk' }).export({ type: 'pkcs8', format: 'pem' });
  }
  process.stdout.write(`${JSON.stringify(jwk)}\n`);
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
    'redirect-uri': { type: 'string', default: 'http://127.0.0.1:9/callback' },
    'jwt-client-jwks': { type: 'string' },
    'no-stdin': { type: 'boolean', default: false },
  },
});

// Loaded here, not at the top, so `genkey` runs without it (and its runtime warning).
const { default: Provider } = await import('oidc-provider');
const issuers = values.issuer ?? die('at least one --issuer URL is required');
const ports = issuers.map((_, i) => Number(values.port[i] ?? 0));
// Without --keys, one key generated at start (and kept across reloads).
const generated = values.keys ? null : [generateJwk('RS256')];
function loadKeys() {
  if (!values.keys) return generated;
  const loaded = JSON.parse(readFileSync(values.keys, 'utf8')).keys;
  if (!Array.isArray(loaded) || loaded.length === 0) throw new Error(`${values.keys}: no "keys" array`);
  return loaded;
}
const ttl = Number(values.ttl);

function configuration(keys) {
  const signingAlg = algOf(keys[0]);
  return {
    clients: [
      {
        client_id: values['client-id'],
        client_secret: values['client-secret'],
        grant_types: ['client_credentials', 'authorization_code'],
        redirect_uris: [values['redirect-uri']],
        response_types: ['code'],
        // Its default, RS256, is refused when the key set has no RSA key.
        id_token_signed_response_alg: signingAlg,
      },
      ...(values['jwt-client-jwks'] ? [{
        client_id: 'keycanary-jwt',
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: JSON.parse(readFileSync(values['jwt-client-jwks'], 'utf8')),
        grant_types: ['client_credentials', 'authorization_code'],
        redirect_uris: [values['redirect-uri']],
        response_types: ['code'],
        id_token_signed_response_alg: signingAlg,
      }] : []),
    ],
    jwks: { keys },
    // Any login is an account whose sub is the login (oidc-provider's default does the
    // same, but says so on stdout, which the tests stop reading after LISTENING).
    findAccount: (_ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
    features: {
      // The sign-in pages of the authorization-code flow: a login form, then consent.
      devInteractions: { enabled: true },
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

// One request handler per issuer, swapped as a whole on reload.
let handlers = [];
function build() {
  const keys = loadKeys();
  handlers = issuers.map((issuer) => {
    const provider = new Provider(issuer, configuration(keys));
    provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));
    return provider.callback();
  });
  return keys.map((k) => k.kid);
}
let kids;
try {
  kids = build();
} catch (err) {
  die(err.message);
}

// Per port: [{ url, status, count }] of pending injected failures.
const failures = issuers.map(() => []);

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body)}\n`);
}

function reload() {
  kids = build();
  process.stderr.write(`reloaded keys: ${kids.join(', ')}\n`);
  return kids;
}

function control(i, req, res) {
  const url = new URL(req.url, 'http://stage');
  if (req.method !== 'POST') return json(res, 405, { error: 'POST only' });
  if (url.pathname === '/__stage/reload') {
    try {
      return json(res, 200, { kids: reload() });
    } catch (err) {
      return json(res, 500, { error: err.message });
    }
  }
  if (url.pathname === '/__stage/fail') {
    const failure = {
      url: url.searchParams.get('url') ?? '/jwks',
      status: Number(url.searchParams.get('status') ?? 503),
      count: Number(url.searchParams.get('count') ?? 1),
    };
    failures[i].push(failure);
    return json(res, 200, failure);
  }
  return json(res, 404, { error: `unknown control ${url.pathname}` });
}

function handle(i, req, res) {
  if (req.url.startsWith('/__stage/')) return control(i, req, res);
  const failure = failures[i].find((f) => f.url === req.url && f.count > 0);
  if (failure) {
    failure.count -= 1;
    res.writeHead(failure.status, { 'content-type': 'text/plain' });
    return res.end(`injected failure ${failure.status}\n`);
  }
  return handlers[i](req, res);
}

const servers = [];
for (const [i, issuer] of issuers.entries()) {
  const server = createServer((req, res) => handle(i, req, res));
  server.listen(ports[i], '127.0.0.1');
  await new Promise((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', (err) => reject(new Error(`listen on 127.0.0.1:${ports[i]} for ${issuer}: ${err.message}`)));
  }).catch((err) => die(err.message));
  servers.push(server);
}

// Whoever started it may stop reading stdout after LISTENING: a later write must not
// kill the process.
process.stdout.on('error', () => {});
process.stdout.write(`LISTENING ${servers.map((s) => s.address().port).join(' ')}\n`);

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.on('SIGHUP', () => {
  try {
    reload();
  } catch (err) {
    process.stderr.write(`reload failed, keeping the old keys: ${err.message}\n`);
  }
});
if (!values['no-stdin']) {
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}
