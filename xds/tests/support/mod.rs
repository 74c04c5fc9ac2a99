//! The test ADS server (`xds/tests/server.py`, grpcio + xds-protos) run as a child process, and
//! resources to feed it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xds::Resource;
use xds::proto::authorization::{self as authz, Authorization, Clause, Match, Rule};
use xds::proto::egress::{self, EgressPolicy};
use xds::proto::workload::{Address, Workload, address};

const PINNED: &str = "grpcio==1.85.1 xds-protos==1.85.0 protobuf==7.36.2 typing_extensions==4.16.0";

/// The Python that has grpcio and xds-protos: `MESHWARD_XDS_PYTHON`, else the virtualenv that
/// scripts/bootstrap.sh makes. Fails loudly, naming what is missing.
fn python() -> PathBuf {
    let venv = std::env::var_os("MESHWARD_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/meshward-tools"))
        })
        .unwrap_or_default()
        .join("xds-venv/bin/python");
    let python = std::env::var_os("MESHWARD_XDS_PYTHON").map_or(venv, PathBuf::from);
    let check = Command::new(&python)
        .args(["-c", "import grpc, envoy.service.discovery.v3.ads_pb2_grpc"])
        .output();
    match check {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "the xDS test server needs Python packages {PINNED}; {} lacks them:\n{}\ninstall with scripts/bootstrap.sh, or `{} -m pip install {PINNED}`",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim(),
            python.display()
        ),
        Err(e) => panic!(
            "the xDS test server needs a Python with {PINNED} at {} (set MESHWARD_XDS_PYTHON, or run scripts/bootstrap.sh to make it): {e}",
            python.display()
        ),
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One resource as the server gets it.
pub struct Res {
    pub name: String,
    pub version: String,
    pub bytes: Vec<u8>,
    /// Overrides the `Any` type URL (to send a wrong one).
    pub any_type_url: Option<String>,
}

impl Res {
    pub fn new(name: &str, version: &str, r: &Resource) -> Res {
        Res {
            name: name.to_string(),
            version: version.to_string(),
            bytes: r.to_any().value,
            any_type_url: None,
        }
    }

    pub fn raw(name: &str, version: &str, bytes: Vec<u8>, any_type_url: Option<&str>) -> Res {
        Res {
            name: name.to_string(),
            version: version.to_string(),
            bytes,
            any_type_url: any_type_url.map(str::to_string),
        }
    }
}

pub struct TestServer {
    pub port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Every event so far, and whether a test has taken it.
    events: Arc<Mutex<Vec<(Value, bool)>>>,
    seq: u64,
}

impl TestServer {
    pub async fn start(port: u16) -> TestServer {
        Self::start_with(port, &[]).await
    }

    /// With extra arguments for server.py (e.g. `--tls-cert`).
    pub async fn start_with(port: u16, args: &[&str]) -> TestServer {
        let mut server = Self::spawn(port, args);
        server
            .take("listening", |e| e["event"] == "listening")
            .await;
        server
    }

    /// A server that takes commands (`set`) but opens its port only on [`TestServer::serve`]:
    /// a restarted control plane that has its resources before any client connects.
    pub async fn start_held(port: u16) -> TestServer {
        let mut server = Self::spawn(port, &["--hold"]);
        server.take("held", |e| e["event"] == "held").await;
        server
    }

    /// Opens the port of a [`TestServer::start_held`] server.
    pub async fn serve(&mut self) {
        self.command(json!({"op": "serve"})).await;
        self.take("listening", |e| e["event"] == "listening").await;
    }

