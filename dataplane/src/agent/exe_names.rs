//! Executable identities (device, inode as the kernel numbers them) → paths, for the binary
//! column of posture rows. Learned from the executables of running processes (/proc/<pid>/exe)
//! and the files of the agent's PATH directories (short-lived tools such as curl have exited by
//! the time a row is read), rescanned at most once a second when an unknown identity shows up.
//! An identity found nowhere stays unknown (shown as null), never guessed.

use std::{
    collections::HashMap,
    fs,
    path::Path,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use super::binaries::file_id;

const RESCAN_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Cache {
    paths: HashMap<(u64, u64), String>,
    scanned: Option<Instant>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The path of the executable `(dev, ino)`, if a process running it was seen.
pub fn path_of(dev: u64, ino: u64) -> Option<String> {
    if dev == 0 && ino == 0 {
        return None;
    }
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = c.paths.get(&(dev, ino)) {
        return Some(p.clone());
    }
    if c.scanned.is_some_and(|t| t.elapsed() < RESCAN_EVERY) {
        return None;
    }
    c.scanned = Some(Instant::now());
    scan(&mut c.paths);
    c.paths.get(&(dev, ino)).cloned()
}

fn scan(into: &mut HashMap<(u64, u64), String>) {
    scan_processes(into);
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            // Symlinks (python3 → python3.11) are named by the file they lead to.
            let Ok(file) = fs::canonicalize(entry.path()) else {
                continue;
            };
            if let Some(id) = file_id(&file) {
                into.entry(id)
                    .or_insert_with(|| file.to_string_lossy().into_owned());
            }
        }
    }
}

fn scan_processes(into: &mut HashMap<(u64, u64), String>) {
    let Ok(dir) = fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.filter_map(Result::ok) {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let exe = Path::new("/proc").join(&name).join("exe");
        let (Some(id), Ok(target)) = (file_id(&exe), fs::read_link(&exe)) else {
            continue;
        };
        into.entry(id)
            .or_insert_with(|| target.to_string_lossy().into_owned());
    }
}
