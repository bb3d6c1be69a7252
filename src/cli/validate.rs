//! `keycanary validate`: the config has loaded (every problem was listed and the process
//! ended with 2 otherwise, in `cli::main`); with `[inventory]`, its sources are read and
//! its entries expanded (`cli::inventory`). Says how many tenants and views result, and
//! every rejected entry with its problems.
//!
//! Exit 0: valid (every entry accepted); 1: valid, but some inventory entries are rejected
//! (the daemon would skip them); 2: an inventory source cannot be read.

use super::inventory::Report;
use crate::config::Config;
use std::path::Path;
use std::process::ExitCode;

pub(super) fn run(path: &Path, cfg: &Config, report: Option<&Report>) -> ExitCode {
    let views: usize = cfg
        .tenants
        .iter()
        .flat_map(|t| &t.domains)
        .map(|d| d.views().len())
        .sum();
    let whose = if report.is_some() {
        "file's and the inventory's"
    } else {
        "file's"
    };
    let shard = match cfg.settings.shard {
        Some(s) => format!(
            "; shard {s} watches {} of the {whose} {} tenant(s)",
            cfg.tenants.len(),
            cfg.tenants_in_file
        ),
        None => String::new(),
    };
    let from_inventory = match report {
        Some(_) => format!(", {} from the inventory", cfg.inventory_tenants.len()),
        None => String::new(),
    };
    let Some(report) = report else {
        println!(
            "{}: ok ({} tenant(s), {} view(s){shard})",
            path.display(),
            cfg.tenants.len(),
            views
        );
        return ExitCode::SUCCESS;
    };
    for (source, result) in &report.sources {
        match result {
            Ok(n) => println!("inventory {}: {n} entries", source.as_str()),
            Err(e) => println!("inventory {}: cannot be read: {e}", source.as_str()),
        }
    }
    for r in &report.rejected {
        println!("rejected: {r}");
    }
    let verdict = if report.failed() {
        "inventory incomplete"
    } else if report.rejected.is_empty() {
        "ok"
    } else {
        "ok with rejected entries"
    };
    println!(
        "{}: {verdict} ({} tenant(s){from_inventory}, {} view(s); {} entries accepted, {} rejected{shard})",
        path.display(),
        cfg.tenants.len(),
        views,
        report.accepted,
        report.rejected.len(),
    );
    if report.failed() {
        ExitCode::from(2)
    } else if report.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
