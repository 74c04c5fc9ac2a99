//! The client against a real ADS server whose protocol stack meshward did not write
//! (`server.py`: grpcio + Envoy's generated services from xds-protos), in both ADS variants.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control::{Config, Settings};
use serde_json::json;
use support::{Res, TestServer, deny_port, egress_allow, free_port, junk, workload};
use xds::{
    Backoff, Client, ConnectionState, Mode, Options, ResourceType, StatusHandle, Update, sink_fn,
    to_config,
};

const ADDRESS: &str = "type.googleapis.com/istio.workload.Address";
const AUTHZ: &str = "type.googleapis.com/istio.security.Authorization";
const EGRESS: &str = "type.googleapis.com/meshward.v1alpha1.EgressPolicy";

/// Every configuration the sink accepted, in order.
#[derive(Clone, Default)]
struct Accepted(Arc<Mutex<Vec<Config>>>);

impl Accepted {
    fn last(&self) -> Config {
        self.0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("an accepted configuration")
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// `namespace/name` of every AuthorizationPolicy with its first port, as last accepted.
    fn authorizations(&self) -> BTreeMap<String, u16> {
        self.last()
            .authorization_policies
            .iter()
            .map(|p| {
                let port = p.rules[0]
                    .when
                    .first()
                    .map_or(0, |c| c.values[0].value.parse().unwrap_or(0));
                let port = p.rules[0].to.first().map_or(port, |o| o.ports[0].value);
                (format!("{}/{}", p.namespace, p.name), port)
            })
            .collect()
    }
}

/// Starts a client of `server` that converts every update with `to_config` (an invalid one is
/// NACKed) and records what it accepts.
fn start_client(
    server: &TestServer,
    mode: Mode,
) -> (Accepted, StatusHandle, tokio::task::JoinHandle<()>) {
    let mut options = Options::new(server.address(), "node-1");
    options.mode = mode;
    options
        .node_metadata
        .insert("NAMESPACE".into(), "meshward-system".into());
    options.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
    };
    let client = Client::new(options).expect("client options");
    let status = client.status();
    let accepted = Accepted::default();
    let record = accepted.clone();
    let sink = sink_fn(move |update: Update<'_>| {
        let config = to_config(update.snapshot, &Settings::default())?;
        record.0.lock().unwrap().push(config);
        Ok(())
    });
    let task = tokio::spawn(async move {
        client.run(sink).await;
    });
    (accepted, status, task)
}

async fn initial_state(server: &mut TestServer) {
    server
        .set(
            AUTHZ,
            &[
                Res::new("ns1/a", "v1", &deny_port("ns1", "a", 80)),
                Res::new("ns1/b", "v1", &deny_port("ns1", "b", 81)),
            ],
            &[],
        )
        .await;
    server
        .set(
            ADDRESS,
            &[Res::new(
                "uid-w1",
                "v1",
                &workload("uid-w1", "ns1", "w1", [10, 0, 0, 1]),
            )],
            &[],
        )
        .await;
    server
        .set(
            EGRESS,
            &[Res::new(
                "ns1/e1",
                "v1",
                &egress_allow("ns1", "e1", "example.com"),
            )],
            &[],
        )
        .await;
}

/// Waits for the subscription and first ACK of every type.
async fn synced(server: &mut TestServer) {
    for t in [ADDRESS, AUTHZ, EGRESS] {
        let sub = server.subscription(t).await;
        assert_eq!(sub["node_id"], "node-1", "{sub}");
        assert_eq!(
            sub["node_metadata"]["NAMESPACE"], "meshward-system",
            "{sub}"
        );
        server.ack(t).await;
    }
}

fn authz(pairs: &[(&str, u16)]) -> BTreeMap<String, u16> {
    pairs.iter().map(|(n, p)| (n.to_string(), *p)).collect()
}

