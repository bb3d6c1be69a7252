//! Shared by the integration binaries `it` and `rehearsal` (included with `#[path]`).
//!
//! Real test peers as child processes: oidc-provider (the IdP), oauth2-mock-server (the
//! grants oidc-provider does not do non-interactively) and nginx (the CDN), each on
//! ephemeral 127.0.0.1 ports and in its own temp dir, killed on drop. A failing test
//! prints each peer's logs.
//!
//! `start_stage` puts it together: one provider served on two domains through nginx,
//! by default `idp.example.io` cached for 10 minutes and `idp.example.app` not (each domain
//! configurable, see peers/nginx/cdn.conf.template),
//! and says what a probes.toml needs (issuer, token URL, JWKS URL per domain, client).
//!
//! It does not install anything: a missing peer fails the test with a message to run
//! `scripts/install-peers.sh`, never a skip.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

const INSTALL_HINT: &str = "run scripts/install-peers.sh to install the test peers";
/// Generous: two cores running the whole suite in parallel start Node slowly.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/node")
}

/// A port on 127.0.0.1 that nothing listens on, for a peer that must know its port before it
/// starts (nginx's ports are part of the issuers) or for "nothing listens there" tests.
///
/// Ports come from below the kernel's ephemeral range (32768–60999 on Linux), so no `bind(0)`
/// and no outgoing connection of a concurrent test can be handed the same port between this
/// check and the peer's bind (the race of "bind port 0, read it, close it"). Within a process
/// an atomic counter never returns a port twice; processes start at different offsets (from
/// their pid) and every candidate is checked by binding it. Prefer letting a peer bind port 0
/// itself where it can report the port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000; // up to 31,999: below the ephemeral range
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(FIRST + (start + n) % SPAN).expect("below 32,000");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{FIRST}..{}", FIRST + SPAN);
}

/// Polls `ready` every 50 ms until it holds, panicking after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !ready().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not ready after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Finds `name` on PATH or in the sbin dirs (Debian puts nginx in /usr/sbin).
fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found on PATH or in /usr/sbin: {INSTALL_HINT}"))
}

fn node_script(script: &str) -> Command {
    for module in ["oidc-provider", "oauth2-mock-server"] {
        let dir = node_dir().join("node_modules").join(module);
        assert!(dir.is_dir(), "{} is missing: {INSTALL_HINT}", dir.display());
    }
    let mut cmd = Command::new(program("node"));
    cmd.arg(node_dir().join(script));
    cmd
}

/// A child process, killed on drop, with its log files, printed when the test fails.
/// Its stdin is a pipe held open: the Node and Python peers exit when it closes, so they
/// do not outlive a test process that dies without running destructors.
pub struct Proc {
    name: String,
    pub child: Child,
    _stdin: Option<ChildStdin>,
    /// The first is the process's stderr (`<log dir>/<name>.log`).
    logs: Vec<PathBuf>,
}

impl Proc {
    /// Spawns `cmd` with its stderr appended to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, cmd: Command, log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let mut proc = Proc {
            name: name.to_owned(),
            child: spawn_logged(name, &log, cmd),
            _stdin: None,
            logs: vec![log],
        };
        proc._stdin = proc.child.stdin.take();
        proc
    }

    /// Also prints these files when the test fails.
    pub fn with_logs(mut self, extra: impl IntoIterator<Item = PathBuf>) -> Proc {
        self.logs.extend(extra);
        self
    }

    /// The process's stderr log.
    pub fn log(&self) -> &Path {
        &self.logs[0]
    }

    /// Every log file of this process, each under a header line.
    pub fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
                format!("--- {} ({}) ---\n{text}", self.name, path.display())
            })
            .collect()
    }

    /// Reads the `LISTENING <port>...` line a peer prints once it accepts connections.
    pub async fn listening_ports(&mut self) -> Vec<u16> {
        let stdout = self.child.stdout.take().expect("stdout is piped");
        let line = tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).lines().next_line())
            .await
            .map_err(|_| format!("no LISTENING line after {START_TIMEOUT:?}"))
            .and_then(|read| read.map_err(|e| e.to_string()))
            .and_then(|line| line.ok_or_else(|| "exited before listening".to_owned()));
        let ports = line.and_then(|line| {
            line.strip_prefix("LISTENING ")
                .and_then(|ports| ports.split(' ').map(|p| p.parse().ok()).collect())
                .ok_or(format!("unexpected first line {line:?}"))
        });
        ports.unwrap_or_else(|e| panic!("{} did not start: {e}\n{}", self.name, self.logs()))
    }

    /// The single port of [`Self::listening_ports`].
    pub async fn listening_port(&mut self) -> u16 {
        self.listening_ports().await[0]
    }

    /// SIGKILL, and wait until it is gone, so its ports are free again.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill");
    }

    /// Kills the process and starts `cmd` in its place, logging to the same files.
    async fn respawn(&mut self, cmd: Command) {
        self.kill().await;
        self.child = spawn_logged(&self.name, &self.logs[0], cmd);
        self._stdin = self.child.stdin.take();
    }
}

