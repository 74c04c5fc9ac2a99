//! Starting processes inside a case's network namespace and, for local workloads, its cgroup
//! (joined between fork and exec, so every socket the process opens is governed).

use std::{
    fs,
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::Path,
    process::{Child, Command},
};

use anyhow::{Context, Result};

pub fn spawn_in(cmd: &mut Command, netns: &Path, cgroup_procs: Option<&Path>) -> Result<Child> {
    let ns = fs::File::open(netns).with_context(|| format!("open {}", netns.display()))?;
    let procs = cgroup_procs
        .map(|p| {
            fs::OpenOptions::new()
                .write(true)
                .open(p)
                .with_context(|| format!("open {}", p.display()))
        })
        .transpose()?;
    let (ns_fd, procs_fd) = (ns.as_raw_fd(), procs.as_ref().map(|f| f.as_raw_fd()));
    // SAFETY: only async-signal-safe calls (setns, write) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = procs_fd
                && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("spawn {:?}", cmd.get_program()))?;
    drop((ns, procs));
    Ok(child)
}

/// Runs `f` on a thread that has entered the network namespace (setns is per thread).
pub fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let ns = fs::File::open(netns).with_context(|| format!("open {}", netns.display()))?;
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only; the fd is valid for the call.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(anyhow::anyhow!(
                "setns: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
}
