//! TLS peers' material and the posture they leave: a throwaway PKI (openssl), and the posture
//! records an agent reports for a workload.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use super::{Agent, Scratch};

/// A CA, and a server (`server.test`) and client (`client.test`) certificate it signed.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(scratch: &Scratch) -> Self {
        let dir = scratch.dir.clone();
        let sh = |cmd: &str| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(&dir)
                .output()
                .expect("sh");
            assert!(
                out.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -subj /CN=meshward-test-ca -days 2",
        );
        for name in ["server", "client"] {
            let cn = if name == "server" {
                "server.test"
            } else {
                "client.test"
            };
            sh(&format!(
                "openssl req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={cn} && \
                 printf 'subjectAltName=DNS:{cn}\\n' > {name}.ext && \
                 openssl x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out {name}.crt -days 2 -extfile {name}.ext"
            ));
        }
        Self { dir }
    }

    pub fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

/// The posture records of a workload, once at least `min` handshakes were counted.
pub fn records(agent: &Agent, workload: &str, min: u64) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let p = agent.json("/posture");
        let rows: Vec<serde_json::Value> = p["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["workload"] == workload)
            .cloned()
            .collect();
        let total: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap_or(0)).sum();
        if total >= min {
            return rows;
        }
        assert!(Instant::now() < deadline, "no posture for {workload}: {p}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