fn spawn_logged(name: &str, stderr: &Path, mut cmd: Command) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr)
        .expect("create process log");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}: {INSTALL_HINT}"))
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("=== logs of {} ===\n{}", self.name, self.logs());
        }
        let _ = self.child.start_kill();
    }
}

/// Sends `signal` ("HUP", "TERM", …) to a running child with `kill`.
pub fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// One running peer: its process and the temp dir holding its files and logs.
pub struct Peer {
    proc: Proc,
    dir: TempDir,
}

impl Peer {
    fn spawn(name: &str, dir: TempDir, extra_logs: &[&str], cmd: Command) -> Peer {
        let extra = extra_logs.iter().map(|l| dir.path().join(l));
        let proc = Proc::spawn(name, cmd, dir.path()).with_logs(extra);
        Peer { proc, dir }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A client key: its private key as PKCS#8 PEM and its public JWK (`kid`, `alg`), made
/// with Node's crypto.
pub async fn generate_client_key(alg: &str, kid: &str) -> (String, Value) {
    let out = node_script("oidc-provider.mjs")
        .args(["genkey", "--pem", "--alg", alg, "--kid", kid])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run node: {e}: {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "genkey {alg} --pem failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut jwk: Value = serde_json::from_slice(&out.stdout).expect("genkey prints a JWK");
    let pem = jwk["pem"].as_str().expect("a pem member").to_owned();
    let o = jwk.as_object_mut().unwrap();
    for private in ["pem", "d", "p", "q", "dp", "dq", "qi"] {
        o.remove(private);
    }
    (pem, jwk)
}

/// Makes a private JWK (`kid`, `alg`, `use: sig`) with Node's crypto.
pub async fn generate_key(alg: &str, kid: &str) -> Value {
    let out = node_script("oidc-provider.mjs")
        .args(["genkey", "--alg", alg, "--kid", kid])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run node: {e}: {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "genkey {alg} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("genkey prints a JWK")
}

pub struct OidcProviderOpts {
    /// One Provider per issuer, all sharing keys and client. Empty: one issuer, the
    /// provider's own origin.
    pub issuers: Vec<String>,
    /// Private JWKs, the signer first. Empty: one generated RS256 key, kid `key-1`.
    pub keys: Vec<Value>,
    pub client_id: String,
    pub client_secret: String,
    /// Access token lifetime (`--ttl`); `None`: the script's default, one hour.
    pub token_ttl: Option<Duration>,
    /// Public JWKs of client `keycanary-jwt`, which authenticates with private_key_jwt;
    /// empty: no such client.
    pub jwt_client_keys: Vec<Value>,
}

impl Default for OidcProviderOpts {
    fn default() -> Self {
        OidcProviderOpts {
            issuers: Vec::new(),
            keys: Vec::new(),
            client_id: "keycanary".to_owned(),
            client_secret: "keycanary-secret".to_owned(),
            token_ttl: None,
            jwt_client_keys: Vec::new(),
        }
    }
}

/// npm oidc-provider (peers/node/oidc-provider.mjs): client_credentials with
/// `resource=<url>` returns a JWT access token (`typ: at+jwt`).
pub struct OidcProvider {
    peer: Peer,
    /// In `OidcProviderOpts::issuers` order, as are `ports`.
    pub issuers: Vec<String>,
    /// The origin port of each Provider (not a CDN's).
    pub ports: Vec<u16>,
    pub client_id: String,
    pub client_secret: String,
    keys: Vec<Value>,
    token_ttl: Option<Duration>,
    jwt_client_keys: Vec<Value>,
}

impl OidcProvider {
    /// The first Provider's origin port.
    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    /// The first Provider's origin, bypassing any CDN.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// What it wrote to stdout and stderr so far (for a failing test's message).
    pub fn logs(&self) -> String {
        self.peer.proc.logs()
    }

    /// The private keys it runs with, the signer first.
    pub fn keys(&self) -> &[Value] {
        &self.keys
    }

    /// Restarts on the same ports with `keys` (the signer first).
    pub async fn restart_with_keys(&mut self, keys: Vec<Value>) {
        self.keys = keys;
        let cmd = self.command();
        self.peer.proc.respawn(cmd).await;
        let ports = self.peer.proc.listening_ports().await;
        assert_eq!(ports, self.ports, "oidc-provider came back on other ports");
    }

    /// Changes the key set without a restart, as a rolling restart does (no request is
    /// refused): rewrites the key file and has the process rebuild its Providers.
    pub async fn set_keys(&mut self, keys: Vec<Value>) {
        self.keys = keys;
        write_keys(self.peer.dir(), &self.keys);
        let response = reqwest::Client::new()
            .post(format!("{}/__stage/reload", self.base_url()))
            .send()
            .await
            .expect("reload request");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "reload: {status} {body}");
    }

    /// Makes the next `count` requests for exactly `url` (query included) to the origin
    /// behind issuer number `index` answer `status`.
    pub async fn fail_next(&self, index: usize, url: &str, status: u16, count: u32) {
        let response = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/__stage/fail",
                self.ports[index]
            ))
            .query(&[
                ("url", url.to_owned()),
                ("status", status.to_string()),
                ("count", count.to_string()),
            ])
            .send()
            .await
            .expect("fail request");
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// The rotation: restart with `new_key` signing and the current keys still published.
    pub async fn rotate_to(&mut self, new_key: Value) {
        let keys = std::iter::once(new_key).chain(self.keys.clone()).collect();
        self.restart_with_keys(keys).await;
    }

    fn command(&self) -> Command {
        provider_command(
            self.peer.dir(),
            (&self.keys, &self.jwt_client_keys),
            (&self.client_id, &self.client_secret),
            self.token_ttl,
            self.issuers.iter().zip(&self.ports),
        )
    }
}

fn write_keys(dir: &Path, keys: &[Value]) -> PathBuf {
    let keys_file = dir.join("keys.json");
    std::fs::write(&keys_file, json!({ "keys": keys }).to_string()).expect("write keys");
    keys_file
}

/// Writes `keys` to `dir`/keys.json and builds the oidc-provider.mjs command line.
fn provider_command<'a>(
    dir: &Path,
    (keys, jwt_client_keys): (&[Value], &[Value]),
    (client_id, client_secret): (&str, &str),
    token_ttl: Option<Duration>,
    issuers_and_ports: impl Iterator<Item = (&'a String, &'a u16)>,
) -> Command {
    let keys_file = write_keys(dir, keys);
    let mut cmd = node_script("oidc-provider.mjs");
    cmd.arg("--keys").arg(&keys_file);
    cmd.args(["--client-id", client_id, "--client-secret", client_secret]);
    if let Some(ttl) = token_ttl {
        cmd.args(["--ttl", &ttl.as_secs().max(1).to_string()]);
    }
    if !jwt_client_keys.is_empty() {
        let file = dir.join("jwt-client-jwks.json");
        std::fs::write(&file, json!({ "keys": jwt_client_keys }).to_string())
            .expect("write the client's keys");
        cmd.arg("--jwt-client-jwks").arg(file);
    }
    for (issuer, port) in issuers_and_ports {
        cmd.args(["--issuer", issuer, "--port", &port.to_string()]);
    }
    cmd
}

pub async fn start_oidc_provider(opts: OidcProviderOpts) -> OidcProvider {
    let keys = if opts.keys.is_empty() {
        vec![generate_key("RS256", "key-1").await]
    } else {
        opts.keys
    };
    // Its own origin as issuer needs the port up front; otherwise let it bind port 0.
    let (issuers, ports) = if opts.issuers.is_empty() {
        let port = free_port();
        (vec![format!("http://127.0.0.1:{port}")], vec![port])
    } else {
        let ports = vec![0; opts.issuers.len()];
        (opts.issuers, ports)
    };
    let dir = tempfile::Builder::new()
        .prefix("oidc-provider.")
        .tempdir()
        .expect("temp dir");
    let cmd = provider_command(
        dir.path(),
        (&keys, &opts.jwt_client_keys),
        (&opts.client_id, &opts.client_secret),
        opts.token_ttl,
        issuers.iter().zip(&ports),
    );
    let mut peer = Peer::spawn("oidc-provider", dir, &[], cmd);
    let ports = peer.proc.listening_ports().await;
    OidcProvider {
        peer,
        issuers,
        ports,
        client_id: opts.client_id,
        client_secret: opts.client_secret,
        keys,
        token_ttl: opts.token_ttl,
        jwt_client_keys: opts.jwt_client_keys,
    }
}

/// npm oauth2-mock-server (peers/node/mock-oauth2.mjs): password, refresh_token and
/// client_credentials grants all return JWTs, for any client.
pub struct MockOAuth2 {
    _peer: Peer,
    pub port: u16,
    /// `http://127.0.0.1:<port>`, also the tokens' `iss`.
    pub issuer: String,
}

impl MockOAuth2 {
    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer)
    }
}

