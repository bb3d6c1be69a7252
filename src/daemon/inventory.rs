//! The inventory at run time. A [`Poller`] task reads the sources every `refresh` and
//! hands what it read to the run loop; the [`Fleet`] keeps each source's last good list
//! (saved in the state directory too, so a restart with a source down starts from it),
//! expands the file's config with the entries, and says when they changed. The run loop
//! then replaces the workers exactly as a SIGHUP reload does (`mod.rs`), and tenants that
//! left are retired with the reason (`rounds::on_tick`).
//!
//! Not here: reading a source (`probe::inventory`), checking and expanding entries
//! (`config::inventory`).

use crate::clock::SharedClock;
use crate::config::inventory::{self, Entry, Expansion, Rejected};
use crate::config::{Config, SecretSource};
use crate::model::Timestamp;
use crate::probe::http::Clients;
use crate::probe::inventory::{Loads, Source, read};
use crate::snapshot::{InventoryStatus, SourceStatus};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

type List = Vec<Result<Entry, Rejected>>;

/// Rejected entries logged one by one per change; the rest are counted.
const LOGGED_REJECTS: usize = 20;

#[derive(Debug, Default)]
struct SourceState {
    list: Option<List>,
    last_success: Option<Timestamp>,
    error: Option<String>,
}

/// The file's config and what the inventory's sources last gave.
pub(super) struct Fleet {
    /// The config as loaded from its file (no inventory tenants).
    pub(super) base: Config,
    sources: BTreeMap<Source, SourceState>,
    /// The entries the running config was expanded from; `None` before the first.
    applied: Option<List>,
    accepted: usize,
    rejected: usize,
}

impl Fleet {
    pub(super) fn new(base: Config) -> Fleet {
        Fleet {
            base,
            sources: BTreeMap::new(),
            applied: None,
            accepted: 0,
            rejected: 0,
        }
    }

    fn saved(&self, source: Source) -> PathBuf {
        self.base
            .settings
            .state_dir
            .join(format!("inventory-{}.json", source.as_str()))
    }

    /// Takes what the sources gave. A source that read a list replaces its list (and saves
    /// it); one that failed keeps its last good list, or, with none yet (at start), the one
    /// saved by an earlier run, and says so.
    pub(super) fn absorb(&mut self, loads: Loads, now: Timestamp) {
        for (source, result) in loads {
            let parsed =
                result.and_then(|bytes| inventory::parse_entries(&bytes).map(|l| (l, bytes)));
            let saved = self.saved(source);
            let state = self.sources.entry(source).or_default();
            match parsed {
                Ok((list, bytes)) => {
                    if state.list.as_ref() != Some(&list)
                        && let Err(e) = save(&saved, &bytes)
                    {
                        warn!(path = %saved.display(), error = %e, "cannot save the inventory for the next start");
                    }
                    if state.error.is_some() {
                        info!(source = source.as_str(), "inventory source answers again");
                    }
                    state.list = Some(list);
                    state.last_success = Some(now);
                    state.error = None;
                }
                Err(e) => {
                    if state.list.is_none()
                        && let Ok(bytes) = std::fs::read(&saved)
                        && let Ok(list) = inventory::parse_entries(&bytes)
                    {
                        warn!(source = source.as_str(), path = %saved.display(),
                            "inventory source failed at start: running on the list saved by the last run");
                        state.list = Some(list);
                    }
                    if state.list.is_some() {
                        error!(source = source.as_str(), error = %e,
                            "cannot load the inventory: keeping the last good list");
                    } else {
                        error!(source = source.as_str(), error = %e,
                            "cannot load the inventory, and there is no earlier list: no tenant from this source yet");
                    }
                    state.error = Some(e);
                }
            }
        }
    }

    /// The entries of every source, the file's first.
    fn entries(&self) -> List {
        self.sources
            .values()
            .filter_map(|s| s.list.clone())
            .flatten()
            .collect()
    }

