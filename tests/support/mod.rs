//! Harness for end-to-end tests on the real kernel, as root. Every test makes its own cgroups,
//! pin directory, admin port and scratch directory, and removes them on drop (also on panic).
//! Programs are attached only to cgroups the test created.
#![allow(dead_code)]

pub mod tls;

use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const MESHWARD: &str = env!("CARGO_BIN_EXE_meshward");
const PROBE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/probe.py");
pub const PYTHON: &str = "/usr/bin/python3";

/// Fails (never skips) when the kernel tests cannot run.
pub fn require_root() {
    // SAFETY: no arguments.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "kernel tests need root (CI runs them as root); run `sudo scripts/test.sh`"
    );
}

fn unique(test: &str) -> String {
    format!("meshward-test-{}-{test}", std::process::id())
}

pub fn cgroup2_root() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mounts").expect("read mounts");
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("cgroup2 is mounted")
}

/// A directory of cgroups for one test: `<cgroup2>/meshward-test-<pid>-<test>/`.
pub struct CgroupTree {
    root: PathBuf,
    rel: String,
}

impl CgroupTree {
    pub fn new(test: &str) -> Self {
        require_root();
        let rel = unique(test);
        let root = cgroup2_root().join(&rel);
        fs::create_dir_all(&root).expect("create test cgroup");
        Self { root, rel }
    }

    /// Creates `name` (may contain '/') and returns its path relative to the cgroup2 mount,
    /// as `meshward.io/cgroup` wants it.
    pub fn child(&self, name: &str) -> String {
        fs::create_dir_all(self.root.join(name)).expect("create child cgroup");
        format!("{}/{name}", self.rel)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        cgroup2_root().join(rel)
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.root);
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for _ in 0..50 {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` with its process moved into the cgroup `rel` before exec.
pub fn in_cgroup(cmd: &mut Command, rel: &str) -> Child {
    let procs = fs::OpenOptions::new()
        .write(true)
        .open(cgroup2_root().join(rel).join("cgroup.procs"))
        .expect("open cgroup.procs");
    let fd = procs.as_raw_fd();
    // SAFETY: only async-signal-safe calls (write) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn in cgroup");
    drop(procs);
    child
}

/// connect() (tcp) or sendto() (udp) from inside cgroup `rel`; "ok" or the errno name.
pub fn probe(rel: &str, kind: &str, dst: SocketAddr) -> String {
    probe_with(Path::new(PYTHON), rel, kind, dst)
}

/// The same probe run by another Python executable (process-aware rules).
pub fn probe_with(python: &Path, rel: &str, kind: &str, dst: SocketAddr) -> String {
    let mut cmd = Command::new(python);
    cmd.args([PROBE, kind, &dst.ip().to_string(), &dst.port().to_string()]);
    let child = in_cgroup(cmd.stdout(Stdio::piped()), rel);
    finish_probe(child)
}

/// The same probe from the test's own (ungoverned) cgroup.
pub fn probe_outside(kind: &str, dst: SocketAddr) -> String {
    let child = probe_command(kind, dst)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn probe");
    finish_probe(child)
}

fn probe_command(kind: &str, dst: SocketAddr) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.args([PROBE, kind, &dst.ip().to_string(), &dst.port().to_string()]);
    cmd
}

fn finish_probe(child: Child) -> String {
    let out = child.wait_with_output().expect("probe runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A TCP listener that accepts and drops connections, so allowed connects get "ok".
pub fn listener(ip: &str) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind((ip, 0)).expect("bind listener");
    let addr = l.local_addr().expect("local addr");
    let h = std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    (addr, h)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A scratch directory under /tmp, removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(test));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Self { dir }
    }

    /// Writes the file atomically ([`write_atomic`]).
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        write_atomic(&p, text);
        p
    }
}

/// Replaces `path` atomically (a temporary file renamed over it), as config management does:
/// an agent watching the file must never read it half-written — a truncated config is a valid,
/// empty one, and would be applied.
pub fn write_atomic(path: &Path, text: impl AsRef<[u8]>) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("config");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&tmp, text).expect("write config file");
    fs::rename(&tmp, path).expect("rename config file into place");
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A running `meshward run`, with its own pin directory and admin port.
pub struct Agent {
    child: Option<Child>,
    pub pin_path: PathBuf,
    pub admin: SocketAddr,
    log: PathBuf,
    config: PathBuf,
    extra: Vec<String>,
}

impl Agent {
    /// Starts an agent on `config` and waits until it has applied a policy.
    pub fn start(test: &str, config: &Path, extra: &[&str]) -> Self {
        require_root();
        let pin_path = PathBuf::from("/sys/fs/bpf").join(unique(test));
        let mut agent = Self {
            child: None,
            pin_path,
            admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
            log: std::env::temp_dir().join(format!("{}.log", unique(test))),
            config: config.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        agent.spawn();
        agent.wait_until("first policy applied", |h| h["status"] == "ok");
        agent
    }

    /// Starts another agent process on the same pins (restart after a crash).
    pub fn restart(&mut self) {
        self.spawn();
        self.wait_until("policy applied after restart", |h| h["status"] == "ok");
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(MESHWARD);
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--pin-path")
            .arg(&self.pin_path)
            .arg("--admin-addr")
            .arg(self.admin.to_string())
            .args(&self.extra)
            .env("MESHWARD_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        if !self.extra.iter().any(|a| a == "--watch-interval-ms") {
            cmd.args(["--watch-interval-ms", "200"]);
        }
        self.child = Some(cmd.spawn().expect("start meshward"));
    }

    /// Starts another agent process on the same pins with other flags.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// SIGKILL: no cleanup at all, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn sighup(&self) {
        let pid = self.child.as_ref().expect("agent running").id() as i32;
        // SAFETY: plain kill(2).
        unsafe { libc::kill(pid, libc::SIGHUP) };
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET from the admin endpoint; a transient connection error (a busy 2-core machine
    /// running tests in parallel) is retried twice before the test fails.
    pub fn get(&self, path: &str) -> String {
        let mut last = None;
        for _ in 0..3 {
            match http_get(self.admin, path) {
                Ok(body) => return body,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("GET {path}: {:?}\nagent log:\n{}", last, self.log())
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.get(path)).expect("JSON from admin endpoint")
    }

    /// Waits (30 s, or MESHWARD_WAIT_SECS) until /healthz satisfies `pred`; panics with the
    /// agent's log otherwise.
    pub fn wait_until(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let limit = std::env::var("MESHWARD_WAIT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30);
        let deadline = Instant::now() + Duration::from_secs(limit);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "agent exited ({status}) while waiting for {what}\n{}",
                    self.log()
                );
            }
            let health = http_get(self.admin, "/healthz")
                .ok()
                .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok());
            if let Some(h) = health.filter(|h| pred(h)) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of one Prometheus sample whose labels include all of `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let text = self.get("/metrics");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .find_map(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        let _ = fs::remove_dir_all(&self.pin_path);
        if !std::thread::panicking() {
            let _ = fs::remove_file(&self.log);
        }
    }
}

pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("{head}\n{body}")));
    }
    Ok(body.to_string())
}

