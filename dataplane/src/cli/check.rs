//! `meshward check`: load and compile without touching the kernel.

use std::{path::Path, process::ExitCode};

pub fn check(path: &Path, settings: &control::Settings) -> ExitCode {
    let config = match control::load_config(path) {
        Ok(c) => c,
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!("{}: invalid config", path.display());
            return ExitCode::FAILURE;
        }
    };
    let no_names = control::Resolutions::new();
    match control::compile(&config, settings, &no_names, &control::RuleIds::default()) {
        Ok(compiled) => {
            for w in compiled.warnings.iter() {
                eprintln!("{w}");
            }
            println!(
                "{}: ok ({} workloads, {} rules, {} table entries)",
                path.display(),
                compiled.workloads.len(),
                compiled.rules.len(),
                compiled.egress.len()
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!("{}: invalid config", path.display());
            ExitCode::FAILURE
        }
    }
}