pub async fn start_mock_oauth2() -> MockOAuth2 {
    let dir = tempfile::Builder::new()
        .prefix("mock-oauth2.")
        .tempdir()
        .expect("temp dir");
    let mut peer = Peer::spawn("mock-oauth2", dir, &[], node_script("mock-oauth2.mjs"));
    let port = peer.proc.listening_port().await;
    MockOAuth2 {
        _peer: peer,
        port,
        issuer: format!("http://127.0.0.1:{port}"),
    }
}

/// How nginx caches one domain's /jwks and discovery (see peers/nginx/cdn.conf.template).
#[derive(Clone, Debug, PartialEq)]
pub struct Caching {
    /// How long a 200 is kept; `None`: not cached at all.
    pub ttl: Option<Duration>,
    /// How long a 5xx from the origin is kept; `None`: never.
    pub error_ttl: Option<Duration>,
    /// The `max-age` the CDN tells clients when it is not `ttl` (a CDN that keeps copies
    /// longer than it says, until purged); `None`: `ttl`.
    pub told_max_age: Option<Duration>,
}

impl Caching {
    /// No cache in front of the origin.
    pub const OFF: Caching = Caching {
        ttl: None,
        error_ttl: None,
        told_max_age: None,
    };

    /// 200s kept for `ttl`, errors not kept.
    pub fn for_(ttl: Duration) -> Caching {
        Caching {
            ttl: Some(ttl),
            error_ttl: None,
            told_max_age: None,
        }
    }

