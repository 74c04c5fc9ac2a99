//! The agent under test: a `meshward run` started by the runner, with its own pin directory,
//! admin port and config directory, reloaded by SIGHUP only (so no reload happens that the
//! runner did not ask for).

use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

pub struct Agent {
    child: Option<Child>,
    exe: PathBuf,
    pub config_file: PathBuf,
    pub pin_path: PathBuf,
    pub admin: SocketAddr,
    pub log: PathBuf,
    xds: Option<String>,
}

/// How the agent came out of a config change.
pub enum Applied {
    Ok,
    Rejected(String),
    /// The delivery has no form for these policies (none is known today): the case is
    /// skipped in this mode, with the reason.
    Unsupported(String),
}

impl Agent {
    pub fn start(exe: &Path, scratch: &Path, run_id: &str, xds: Option<String>) -> Result<Self> {
        let config_file = scratch.join("config").join("case.yaml");
        fs::create_dir_all(config_file.parent().expect("has parent"))?;
        write_atomic(&config_file, "")?;
        let mut agent = Self {
            child: None,
            exe: exe.to_path_buf(),
            config_file,
            pin_path: PathBuf::from(format!("/sys/fs/bpf/meshward-conformance-{run_id}")),
            admin: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            log: scratch.join("agent.log"),
            xds,
        };
        agent.spawn()?;
        Ok(agent)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context("agent log")?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("run")
            .arg("--config")
            .arg(self.config_file.parent().expect("has parent"))
            .arg("--pin-path")
            .arg(&self.pin_path)
            .args(["--admin-addr", &self.admin.to_string()])
            .arg("--tls-posture")
            // Reloads come from SIGHUP, never from a timer the runner cannot see.
            .args(["--watch-interval-ms", "86400000"])
            .env("MESHWARD_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(addr) = &self.xds {
            cmd.args(["--xds-address", addr, "--node-id", "meshward-conformance"]);
        }
        self.child = Some(cmd.spawn().context("start meshward run")?);
        // A config refused at start leaves the pinned policy in force: any finished reload will do.
        self.wait("the agent to start", |h| h["last_reload"].is_object())?;
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, as a crash: pinned programs and maps stay and keep enforcing.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// Replaces the config file, signals a reload and waits for its outcome.
    pub fn apply_file(&mut self, text: &str) -> Result<Applied> {
        let before = self.health()?;
        write_atomic(&self.config_file, text)?;
        let pid = self.child.as_ref().context("agent is not running")?.id() as i32;
        // SAFETY: plain kill(2).
        unsafe { libc::kill(pid, libc::SIGHUP) };
        let (gen0, at0) = (
            before["generation"].clone(),
            before["last_reload"]["at"].clone(),
        );
        let h = self.wait("the reload", |h| {
            h["generation"] != gen0 || h["last_reload"]["at"] != at0
        })?;
        Ok(reload_outcome(&h))
    }

    pub fn health(&self) -> Result<Value> {
        self.json("/healthz")
    }

    pub fn json(&self, path: &str) -> Result<Value> {
        let mut last = None;
        for _ in 0..3 {
            match http_get(self.admin, path) {
                Ok(body) => {
                    return serde_json::from_str(&body).context("JSON from the admin endpoint");
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(anyhow!("GET {path}: {:?}", last))
    }

    fn wait(&mut self, what: &str, ready: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                bail!(
                    "the agent exited ({status}) while waiting for {what}; log: {}",
                    self.log.display()
                );
            }
            if let Ok(h) = self.health()
                && ready(&h)
            {
                return Ok(h);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for {what}; agent log: {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        // The pins hold the programs on the case cgroups: remove them with the agent.
        let _ = Command::new(&self.exe)
            .arg("uninstall")
            .arg("--pin-path")
            .arg(&self.pin_path)
            .output();
    }
}

fn reload_outcome(h: &Value) -> Applied {
    let r = &h["last_reload"];
    if r["ok"] == true {
        Applied::Ok
    } else {
        let errors: Vec<String> = r["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect();
        Applied::Rejected(errors.join("; "))
    }
}

/// Writes a temporary file and renames it over `path`: the agent never reads half a config.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: meshward\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(head.to_string()));
    }
    Ok(body.to_string())
}
