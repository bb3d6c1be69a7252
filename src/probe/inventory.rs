//! Reading the inventory's sources: the file, and the endpoint (`GET url`, at most
//! `max_bytes`, within the probe timeout). With a bearer the request never follows a
//! redirect (a 3xx is a failure naming where it pointed, and the token went nowhere else);
//! without one it follows up to `max_redirects`, as discovery does.
//!
//! Failures are returned as short messages (never the body, never the bearer). Not here:
//! what the bytes mean (`config::inventory`), or when to read (the daemon, the CLI).

use super::http::{Clients, Request, fetch};
use crate::clock::SharedClock;
use crate::config::inventory::Inventory;
use crate::model::{FetchOutcome, wire};
use secrecy::ExposeSecret;

/// Which source a load came from; the label of its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    File,
    Url,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Url => "url",
        }
    }
}

/// What reading each configured source gave: its bytes, or why not.
pub type Loads = Vec<(Source, Result<Vec<u8>, String>)>;

/// Reads every source `inventory` configures, the file first.
pub async fn read(inventory: &Inventory, clients: &Clients, clock: &SharedClock) -> Loads {
    let mut out = Vec::new();
    if let Some(path) = &inventory.file {
        out.push((Source::File, read_file(path, inventory.max_bytes).await));
    }
    if inventory.url.is_some() {
        out.push((Source::Url, fetch_url(inventory, clients, clock).await));
    }
    out
}

async fn read_file(path: &std::path::Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > max_bytes {
        return Err(format!(
            "{} is {} bytes, more than max_bytes ({max_bytes})",
            path.display(),
            meta.len()
        ));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "{} grew past max_bytes ({max_bytes}) while read",
            path.display()
        ));
    }
    Ok(bytes)
}

async fn fetch_url(
    inventory: &Inventory,
    clients: &Clients,
    clock: &SharedClock,
) -> Result<Vec<u8>, String> {
    let Some(url) = &inventory.url else {
        return Err("no url".into());
    };
    let client = if inventory.bearer.is_some() {
        clients.no_redirects()
    } else {
        clients.plain()
    };
    let mut req = Request::get(client, url).header("accept", "application/json");
    if let Some(b) = &inventory.bearer {
        req = req.header("authorization", &format!("Bearer {}", b.expose_secret()));
    }
    let (fetch, body) = fetch(req, clock, inventory.max_bytes).await;
    match fetch.outcome {
        FetchOutcome::Error { message, .. } => Err(format!(
            "GET {url}: {}",
            wire::text(&message, wire::TEXT_MAX)
        )),
        FetchOutcome::Response(r) if r.status == 200 => body.ok_or_else(|| "no body".into()),
        FetchOutcome::Response(r) => match r.redirect_to {
            Some(to) => Err(format!(
                "GET {url}: answered {} with a redirect to {to}; the bearer is never sent across a redirect: set url to the address that answers",
                r.status
            )),
            None => Err(format!("GET {url}: answered {}", r.status)),
        },
    }
}