    /// The config to run when the entries differ from those it runs with, or always with
    /// `force` (the file's config changed); `None`: nothing changed. Rejected entries are
    /// logged.
    pub(super) fn expansion(&mut self, force: bool) -> Option<Expansion> {
        if self.base.inventory.is_none() {
            return force.then(|| Expansion {
                config: self.base.clone(),
                accepted: 0,
                rejected: Vec::new(),
            });
        }
        let entries = self.entries();
        if !force && self.applied.as_ref() == Some(&entries) {
            return None;
        }
        let base_dir = self
            .base
            .inventory
            .as_ref()
            .map(|i| i.base_dir.clone())
            .unwrap_or_default();
        let x = inventory::expand(&self.base, &entries, &SecretSource::process(&base_dir));
        for r in x.rejected.iter().take(LOGGED_REJECTS) {
            warn!(entry = %r.name, problems = %r.problems.join("; "), "inventory entry rejected: skipped");
        }
        if x.rejected.len() > LOGGED_REJECTS {
            warn!(
                more = x.rejected.len() - LOGGED_REJECTS,
                "more inventory entries rejected (keycanary validate lists them all)"
            );
        }
        info!(
            accepted = x.accepted,
            rejected = x.rejected.len(),
            tenants = x.config.tenants.len(),
            "inventory expanded"
        );
        self.applied = Some(entries);
        self.accepted = x.accepted;
        self.rejected = x.rejected.len();
        Some(x)
    }

    /// What `/metrics` and `/readyz` say of the inventory; `None` without one.
    pub(super) fn status(&self) -> Option<InventoryStatus> {
        self.base.inventory.as_ref()?;
        Some(InventoryStatus {
            accepted: self.accepted,
            rejected: self.rejected,
            sources: self
                .sources
                .iter()
                .map(|(s, st)| {
                    (
                        s.as_str(),
                        SourceStatus {
                            last_success: st.last_success,
                            error: st.error.clone(),
                        },
                    )
                })
                .collect(),
        })
    }
}

/// Writes `bytes` to `path` whole (a temporary file renamed over it).
fn save(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Reads the sources once now (at start).
pub(super) async fn read_now(config: &Config, clock: &SharedClock) -> Option<Loads> {
    let inv = config.inventory.as_ref()?;
    let clients = match Clients::new(&config.settings) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "cannot build the inventory's HTTP client");
            return None;
        }
    };
    Some(read(inv, &clients, clock).await)
}

/// The task that reads the inventory's sources every `refresh`.
pub(super) struct Poller {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Poller {
    /// Starts polling `config`'s inventory (none without one): the first read one
    /// `refresh` from now, since the run loop has just read it.
    pub(super) fn start(
        config: &Config,
        clock: SharedClock,
        out: mpsc::Sender<Loads>,
    ) -> Option<Poller> {
        let inv = config.inventory.clone()?;
        let clients = match Clients::new(&config.settings) {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "cannot build the inventory's HTTP client: the inventory is not polled");
                return None;
            }
        };
        let stop = CancellationToken::new();
        let cancelled = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(inv.refresh) => {}
                    _ = cancelled.cancelled() => return,
                }
                let loads = tokio::select! {
                    l = read(&inv, &clients, &clock) => l,
                    _ = cancelled.cancelled() => return,
                };
                tokio::select! {
                    sent = out.send(loads) => if sent.is_err() { return },
                    _ = cancelled.cancelled() => return,
                }
            }
        });
        Some(Poller { stop, task })
    }

    pub(super) async fn stop(self) {
        self.stop.cancel();
        if self.task.await.is_err() {
            error!("the inventory poller panicked");
        }
    }
}