    fn placeholders(&self, prefix: &str) -> [(String, String); 4] {
        let secs = |d: Option<Duration>| format!("{}s", d.map_or(0, |d| d.as_secs()));
        [
            (
                format!("{prefix}_ZONE"),
                if self.ttl.is_some() { "idp" } else { "off" }.to_owned(),
            ),
            (
                format!("{prefix}_TTL"),
                secs(self.ttl.or(Some(Duration::ZERO))),
            ),
            (format!("{prefix}_ERROR_TTL"), secs(self.error_ttl)),
            (
                format!("{prefix}_CACHE_CONTROL"),
                self.ttl
                    .map(|t| self.told_max_age.unwrap_or(t))
                    .map(|t| format!("public, max-age={}", t.as_secs()))
                    .unwrap_or_default(),
            ),
        ]
    }
}

/// What peers/nginx/cdn.conf.template needs: the two domains' listen ports, the origin
/// port behind each, and how each caches.
pub struct CdnConf {
    /// idp.example.app.
    pub app_port: u16,
    pub app_upstream: u16,
    pub app: Caching,
    /// idp.example.io.
    pub io_port: u16,
    pub io_upstream: u16,
    pub io: Caching,
}

/// nginx as the CDN (`daemon off`, one process, everything in its temp dir).
pub struct Nginx {
    _peer: Peer,
    pub app_port: u16,
    pub io_port: u16,
    pub cache_dir: PathBuf,
}

