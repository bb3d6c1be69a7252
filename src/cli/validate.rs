//! `keycanary validate`: the config has loaded (every problem was listed and the process
//! ended with 2 otherwise, in `cli::main`); say how many tenants and views it makes.

use crate::config::Config;
use std::path::Path;
use std::process::ExitCode;

pub(super) fn run(path: &Path, cfg: &Config) -> ExitCode {
    let views: usize = cfg
        .tenants
        .iter()
        .flat_map(|t| &t.domains)
        .map(|d| d.views().len())
        .sum();
    let shard = match cfg.settings.shard {
        Some(s) => format!(
            "; shard {s} watches {} of the file's {} tenant(s)",
            cfg.tenants.len(),
            cfg.tenants_in_file
        ),
        None => String::new(),
    };
    println!(
        "{}: ok ({} tenant(s), {} view(s){shard})",
        path.display(),
        cfg.tenants.len(),
        views
    );
    ExitCode::SUCCESS
}