/// A WorkloadEntry document for a local workload in cgroup `rel`.
pub fn workload(ns: &str, name: &str, app: &str, rel: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations:\n    meshward.io/cgroup: {rel}\nspec:\n  serviceAccount: {name}\n  labels:\n    app: {app}\n---\n"
    )
}

/// An EgressPolicy document; `rules` is the YAML list under spec.rules (indented by 2).
pub fn egress(ns: &str, name: &str, app: Option<&str>, action: &str, rules: &str) -> String {
    let selector = app
        .map(|a| format!("  selector:\n    matchLabels:\n      app: {a}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{selector}  action: {action}\n  rules:\n{rules}---\n"
    )
}

/// A dnsmasq on 127.0.0.1:<port> answering `name → ip` pairs, stopped on drop.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
}

impl Dnsmasq {
    pub fn start(records: &[(&str, &str)], ttl: u32) -> Self {
        Self::start_on(free_port(), records, ttl)
    }

    /// With dnsmasq options of the test's own (`--cname=…`, `--host-record=…`, `--address=…`).
    pub fn start_with(options: &[String], ttl: u32) -> Self {
        Self::spawn(free_port(), &[], options, ttl)
    }

    /// On a given port: a replacement server with other answers, at the address clients know.
    pub fn start_on(port: u16, records: &[(&str, &str)], ttl: u32) -> Self {
        Self::spawn(port, records, &[], ttl)
    }