impl Nginx {
    /// Forgets every cached response (the next request is a MISS).
    pub fn purge(&self) {
        for entry in std::fs::read_dir(&self.cache_dir).expect("read cache dir") {
            let path = entry.expect("cache dir entry").path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("purge cache");
            } else {
                std::fs::remove_file(&path).expect("purge cache");
            }
        }
    }
}

pub async fn start_nginx(conf: &CdnConf) -> Nginx {
    try_start_nginx(conf)
        .await
        .unwrap_or_else(|logs| panic!("nginx did not start\n{logs}"))
}

/// `Err` carries the logs; it is an `Err` rather than a panic so that `start_stage` can
/// retry when a port picked by `free_port` was taken in the meantime.
async fn try_start_nginx(conf: &CdnConf) -> Result<Nginx, String> {
    let nginx = program("nginx");
    let dir = tempfile::Builder::new()
        .prefix("nginx.")
        .tempdir()
        .expect("temp dir");
    let prefix = dir.path().to_str().expect("utf-8 temp dir").to_owned();
    let cache_dir = dir.path().join("cache");
    std::fs::create_dir_all(dir.path().join("tmp")).expect("create nginx tmp dir");
    std::fs::create_dir_all(&cache_dir).expect("create nginx cache dir");
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/nginx/cdn.conf.template");
    let mut text = std::fs::read_to_string(&template).expect("read nginx template");
    let values = [
        ("PREFIX".to_owned(), prefix.clone()),
        ("APP_PORT".to_owned(), conf.app_port.to_string()),
        ("APP_UPSTREAM".to_owned(), conf.app_upstream.to_string()),
        ("IO_PORT".to_owned(), conf.io_port.to_string()),
        ("IO_UPSTREAM".to_owned(), conf.io_upstream.to_string()),
    ]
    .into_iter()
    .chain(conf.app.placeholders("APP"))
    .chain(conf.io.placeholders("IO"));
    for (name, value) in values {
        text = text.replace(&format!("{{{{{name}}}}}"), &value);
    }
    assert!(!text.contains("{{"), "unrendered placeholder in {text}");
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, text).expect("write nginx.conf");

    let mut cmd = Command::new(nginx);
    cmd.arg("-p").arg(&prefix).arg("-c").arg(&conf_path);
    cmd.arg("-e").arg(dir.path().join("error.log"));
    let mut peer = Peer::spawn("nginx", dir, &["error.log", "access.log"], cmd);

    // Ready once its pid file exists (written after it bound every listen socket, so a
    // connect cannot reach some other process that holds the port) and it accepts.
    let pid_file = peer.dir().join("nginx.pid");
    let ready = wait_until("nginx", START_TIMEOUT, || {
        let pid_file = pid_file.clone();
        let ports = [conf.app_port, conf.io_port];
        async move {
            pid_file.exists()
                && tokio::net::TcpStream::connect(("127.0.0.1", ports[0]))
                    .await
                    .is_ok()
                && tokio::net::TcpStream::connect(("127.0.0.1", ports[1]))
                    .await
                    .is_ok()
        }
    });
    tokio::select! {
        status = peer.proc.child.wait() => {
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(format!("nginx exited: {status}\n{}", peer.proc.logs()));
        }
        () = ready => {}
    }
    Ok(Nginx {
        _peer: peer,
        app_port: conf.app_port,
        io_port: conf.io_port,
        cache_dir,
    })
}

