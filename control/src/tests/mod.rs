//! Crate-level tests: parsing, errors with exact locations, compile and evaluation semantics,
//! and a randomized comparison of the tables against a direct evaluation of the model.

mod compile_semantics;
mod errors;
mod inbound_property;
mod inbound_semantics;
mod parsing;
mod property;
mod sni_semantics;

pub(crate) use crate::load_config_str;
use crate::{Config, Diagnostics};

/// Loads `text` as `t.yaml`, failing the test with the diagnostics if it is rejected.
pub(crate) fn load(text: &str) -> Config {
    match load_config_str("t.yaml", text) {
        Ok(c) => c,
        Err(d) => panic!("config rejected:\n{d}"),
    }
}

/// Loads `text` as `t.yaml`, expecting rejection; returns the diagnostics as lines.
pub(crate) fn rejected(text: &str) -> Vec<String> {
    match load_config_str("t.yaml", text) {
        Ok(_) => panic!("config unexpectedly accepted"),
        Err(d) => lines(&d),
    }
}

pub(crate) fn lines(d: &Diagnostics) -> Vec<String> {
    d.iter().map(|d| d.to_string()).collect()
}