    fn spawn(port: u16, records: &[(&str, &str)], options: &[String], ttl: u32) -> Self {
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--local-ttl={ttl}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        for (name, ip) in records {
            cmd.arg(format!("--address=/{name}/{ip}"));
        }
        cmd.args(options);
        let child = cmd
            .spawn()
            .expect("dnsmasq is installed (scripts/bootstrap.sh)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "dnsmasq did not start on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, addr }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two network namespaces joined by a veth pair: a client host and a server host, with
/// addresses from 198.18.0.0/15 (reserved for benchmarking/test networks). Removed on drop.
pub struct NetPair {
    pub client_ns: String,
    pub server_ns: String,
    pub client_ip: &'static str,
    pub server_ip: &'static str,
}

impl NetPair {
    pub fn new(test: &str) -> Self {
        require_root();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{:x}{n}", std::process::id() & 0xffff);
        let pair = Self {
            client_ns: format!("{}-c", unique(test)),
            server_ns: format!("{}-s", unique(test)),
            client_ip: "198.18.0.1",
            server_ip: "198.18.0.2",
        };
        let (vc, vs) = (format!("mwc{tag}"), format!("mws{tag}"));
        for cmd in [
            format!("ip netns add {}", pair.client_ns),
            format!("ip netns add {}", pair.server_ns),
            format!(
                "ip link add {vc} netns {} type veth peer name {vs} netns {}",
                pair.client_ns, pair.server_ns
            ),
            format!(
                "ip -n {} addr add {}/24 dev {vc}",
                pair.client_ns, pair.client_ip
            ),
            format!(
                "ip -n {} addr add {}/24 dev {vs}",
                pair.server_ns, pair.server_ip
            ),
            format!("ip -n {} link set {vc} up", pair.client_ns),
            format!("ip -n {} link set {vs} up", pair.server_ns),
            format!("ip -n {} link set lo up", pair.client_ns),
            format!("ip -n {} link set lo up", pair.server_ns),
        ] {
            run(&cmd);
        }
        pair
    }

    pub fn netns_path(ns: &str) -> PathBuf {
        PathBuf::from("/var/run/netns").join(ns)
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn run(cmd: &str) {
    let parts: Vec<&str> = cmd.split_whitespace().collect();
    let out = Command::new(parts[0])
        .args(&parts[1..])
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Spawns `cmd` inside network namespace `ns` and, if given, cgroup `rel`.
pub fn in_netns(cmd: &mut Command, ns: &str, rel: Option<&str>) -> Child {
    let netns = fs::File::open(NetPair::netns_path(ns)).expect("open netns");
    let net_fd = netns.as_raw_fd();
    let procs = rel.map(|rel| {
        fs::OpenOptions::new()
            .write(true)
            .open(cgroup2_root().join(rel).join("cgroup.procs"))
            .expect("open cgroup.procs")
    });
    let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
    // SAFETY: only async-signal-safe calls (setns, write) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(net_fd, libc::CLONE_NEWNET) != 0 {
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
    let child = cmd.spawn().expect("spawn in netns");
    drop((netns, procs));
    child
}

/// A TCP server in a netns (and cgroup) that logs every accepted peer; killed on drop.
pub struct Server {
    child: Child,
    log: PathBuf,
    pub port: u16,
}

impl Server {
    pub fn start(ns: &str, rel: Option<&str>, port: u16, scratch: &Scratch) -> Self {
        let log = scratch.dir.join(format!("server-{port}.log"));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/server.py");
        let mut cmd = Command::new(PYTHON);
        cmd.args([script, &port.to_string(), log.to_str().expect("utf-8 path")]);
        let child = in_netns(&mut cmd, ns, rel);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("listening")
        {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, log, port }
    }

    /// Peers whose connections the server accepted.
    pub fn accepted(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("accepted ").map(str::to_string))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// connect() from inside netns `ns` (and cgroup `rel`); the errno name or "ok", and how long
/// the whole probe took.
pub fn probe_in_netns(ns: &str, rel: Option<&str>, dst: SocketAddr) -> (String, Duration) {
    let start = Instant::now();
    let mut cmd = probe_command("tcp", dst);
    let child = in_netns(cmd.stdout(Stdio::piped()), ns, rel);
    let out = finish_probe(child);
    (out, start.elapsed())
}

/// A long-lived prober process (tests/support/prober.py) in a cgroup and/or netns: one real
/// connect() per request, without a process start per probe.
pub struct Prober {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Prober {
    pub fn start(netns: Option<&str>, rel: Option<&str>) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/prober.py");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(script).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = match (netns, rel) {
            (Some(ns), rel) => in_netns(&mut cmd, ns, rel),
            (None, Some(rel)) => in_cgroup(&mut cmd, rel),
            (None, None) => cmd.spawn().expect("spawn prober"),
        };
        let stdin = child.stdin.take().expect("stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// "ok" or the errno name of connect()/sendto() from `src` (None = unbound) to `dst`.
    pub fn probe(&mut self, kind: &str, src: Option<std::net::IpAddr>, dst: SocketAddr) -> String {
        self.probe_with_port(kind, src, dst).0
    }

    /// As [`Prober::probe`], with the local port the probe used when `src` was given (0 if not).
    pub fn probe_with_port(
        &mut self,
        kind: &str,
        src: Option<std::net::IpAddr>,
        dst: SocketAddr,
    ) -> (String, u16) {
        use std::io::BufRead;
        let src = src.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
        writeln!(self.stdin, "{kind} {src} {} {}", dst.ip(), dst.port()).expect("write to prober");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from prober");
        let mut words = line.split_whitespace();
        let result = words.next().unwrap_or("").to_string();
        (
            result,
            words.next().and_then(|p| p.parse().ok()).unwrap_or(0),
        )
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small deterministic PRNG (xorshift64*) so a failing seed can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Summed (run_time_ns, run_cnt) of every loaded program with this name (bpf_stats must be on):
/// the benchmarks' measure of a program's own cost.
pub fn program_stats(name: &str) -> (u64, u64) {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str() == Some(name))
        .fold((0, 0), |(t, c), p| {
            (t + p.run_time().as_nanos() as u64, c + p.run_count())
        })
}