pub struct StageOpts {
    /// How nginx caches each domain's /jwks and discovery.
    pub app: Caching,
    pub io: Caching,
    /// As `OidcProviderOpts::keys`.
    pub keys: Vec<Value>,
    /// Access token lifetime (oidc-provider `--ttl`); default one hour.
    pub token_ttl: Option<Duration>,
}

impl Default for StageOpts {
    /// The seed's configuration drift: io cached for 10 minutes, app not at all.
    fn default() -> Self {
        StageOpts {
            app: Caching::OFF,
            io: Caching::for_(Duration::from_secs(600)),
            keys: Vec::new(),
            token_ttl: None,
        }
    }
}

/// One domain of the stage, as a client (or a probes.toml) sees it.
#[derive(Clone, Debug)]
pub struct Domain {
    pub name: &'static str,
    /// Whether nginx caches its /jwks and discovery.
    pub cached: bool,
    /// The CDN origin: `http://127.0.0.1:<nginx port>`. Also this domain's issuer.
    pub issuer: String,
    pub discovery_url: String,
    pub jwks_url: String,
    pub token_url: String,
}

impl Domain {
    fn new(name: &'static str, cached: bool, port: u16) -> Domain {
        let issuer = format!("http://127.0.0.1:{port}");
        Domain {
            name,
            cached,
            discovery_url: format!("{issuer}/.well-known/openid-configuration"),
            jwks_url: format!("{issuer}/jwks"),
            token_url: format!("{issuer}/token"),
            issuer,
        }
    }
}

/// The seed incident's stage: one oidc-provider served on two domains through nginx.
/// Each domain is its own issuer (one Provider per domain, same keys and client).
pub struct Stage {
    pub idp: OidcProvider,
    pub cdn: Nginx,
    app_cached: bool,
    io_cached: bool,
}

impl Stage {
    /// idp.example.app (not cached by default).
    pub fn app(&self) -> Domain {
        Domain::new("idp.example.app", self.app_cached, self.cdn.app_port)
    }

    /// idp.example.io (cached for 10 minutes by default).
    pub fn io(&self) -> Domain {
        Domain::new("idp.example.io", self.io_cached, self.cdn.io_port)
    }

    pub fn domains(&self) -> [Domain; 2] {
        [self.app(), self.io()]
    }
}

pub async fn start_stage(opts: StageOpts) -> Stage {
    let keys = if opts.keys.is_empty() {
        vec![generate_key("RS256", "key-1").await]
    } else {
        opts.keys
    };
    // nginx's ports are part of the issuers, so they are picked before anything starts;
    // if one is taken before nginx binds it, start over with new ones.
    let mut failures = Vec::new();
    for _ in 0..3 {
        let (app_port, io_port) = (free_port(), free_port());
        let idp = start_oidc_provider(OidcProviderOpts {
            issuers: vec![
                format!("http://127.0.0.1:{app_port}"),
                format!("http://127.0.0.1:{io_port}"),
            ],
            keys: keys.clone(),
            token_ttl: opts.token_ttl,
            ..OidcProviderOpts::default()
        })
        .await;
        let conf = CdnConf {
            app_port,
            app_upstream: idp.ports[0],
            app: opts.app.clone(),
            io_port,
            io_upstream: idp.ports[1],
            io: opts.io.clone(),
        };
        match try_start_nginx(&conf).await {
            Ok(cdn) => {
                return Stage {
                    idp,
                    cdn,
                    app_cached: opts.app.ttl.is_some(),
                    io_cached: opts.io.ttl.is_some(),
                };
            }
            Err(logs) if logs.contains("Address already in use") => failures.push(logs),
            Err(logs) => panic!("nginx did not start\n{logs}"),
        }
    }
    panic!(
        "nginx could not bind its ports 3 times\n{}",
        failures.join("\n")
    );
}

