//! Detection over an arbitrary sequence of observations (JSON, as serde writes a
//! `Vec<Observation>`; the committed seeds are recorded timelines): each round judged
//! against the remembered history, then both gates asked and the report rendered, as the
//! daemon and `check` do. At most eight rounds per input.
#![no_main]

use keycanary::alert::AlertState;
use keycanary::config::{self, Config, MemorySecrets};
use keycanary::detect::gate::{self, Question};
use keycanary::detect::history::History;
use keycanary::model::Observation;
use keycanary::report::Report;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

/// Tenants `acme` (domains `app` and `io`) and `globex` (`app`), each domain with one
/// JWKS path `cdn`, as the recorded timelines expect.
const PROBES_TOML: &str = r#"
interval = "30s"
allowed_algs = ["RS256", "ES256", "EdDSA"]
max_clock_skew = "60s"

[[tenant]]
name = "acme"

[[tenant.domain]]
name = "app"
issuer = "https://idp.example.app/acme"
[tenant.domain.login]
client_id = "keycanary"
client_secret = { env = "SECRET" }
resource = "https://api.example"
[[tenant.domain.jwks]]
name = "cdn"

[[tenant.domain]]
name = "io"
issuer = "https://idp.example.io/acme"
[tenant.domain.login]
client_id = "keycanary"
client_secret = { env = "SECRET" }
resource = "https://api.example"
[[tenant.domain.jwks]]
name = "cdn"

[[tenant]]
name = "globex"
[[tenant.domain]]
name = "app"
issuer = "https://idp.example.app/globex"
[[tenant.domain.jwks]]
name = "cdn"
"#;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let secrets = MemorySecrets::new().with_env("SECRET", "fuzz-secret");
        config::parse(PROBES_TOML, "fuzz.toml", Path::new("."), &secrets)
            .expect("the fuzz config is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(steps) = serde_json::from_slice::<Vec<Observation>>(data) else {
        return;
    };
    let config = config();
    let mut history = History::default();
    let mut alerts = std::collections::BTreeMap::<String, AlertState>::new();
    for o in steps.iter().take(8) {
        let now = o.finished_at;
        let part = alerts.remove(&o.tenant).unwrap_or_default();
        let v = keycanary::judge::judge(
            config,
            &mut history,
            &part,
            &[],
            &o.tenant,
            Some(o),
            &[],
            now,
        );
        alerts.insert(o.tenant.clone(), v.alerts);
        for q in [Question::Rotation(None), Question::Retirement("k1")] {
            let a = gate::answer(
                config,
                &history,
                std::slice::from_ref(o),
                &v.findings,
                &o.tenant,
                q,
                now,
            );
            let _ = serde_json::to_string(&a).expect("a gate answer serialises");
        }
        let report = Report::new([o], v.findings);
        assert!(!report.to_text().is_empty());
    }
});