    fn spawn(port: u16, args: &[&str]) -> TestServer {
        // From the xds package or from another one of the workspace (tests/xds.rs).
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../xds/tests/server.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--port", &port.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/server.py");
        let stdout = child.stdout.take().expect("server stdout");
        let events: Arc<Mutex<Vec<(Value, bool)>>> = Arc::default();
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event =
                    serde_json::from_str(&line).unwrap_or(json!({"event": "raw", "line": line}));
                sink.lock().unwrap().push((event, false));
            }
        });
        TestServer {
            port,
            stdin: child.stdin.take(),
            child,
            events,
            seq: 0,
        }
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Takes the first event not taken yet for which `matches` holds, waiting up to 60 s.
    pub async fn take(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            {
                let mut events = self.events.lock().unwrap();
                if let Some((e, taken)) = events.iter_mut().find(|(e, taken)| !*taken && matches(e))
                {
                    *taken = true;
                    return e.clone();
                }
                if Instant::now() > deadline {
                    let seen: Vec<String> = events.iter().map(|(e, _)| e.to_string()).collect();
                    panic!(
                        "no `{what}` from the xDS server; its events:\n{}",
                        seen.join("\n")
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Takes the next ACK or NACK of `type_url`.
    pub async fn reply(&mut self, type_url: &str) -> Value {
        self.take(&format!("ACK or NACK of {type_url}"), |e| {
            e["event"] == "request" && e["type_url"] == type_url && e["kind"] != "subscribe"
        })
        .await
    }

    /// Takes the next ACK of `type_url`, failing on a NACK.
    pub async fn ack(&mut self, type_url: &str) -> Value {
        let e = self.reply(type_url).await;
        assert_eq!(e["kind"], "ack", "expected an ACK: {e}");
        e
    }

    /// Takes the next NACK of `type_url`, failing on an ACK.
    pub async fn nack(&mut self, type_url: &str) -> Value {
        let e = self.reply(type_url).await;
        assert_eq!(e["kind"], "nack", "expected a NACK: {e}");
        e
    }

    pub async fn subscription(&mut self, type_url: &str) -> Value {
        self.take(&format!("subscription to {type_url}"), |e| {
            e["event"] == "request" && e["type_url"] == type_url && e["kind"] == "subscribe"
        })
        .await
    }

    async fn command(&mut self, command: Value) {
        let seq = self.send(command);
        self.done(seq).await;
    }

    /// Hands `command` to the server without waiting for it; returns its sequence number.
    fn send(&mut self, mut command: Value) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        command["seq"] = json!(seq);
        let stdin = self.stdin.as_mut().expect("server stdin");
        writeln!(stdin, "{command}").expect("write to the xDS server");
        stdin.flush().expect("flush to the xDS server");
        seq
    }

    /// Waits until the server has carried out command `seq` (pushed it to every stream).
    pub async fn done(&mut self, seq: u64) {
        self.take("done", |e| e["event"] == "done" && e["seq"] == seq)
            .await;
    }

    /// Adds or replaces `resources` of `type_url` and removes `remove`; the server pushes.
    pub async fn set(&mut self, type_url: &str, resources: &[Res], remove: &[&str]) {
        let seq = self.set_nowait(type_url, resources, remove);
        self.done(seq).await;
    }

    /// As [`TestServer::set`], returning at once (for timing what follows); see
    /// [`TestServer::done`].
    pub fn set_nowait(&mut self, type_url: &str, resources: &[Res], remove: &[&str]) -> u64 {
        let resources: Vec<Value> = resources
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "version": r.version,
                    "value_hex": hex(&r.bytes),
                    "any_type_url": r.any_type_url,
                })
            })
            .collect();
        self.send(
            json!({"op": "set", "type_url": type_url, "resources": resources, "remove": remove}),
        )
    }

    /// Sends every stream a response of `type_url`, subscribed or not.
    pub async fn unsolicited(&mut self, type_url: &str) {
        self.command(json!({"op": "unsolicited", "type_url": type_url}))
            .await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A NAMESPACE-scoped DENY Authorization `ns/name` of one rule: traffic to `port`.
pub fn deny_port(ns: &str, name: &str, port: u32) -> Resource {
    Resource::Authorization(Authorization {
        name: name.into(),
        namespace: ns.into(),
        scope: authz::Scope::Namespace as i32,
        action: authz::Action::Deny as i32,
        rules: vec![Rule {
            clauses: vec![Clause {
                matches: vec![Match {
                    destination_ports: vec![port],
                    ..Default::default()
                }],
            }],
        }],
        dry_run: false,
    })
}

pub fn workload(uid: &str, ns: &str, name: &str, ip: [u8; 4]) -> Resource {
    Resource::Address(Address {
        r#type: Some(address::Type::Workload(Workload {
            uid: uid.into(),
            name: name.into(),
            namespace: ns.into(),
            addresses: vec![ip.to_vec()],
            ..Default::default()
        })),
    })
}

pub fn egress_allow(ns: &str, name: &str, host: &str) -> Resource {
    Resource::EgressPolicy(EgressPolicy {
        namespace: ns.into(),
        name: name.into(),
        selector: None,
        binaries: vec![],
        action: egress::Action::Allow as i32,
        rules: vec![egress::EgressRule {
            to: vec![egress::EgressTarget {
                hosts: vec![host.into()],
                ports: vec![443],
            }],
        }],
    })
}

/// Bytes that are no protobuf message (a field tag of wire type 7).
pub fn junk() -> Vec<u8> {
    vec![0x0f, 0xff, 0xff]
}

pub fn encode(r: &Resource) -> Vec<u8> {
    r.to_any().value
}
