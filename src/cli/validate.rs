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
    println!(
        "{}: ok ({} tenant(s), {} view(s))",
        path.display(),
        cfg.tenants.len(),
        views
    );
    ExitCode::SUCCESS
}
