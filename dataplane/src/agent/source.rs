//! Where the local config comes from (a file, a directory, the bundled example, or nothing when
//! a control plane gives the policy) and whether it changed since it was last read.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

/// A file modified less than this long ago may be half written (an editor or a script that
/// truncates, then writes): a file change is read once every file has been quiet this long.
/// A truncated file is a valid, empty config; applying it would lift every policy.
pub const SETTLE: Duration = Duration::from_millis(250);

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
        self.last_fingerprint = self.scan().map(|s| s.fingerprint);
        match &self.path {
            Some(p) => control::load_config(p),
            None if self.bundled => control::load_config_str(BUNDLED_NAME, BUNDLED_EXAMPLE),
            None => Ok(control::Config::default()),
        }
    }

    /// True when the files differ from what `load` last read and have settled ([`SETTLE`]).
    pub fn changed(&self) -> bool {
        self.scan().is_some_and(|scan| {
            Some(scan.fingerprint) != self.last_fingerprint && scan.settled(SystemTime::now())
        })
    }

    /// A hash of each config file's name, size, mtime and inode — cheap enough to take every
    /// watch interval, and it changes on every write, including atomic rename-into-place — and
    /// the newest mtime.
    fn scan(&self) -> Option<Scan> {
        let path = self.path.as_ref()?;
        let mut h = DefaultHasher::new();
        let mut newest = SystemTime::UNIX_EPOCH;
        for file in config_files(path) {
            file.hash(&mut h);
            if let Ok(m) = std::fs::metadata(&file) {
                (m.len(), m.mtime(), m.mtime_nsec(), m.ino()).hash(&mut h);
                newest = newest.max(m.modified().unwrap_or(SystemTime::UNIX_EPOCH));
            }
        }
        Some(Scan {
            fingerprint: h.finish(),
            newest,
        })
    }
}

struct Scan {
    fingerprint: u64,
    newest: SystemTime,
}

impl Scan {
    /// A modification time in the future (a skewed clock) counts as settled: waiting for it
    /// could stall reloads for good.
    fn settled(&self, now: SystemTime) -> bool {
        now.duration_since(self.newest)
            .map_or(true, |age| age >= SETTLE)
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

    #[test]
    fn a_change_is_read_once_the_file_has_settled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mesh.yaml");
        let aged = |file: &Path| {
            let old = SystemTime::now() - 2 * SETTLE;
            let f = std::fs::File::options()
                .write(true)
                .open(file)
                .expect("open");
            f.set_modified(old).expect("set mtime");
        };
        std::fs::write(&path, "").expect("write");
        aged(&path);
        let mut source = ConfigSource::new(Some(path.clone()));
        source.load().expect("empty file");
        assert!(!source.changed());
        // Half written: just truncated and rewritten, still being written for all we know.
        std::fs::write(&path, "# being written\n").expect("write");
        assert!(!source.changed(), "a file modified just now was read");
        aged(&path);
        assert!(source.changed(), "a settled change was not seen");
        source.load().expect("comment only");
        assert!(!source.changed());
    }
}
