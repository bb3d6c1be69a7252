//! The inventory for one-shot commands (`validate`, `check`, a local `gate`): every
//! source read once and the file's config expanded with its entries, as the daemon does
//! at start.
//!
//! Not here: reading (`probe::inventory`), checking and expanding (`config::inventory`),
//! or polling (the daemon).

use crate::clock::SharedClock;
use crate::config::inventory::{self, Rejected};
use crate::config::{Config, SecretSource};
use crate::probe::http::Clients;
use crate::probe::inventory::{Source, read};

/// What the inventory gave, for `validate` to print.
pub(super) struct Report {
    /// Per source: how many entries it listed, or why it could not be read.
    pub sources: Vec<(Source, Result<usize, String>)>,
    pub accepted: usize,
    pub rejected: Vec<Rejected>,
}

impl Report {
    /// Whether a source could not be read (its tenants are missing from the config).
    pub fn failed(&self) -> bool {
        self.sources.iter().any(|(_, r)| r.is_err())
    }
}

/// `config` with the inventory's tenants, and the report (`None` without `[inventory]`).
pub(super) async fn expand(
    config: Config,
    clock: &SharedClock,
) -> anyhow::Result<(Config, Option<Report>)> {
    let Some(inv) = config.inventory.clone() else {
        return Ok((config, None));
    };
    let clients = Clients::new(&config.settings)?;
    let mut sources = Vec::new();
    let mut entries = Vec::new();
    for (source, result) in read(&inv, &clients, clock).await {
        match result.and_then(|bytes| inventory::parse_entries(&bytes)) {
            Ok(list) => {
                sources.push((source, Ok(list.len())));
                entries.extend(list);
            }
            Err(e) => sources.push((source, Err(e))),
        }
    }
    let x = inventory::expand(&config, &entries, &SecretSource::process(&inv.base_dir));
    Ok((
        x.config,
        Some(Report {
            sources,
            accepted: x.accepted,
            rejected: x.rejected,
        }),
    ))
}