/// Why each tenant of `old` that `new` lacks is gone, for its incidents' resolve.
pub(super) fn why_gone(old: &Config, new: &Expansion) -> BTreeMap<String, String> {
    old.tenants
        .iter()
        .filter(|t| new.config.tenant(&t.name).is_none())
        .map(|t| {
            let reason = if !old.inventory_tenants.contains(&t.name) {
                "tenant removed from the config".to_owned()
            } else if let Some(r) = new.rejected.iter().find(|r| r.name == t.name) {
                format!(
                    "tenant's inventory entry rejected: {}",
                    r.problems.join("; ")
                )
            } else {
                "tenant removed from the inventory".to_owned()
            };
            (t.name.clone(), reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A file config with one hand-written tenant, an inventory file and a template whose
    /// secrets are env names every process has (`PATH`), in `dir`.
    fn base(dir: &Path) -> Config {
        let text = r#"
state_dir = "state"
[[tenant]]
name = "handmade"
[[tenant.domain]]
name = "app"
issuer = "https://idp.example/handmade"
[tenant.domain.login]
client_id = "k"
client_secret = { env = "PATH" }
[[tenant.domain.jwks]]
name = "cdn"
[inventory]
file = "inventory.json"
[[tenant_template]]
name = "t"
[[tenant_template.domain]]
name = "main"
issuer = "https://{tenant}.idp.example"
[tenant_template.domain.login]
client_id = "k"
client_secret = { env = "PATH" }
[[tenant_template.domain.jwks]]
name = "cdn"
"#;
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let secrets = crate::config::SecretSource::process(dir);
        Config::from_toml_str(text, "probes.toml", &secrets).unwrap()
    }

    fn list(names: &[&str]) -> Vec<u8> {
        let entries: Vec<serde_json::Value> = names
            .iter()
            .map(|n| serde_json::json!({"name": n, "template": "t"}))
            .collect();
        serde_json::to_vec(&entries).unwrap()
    }

    /// One step: what the file source gave, and the tenants expected (`None`: no change).
    type Step = (Result<Vec<u8>, String>, Option<&'static [&'static str]>);

    fn names(x: &Expansion) -> Vec<&str> {
        x.config.tenants.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn a_failing_source_keeps_its_last_good_list_and_a_restart_starts_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut fleet = Fleet::new(base(dir.path()));
        let at = |s: i64| Timestamp::from_secs(1_800_000_000 + s);
        // (what the file source gave, tenants expected; None: no change to apply)
        let steps: Vec<Step> = vec![
            (Ok(list(&["a", "b"])), Some(&["handmade", "a", "b"])),
            (Ok(list(&["a", "b"])), None),
            (Err("cannot read".into()), None),
            (Ok(b"{not a list".to_vec()), None),
            (Ok(list(&["b"])), Some(&["handmade", "b"])),
        ];
        for (i, (load, want)) in steps.into_iter().enumerate() {
            let failed = load.is_err() || load.as_deref().is_ok_and(|b| b.starts_with(b"{"));
            fleet.absorb(vec![(Source::File, load)], at(i as i64));
            let x = fleet.expansion(false);
            assert_eq!(
                x.as_ref().map(names),
                want.map(<[&str]>::to_vec),
                "step {i}"
            );
            let st = &fleet.status().unwrap().sources["file"];
            assert_eq!(st.error.is_some(), failed, "step {i}: {st:?}");
            let last_ok = if failed { at(1) } else { at(i as i64) };
            assert_eq!(st.last_success, Some(last_ok), "step {i}");
        }
        // A new process whose first read fails starts from the saved list.
        let mut restarted = Fleet::new(base(dir.path()));
        restarted.absorb(vec![(Source::File, Err("down".into()))], at(9));
        let x = restarted.expansion(true).unwrap();
        assert_eq!(names(&x), ["handmade", "b"]);
        assert_eq!(restarted.status().unwrap().accepted, 1);
    }

    #[test]
    fn each_removed_tenant_says_why_it_went() {
        let dir = tempfile::tempdir().unwrap();
        let mut fleet = Fleet::new(base(dir.path()));
        fleet.absorb(
            vec![(Source::File, Ok(list(&["a", "b", "c"])))],
            Timestamp(0),
        );
        let old = fleet.expansion(true).unwrap().config;
        let entries = serde_json::json!([
            {"name": "a", "template": "t"},
            {"name": "c", "template": "missing"}
        ]);
        fleet.absorb(
            vec![(Source::File, Ok(serde_json::to_vec(&entries).unwrap()))],
            Timestamp(1),
        );
        let mut new = fleet.expansion(false).unwrap();
        new.config.tenants.retain(|t| t.name != "handmade");
        new.config.reindex_tenants();
        let why = why_gone(&old, &new);
        let got: Vec<(&str, &str)> = why.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("b", "tenant removed from the inventory"),
                (
                    "c",
                    "tenant's inventory entry rejected: no [[tenant_template]] named `missing` (there are: t)"
                ),
                ("handmade", "tenant removed from the config"),
            ]
        );
    }
}
