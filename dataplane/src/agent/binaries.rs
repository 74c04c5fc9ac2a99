//! Resolves `spec.binaries` patterns to executable files (device, inode), the identity the
//! kernel reads from a process (its mm->exe_file). Exact paths follow symlinks to the file they
//! name; `prefix*` takes every file under the prefix's directory whose path starts with it.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use control::{BinaryResolutions, FileId};

/// Files examined per `prefix*` pattern at most, so a pattern like `/*` cannot stall the agent.
const MAX_FILES_PER_PREFIX: usize = 4096;

pub fn resolve<'a>(patterns: impl IntoIterator<Item = &'a String>) -> BinaryResolutions {
    patterns
        .into_iter()
        .map(|p| {
            let files = match p.strip_suffix('*') {
                Some(prefix) => files_under(prefix),
                None => file_id(Path::new(p)).into_iter().collect(),
            };
            (p.clone(), files)
        })
        .collect()
}

/// The identity of the file `path` names, as the kernel encodes it (`MKDEV(major, minor)` is
/// major << 20 | minor; user space's st_dev uses another encoding).
pub fn file_id(path: &Path) -> Option<FileId> {
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    let dev = meta.dev();
    let kernel_dev = (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev));
    Some((kernel_dev, meta.ino()))
}

fn files_under(prefix: &str) -> Vec<FileId> {
    let dir = match prefix.rfind('/') {
        Some(i) => PathBuf::from(&prefix[..=i]),
        None => return Vec::new(),
    };
    let mut out = Vec::new();
    let mut stack = vec![dir];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_FILES_PER_PREFIX {
                tracing::warn!(
                    prefix,
                    "binary prefix names more than {MAX_FILES_PER_PREFIX} files; the rest are ignored"
                );
                return out;
            }
            let path = e.path();
            if !path.to_string_lossy().starts_with(prefix)
                && !prefix.starts_with(&*path.to_string_lossy())
            {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                _ => out
                    .extend(file_id(&path).filter(|_| path.to_string_lossy().starts_with(prefix))),
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}
