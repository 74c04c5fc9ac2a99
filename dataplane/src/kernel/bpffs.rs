//! The pin directory on a BPF file system: mounted on demand, created, and removed on uninstall.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

const BPF_FS_MAGIC: i64 = 0xcafe4a11;
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/meshward";

/// Layout under the pin directory: `maps/` (by name), `links/` (per cgroup and hook).
#[derive(Clone, Debug)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    /// Ensures `root`'s parent is on bpffs (mounting /sys/fs/bpf if it is not) and creates the layout.
    pub fn prepare(root: &Path) -> Result<Self> {
        let parent = root.parent().context("pin path has no parent")?;
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        if !is_bpffs(parent)? {
            mount_bpffs(parent)?;
        }
        let dir = Self {
            root: root.to_path_buf(),
        };
        for d in [dir.maps(), dir.links()] {
            std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
        }
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    /// True when an earlier agent left pinned maps behind (restart adoption).
    pub fn has_pinned_maps(&self) -> bool {
        std::fs::read_dir(self.maps())
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    }
}

/// Removes every pin: links detach, maps and programs are freed once no process holds them.
pub fn remove_all(root: &Path) -> Result<()> {
    if root.exists() {
        std::fs::remove_dir_all(root).with_context(|| format!("remove {}", root.display()))?;
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> Result<bool> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        bail!(
            "statfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

fn mount_bpffs(path: &Path) -> Result<()> {
    let target = CString::new(path.as_os_str().as_encoded_bytes())?;
    let fstype = CString::new("bpf")?;
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        bail!(
            "{} is not a BPF file system and mounting one there failed: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    tracing::info!(path = %path.display(), "mounted bpffs");
    Ok(())
}
