//! Where the local config comes from (a file, a directory, the bundled example, or nothing when
//! a control plane gives the policy) and whether it changed since it was last read.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// The example policy that `meshward run` enforces when no --config is given.
pub const BUNDLED_EXAMPLE: &str = include_str!("../../../examples/mesh.yaml");
pub const BUNDLED_NAME: &str = "<bundled example examples/mesh.yaml>";
pub const NO_FILES: &str = "<no local files>";

pub struct ConfigSource {
    path: Option<PathBuf>,
    /// Without a path: the bundled example (true), or nothing at all (false: `--xds-address`
    /// without `--config`).
    bundled: bool,
    last_fingerprint: Option<u64>,
}

impl ConfigSource {
    /// `path`, else the bundled example.
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            bundled: true,
            last_fingerprint: None,
        }
    }

    /// `path`, else an empty config.
    pub fn or_empty(path: Option<PathBuf>) -> Self {
        Self {
            bundled: false,
            ..Self::new(path)
        }
    }

    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None if self.bundled => BUNDLED_NAME.to_string(),
            None => NO_FILES.to_string(),
        }
    }

    pub fn load(&mut self) -> Result<control::Config, control::Diagnostics> {
        self.last_fingerprint = self.fingerprint();
        match &self.path {
            Some(p) => control::load_config(p),
            None if self.bundled => control::load_config_str(BUNDLED_NAME, BUNDLED_EXAMPLE),
            None => Ok(control::Config::default()),
        }
    }

    /// True when the files differ from what `load` last read.
    pub fn changed(&self) -> bool {
        self.path.is_some() && self.fingerprint() != self.last_fingerprint
    }

    /// A hash of each config file's name, size, mtime and inode: cheap enough to take every
    /// watch interval, and it changes on every write, including atomic rename-into-place.
    fn fingerprint(&self) -> Option<u64> {
        let path = self.path.as_ref()?;
        let mut h = DefaultHasher::new();
        for file in config_files(path) {
            file.hash(&mut h);
            if let Ok(m) = std::fs::metadata(&file) {
                (m.len(), m.mtime(), m.mtime_nsec(), m.ino()).hash(&mut h);
            }
        }
        Some(h.finish())
    }
}

fn config_files(path: &Path) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_path_the_bundled_example_or_nothing() {
        let bundled = ConfigSource::new(None).load().expect("bundled example");
        assert!(!bundled.workloads.is_empty());
        let mut empty = ConfigSource::or_empty(None);
        let config = empty.load().expect("empty");
        assert!(config.workloads.is_empty());
        assert!(config.egress_policies.is_empty() && config.authorization_policies.is_empty());
        assert_eq!(empty.describe(), NO_FILES);
        assert!(!empty.changed());
    }
}