async fn sync_add_update_remove(mode: Mode) {
    let mut server = TestServer::start(free_port()).await;
    initial_state(&mut server).await;
    let (accepted, status, task) = start_client(&server, mode);
    synced(&mut server).await;
    assert_eq!(
        accepted.authorizations(),
        authz(&[("ns1/a", 80), ("ns1/b", 81)])
    );
    let config = accepted.last();
    assert_eq!(config.workloads.len(), 1);
    assert_eq!(
        config.workloads[0].address,
        Some("10.0.0.1".parse().unwrap())
    );
    assert_eq!(config.egress_policies.len(), 1);
    let s = status.get();
    assert_eq!(s.state, ConnectionState::Connected);
    assert_eq!(
        s.types[&ResourceType::Authorization]
            .last_acked_version
            .as_deref(),
        Some("1")
    );
    assert_eq!(s.types[&ResourceType::Authorization].resources, 2);

    // Update a, add c, remove b, in one push.
    server
        .set(
            AUTHZ,
            &[
                Res::new("ns1/a", "v2", &deny_port("ns1", "a", 8080)),
                Res::new("ns1/c", "v1", &deny_port("ns1", "c", 82)),
            ],
            &["ns1/b"],
        )
        .await;
    let ack = server.ack(AUTHZ).await;
    assert_eq!(ack["response_version"], "2");
    assert_eq!(
        accepted.authorizations(),
        authz(&[("ns1/a", 8080), ("ns1/c", 82)])
    );
    // Remove the only workload.
    server.set(ADDRESS, &[], &["uid-w1"]).await;
    server.ack(ADDRESS).await;
    assert!(accepted.last().workloads.is_empty());
    assert_eq!(
        accepted.last().authorization_policies.len(),
        2,
        "other types are kept"
    );
    let s = status.get();
    assert_eq!(
        s.types[&ResourceType::Authorization]
            .last_acked_version
            .as_deref(),
        Some("2")
    );
    assert_eq!(s.types[&ResourceType::Address].resources, 0);
    assert_eq!(s.nacks, 0);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_initial_sync_add_update_remove() {
    sync_add_update_remove(Mode::Delta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_initial_sync_add_update_remove() {
    sync_add_update_remove(Mode::Sotw).await;
}

async fn nack_then_fix(mode: Mode) {
    let mut server = TestServer::start(free_port()).await;
    initial_state(&mut server).await;
    let (accepted, status, task) = start_client(&server, mode);
    synced(&mut server).await;
    let applied = accepted.count();

    // An invalid field: port 0.
    server
        .set(
            AUTHZ,
            &[Res::new("ns1/bad", "v1", &deny_port("ns1", "bad", 0))],
            &[],
        )
        .await;
    let nack = server.nack(AUTHZ).await;
    let detail = nack["error_detail"].as_str().unwrap_or_default();
    assert_eq!(
        detail,
        "Authorization ns1/bad: rules[0].clauses[0].matches[0].destination_ports[0]: port 0 is out of range (1-65535)"
    );
    assert_eq!(nack["error_code"], 3, "INVALID_ARGUMENT");
    if mode == Mode::Sotw {
        assert_eq!(
            nack["version_info"], "1",
            "a SotW NACK repeats the accepted version"
        );
    }
    assert_eq!(
        accepted.count(),
        applied,
        "a NACKed response is never applied"
    );
    let s = status.get();
    assert_eq!(s.nacks, 1);
    assert_eq!(
        s.types[&ResourceType::Authorization]
            .last_nack_reason
            .as_deref(),
        Some(detail)
    );
    assert_eq!(
        s.types[&ResourceType::Authorization]
            .last_acked_version
            .as_deref(),
        Some("1")
    );

    // Its fix is accepted, and builds on the last accepted state.
    server
        .set(
            AUTHZ,
            &[Res::new("ns1/bad", "v2", &deny_port("ns1", "bad", 8443))],
            &[],
        )
        .await;
    server.ack(AUTHZ).await;
    assert_eq!(
        accepted.authorizations(),
        authz(&[("ns1/a", 80), ("ns1/b", 81), ("ns1/bad", 8443)])
    );

    // Bytes that are no Authorization.
    server
        .set(AUTHZ, &[Res::raw("ns1/junk", "v1", junk(), None)], &[])
        .await;
    let nack = server.nack(AUTHZ).await;
    let detail = nack["error_detail"].as_str().unwrap_or_default();
    assert!(detail.contains("cannot decode Authorization"), "{detail}");
    if mode == Mode::Delta {
        assert!(detail.starts_with("Authorization ns1/junk: "), "{detail}");
    }
    server.set(AUTHZ, &[], &["ns1/junk"]).await;
    server.ack(AUTHZ).await;

    // An Any of a type nobody knows.
    let odd = Res::raw(
        "ns1/odd",
        "v1",
        vec![],
        Some("type.googleapis.com/unknown.Thing"),
    );
    server.set(AUTHZ, &[odd], &[]).await;
    let nack = server.nack(AUTHZ).await;
    let detail = nack["error_detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("unknown type URL `type.googleapis.com/unknown.Thing`"),
        "{detail}"
    );
    server.set(AUTHZ, &[], &["ns1/odd"]).await;
    server.ack(AUTHZ).await;

    // A response of a type the client did not subscribe to.
    server
        .unsolicited("type.googleapis.com/unknown.Other")
        .await;
    let nack = server.nack("type.googleapis.com/unknown.Other").await;
    assert_eq!(
        nack["error_detail"],
        "type.googleapis.com/unknown.Other: unknown type URL: not subscribed"
    );

    // An EgressPolicy with an unknown action, then its fix.
    let mut bad = egress_allow("ns1", "e2", "example.org");
    if let xds::Resource::EgressPolicy(e) = &mut bad {
        e.action = 9;
    }
    server
        .set(EGRESS, &[Res::new("ns1/e2", "v1", &bad)], &[])
        .await;
    let nack = server.nack(EGRESS).await;
    assert_eq!(
        nack["error_detail"],
        "EgressPolicy ns1/e2: action: unknown value 9 (expected ALLOW, DENY or AUDIT)"
    );
    server
        .set(
            EGRESS,
            &[Res::new(
                "ns1/e2",
                "v2",
                &egress_allow("ns1", "e2", "example.org"),
            )],
            &[],
        )
        .await;
    server.ack(EGRESS).await;
    assert_eq!(accepted.last().egress_policies.len(), 2);
    assert_eq!(
        accepted.authorizations(),
        authz(&[("ns1/a", 80), ("ns1/b", 81), ("ns1/bad", 8443)])
    );
    assert_eq!(status.get().nacks, 5);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_nack_of_malformed_resources_then_ack_of_their_fix() {
    nack_then_fix(Mode::Delta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_nack_of_malformed_resources_then_ack_of_their_fix() {
    nack_then_fix(Mode::Sotw).await;
}

async fn server_restart(mode: Mode) {
    let port = free_port();
    let mut server = TestServer::start(port).await;
    initial_state(&mut server).await;
    let (accepted, status, task) = start_client(&server, mode);
    synced(&mut server).await;
    assert_eq!(status.get().connections, 1);

    drop(server);
    let down = status
        .wait_for(|s| s.state == ConnectionState::Connecting && s.last_error.is_some())
        .await
        .expect("status");
    assert!(down.last_error.is_some());
    // The last good state stays while the server is away.
    assert_eq!(
        accepted.authorizations(),
        authz(&[("ns1/a", 80), ("ns1/b", 81)])
    );

    // The control plane returns with b changed, c added and the workload gone.
    let mut server = TestServer::start(port).await;
    server
        .set(
            AUTHZ,
            &[
                Res::new("ns1/a", "v1", &deny_port("ns1", "a", 80)),
                Res::new("ns1/b", "v2", &deny_port("ns1", "b", 9081)),
                Res::new("ns1/c", "v1", &deny_port("ns1", "c", 82)),
            ],
            &[],
        )
        .await;
    server.set(ADDRESS, &[], &[]).await;
    server
        .set(
            EGRESS,
            &[Res::new(
                "ns1/e1",
                "v1",
                &egress_allow("ns1", "e1", "example.com"),
            )],
            &[],
        )
        .await;
    let sub = server.subscription(AUTHZ).await;
    let address_sub = server.subscription(ADDRESS).await;
    match mode {
        Mode::Delta => {
            assert_eq!(
                sub["initial_resource_versions"],
                json!({"ns1/a": "v1", "ns1/b": "v1"})
            );
            assert_eq!(
                address_sub["initial_resource_versions"],
                json!({"uid-w1": "v1"})
            );
        }
        Mode::Sotw => {
            assert_eq!(sub["version_info"], "1", "the version last accepted");
            assert_eq!(address_sub["version_info"], "1");
        }
    }
    server.ack(AUTHZ).await;
    server.ack(ADDRESS).await;
    server.ack(EGRESS).await;
    assert_eq!(
        accepted.authorizations(),
        authz(&[("ns1/a", 80), ("ns1/b", 9081), ("ns1/c", 82)])
    );
    assert!(accepted.last().workloads.is_empty());
    let s = status.get();
    assert_eq!(s.state, ConnectionState::Connected);
    assert_eq!(s.connections, 2);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_server_restart_resumes_with_initial_resource_versions() {
    server_restart(Mode::Delta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_server_restart_resumes_with_the_accepted_version() {
    server_restart(Mode::Sotw).await;
}

async fn ten_thousand(mode: Mode) {
    let mut server = TestServer::start(free_port()).await;
    let resources: Vec<Res> = (0..10_000u32)
        .map(|i| {
            let name = format!("p{i:05}");
            Res::new(
                &format!("ns1/{name}"),
                "v1",
                &deny_port("ns1", &name, 1 + i % 65535),
            )
        })
        .collect();
    server.set(AUTHZ, &resources, &[]).await;
    let (accepted, status, task) = start_client(&server, mode);
    let start = Instant::now();
    server.subscription(AUTHZ).await;
    server.ack(AUTHZ).await;
    let took = start.elapsed();
    assert_eq!(accepted.last().authorization_policies.len(), 10_000);
    assert_eq!(
        status.get().types[&ResourceType::Authorization].resources,
        10_000
    );
    eprintln!("{mode:?}: 10,000 Authorizations subscribed, converted and ACKed in {took:?}");
    // One more on top: a delta carries one resource, SotW all 10,001.
    server
        .set(
            AUTHZ,
            &[Res::new("ns1/extra", "v1", &deny_port("ns1", "extra", 443))],
            &[],
        )
        .await;
    server.ack(AUTHZ).await;
    assert_eq!(accepted.last().authorization_policies.len(), 10_001);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_ten_thousand_resources() {
    ten_thousand(Mode::Delta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_ten_thousand_resources() {
    ten_thousand(Mode::Sotw).await;
}

/// A test CA (`ca.pem`) and a server certificate for 127.0.0.1 signed by it, made with the
/// openssl command.
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("the openssl command (apt package openssl, installed by scripts/bootstrap.sh)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-days",
                "1",
                "-subj",
                "/CN=meshward test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ][..],
            &ec,
        ]
        .concat(),
    );
    openssl(
        &[
            &[
                "req",
                "-subj",
                "/CN=xds",
                "-keyout",
                "key.pem",
                "-out",
                "server.csr",
            ][..],
            &ec,
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_over_tls_verifies_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let port = free_port();
    let mut server = TestServer::start_with(
        port,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    server
        .set(
            AUTHZ,
            &[Res::new("ns1/a", "v1", &deny_port("ns1", "a", 80))],
            &[],
        )
        .await;

    // Without the server's CA the handshake fails and nothing is accepted.
    let untrusting =
        Client::new(Options::new(format!("https://127.0.0.1:{port}"), "node-1")).unwrap();
    let untrusting_status = untrusting.status();
    let task = tokio::spawn(async move {
        untrusting.run(sink_fn(|_: Update<'_>| Ok(()))).await;
    });
    let s = untrusting_status
        .wait_for(|s| s.last_error.is_some())
        .await
        .unwrap();
    assert_eq!(s.connections, 0, "{s:?}");
    let error = s.last_error.unwrap_or_default();
    assert!(error.contains("certificate"), "{error}");
    task.abort();

    let mut options = Options::new(format!("https://127.0.0.1:{port}"), "node-1");
    options.tls.ca_file = Some(ca);
    options.types = vec![ResourceType::Authorization];
    let client = Client::new(options).unwrap();
    let accepted = Accepted::default();
    let record = accepted.clone();
    let task = tokio::spawn(async move {
        client
            .run(sink_fn(move |u: Update<'_>| {
                record
                    .0
                    .lock()
                    .unwrap()
                    .push(to_config(u.snapshot, &Settings::default())?);
                Ok(())
            }))
            .await;
    });
    server.ack(AUTHZ).await;
    assert_eq!(accepted.authorizations(), authz(&[("ns1/a", 80)]));
    task.abort();
}