/// nginx answering as several CDN edges at once: the same port on several loopback
/// addresses, each serving its own JWKS body at `/jwks` for the host names given, and 421
/// for any other `Host` (so a request that lost its Host header is seen).
pub struct Edges {
    _peer: Peer,
    pub port: u16,
}

/// Starts [`Edges`]: `bodies` are `(edge address, host name, JWKS body)`.
pub async fn start_edges(bodies: &[(&str, &str, String)]) -> Edges {
    start_edges_with(bodies, None).await
}

/// [`start_edges`] over TLS: each host name's server presents `certs/HOST-cert.pem` (key
/// `HOST-key.pem`), and a client that sends no SNI or another name gets the default
/// server's `certs/default-cert.pem`, so only a client that keeps the URL's host name as
/// its SNI reaches the key set, with a certificate valid for it.
pub async fn start_tls_edges(bodies: &[(&str, &str, String)], certs: &Path) -> Edges {
    start_edges_with(bodies, Some(certs)).await
}

async fn start_edges_with(bodies: &[(&str, &str, String)], certs: Option<&Path>) -> Edges {
    let nginx = program("nginx");
    let mut last_logs = String::new();
    // A port free on 127.0.0.1 may be taken on another address by then: retry.
    for _ in 0..5 {
        let port = free_port();
        let dir = tempfile::Builder::new()
            .prefix("edges.")
            .tempdir()
            .expect("temp dir");
        let prefix = dir.path().to_str().expect("utf-8 temp dir").to_owned();
        std::fs::create_dir_all(dir.path().join("tmp")).expect("create nginx tmp dir");
        let mut edges: Vec<&str> = bodies.iter().map(|b| b.0).collect();
        edges.sort_unstable();
        edges.dedup();
        let mut servers = String::new();
        let (ssl, tls_of) = match certs {
            Some(dir) => (
                " ssl",
                Box::new(move |name: &str| {
                    format!(
                        " ssl_certificate {0}/{name}-cert.pem; ssl_certificate_key {0}/{name}-key.pem;",
                        dir.display()
                    )
                }) as Box<dyn Fn(&str) -> String>,
            ),
            None => (
                "",
                Box::new(|_: &str| String::new()) as Box<dyn Fn(&str) -> String>,
            ),
        };
        for edge in &edges {
            servers.push_str(&format!(
                "  server {{ listen {edge}:{port}{ssl} default_server;{} return 421; }}\n",
                tls_of("default")
            ));
        }
        for (edge, host, body) in bodies {
            let body = body.replace('\'', "\\'");
            servers.push_str(&format!(
                "  server {{ listen {edge}:{port}{ssl}; server_name {host};{}\n    location = /jwks {{ default_type application/json; return 200 '{body}'; }}\n  }}\n",
                tls_of(host)
            ));
        }
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log {prefix}/access.log;\n  client_body_temp_path {prefix}/tmp;\n  proxy_temp_path {prefix}/tmp;\n  fastcgi_temp_path {prefix}/tmp;\n  uwsgi_temp_path {prefix}/tmp;\n  scgi_temp_path {prefix}/tmp;\n{servers}}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let mut cmd = Command::new(&nginx);
        cmd.arg("-p").arg(&prefix).arg("-c").arg(&conf_path);
        cmd.arg("-e").arg(dir.path().join("error.log"));
        let mut peer = Peer::spawn("nginx-edges", dir, &["error.log", "access.log"], cmd);
        let pid_file = peer.dir().join("nginx.pid");
        let first = edges[0].to_owned();
        let ready = wait_until("nginx edges", START_TIMEOUT, || {
            let (pid_file, first) = (pid_file.clone(), first.clone());
            async move {
                pid_file.exists()
                    && tokio::net::TcpStream::connect((first.as_str(), port))
                        .await
                        .is_ok()
            }
        });
        tokio::select! {
            status = peer.proc.child.wait() => {
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                last_logs = format!("nginx exited: {status}\n{}", peer.proc.logs());
            }
            () = ready => return Edges { _peer: peer, port },
        }
    }
    panic!("nginx edges did not start\n{last_logs}");
}
