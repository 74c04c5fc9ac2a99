//! cgroup v2: where it is mounted and the id the kernel reports for a cgroup (its inode number).

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

/// Finds the cgroup2 mount point from /proc/self/mounts.
pub fn cgroup2_mount() -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("read /proc/self/mounts")?;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (_dev, dir, fstype) = (fields.next(), fields.next(), fields.next());
        if let (Some("cgroup2"), Some(dir)) = (fstype, dir) {
            return Ok(PathBuf::from(dir));
        }
    }
    bail!("no cgroup2 file system is mounted; meshward governs workloads by cgroup v2")
}

/// The cgroup id `bpf_get_current_cgroup_id()` returns for processes in `path`.
pub fn cgroup_id(path: &Path) -> Result<u64> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("stat cgroup {}", path.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a cgroup directory", path.display());
    }
    Ok(meta.ino())
}
