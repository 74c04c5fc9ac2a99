//! `xds::server::AdsServer` against the crate's own client, in both ADS variants: initial sync,
//! update, removal, NACK (with the client's reason) and the fix after it; and the policies
//! the client ends up with are the YAML's, through `from_config`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control::{Config, Settings};
use envoy_types::pb::google::protobuf::Any;
use xds::server::{AdsServer, Served};
use xds::{
    Backoff, Client, Mode, Options, Resource, ResourceType, StatusHandle, Update, from_config,
    sink_fn, to_config,
};

const WAIT: Duration = Duration::from_secs(20);

/// Every configuration the client's sink accepted, in order.
#[derive(Clone, Default)]
struct Accepted(Arc<Mutex<Vec<Config>>>);

impl Accepted {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// `namespace/name` of every AuthorizationPolicy → its first rule's first port.
    fn authorizations(&self) -> BTreeMap<String, u16> {
        let configs = self.0.lock().unwrap();
        let last = configs.last().expect("an accepted configuration");
        last.authorization_policies
            .iter()
            .map(|p| {
                let port = p.rules[0].to[0].ports[0].value;
                (format!("{}/{}", p.namespace, p.name), port)
            })
            .collect()
    }

    fn workloads(&self) -> Vec<String> {
        let configs = self.0.lock().unwrap();
        let last = configs.last().expect("an accepted configuration");
        last.workloads
            .iter()
            .map(|w| format!("{}/{}", w.namespace, w.name))
            .collect()
    }
}

fn start_client(
    server: &AdsServer,
    mode: Mode,
    types: &[ResourceType],
) -> (Accepted, StatusHandle, tokio::task::JoinHandle<()>) {
    let mut options = Options::new(server.url(), "node-1");
    options.mode = mode;
    options.types = types.to_vec();
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

/// Workloads `web` and `db` and one DENY policy per `(name, port)`, written as YAML and
/// encoded by `from_config`.
fn resources(policies: &[(&str, u16)]) -> Vec<Resource> {
    let mut yaml = String::from(
        "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web, namespace: shop}
spec: {labels: {app: web}, serviceAccount: web, address: 10.0.0.1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db, namespace: shop}
spec: {labels: {app: db}, address: 10.0.0.2}
---
apiVersion: meshward.io/v1alpha1
kind: EgressPolicy
metadata: {name: web-out, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{to: [{hosts: [10.0.0.2], ports: [\"5432\"]}]}]
",
    );
    for (name, port) in policies {
        yaml.push_str(&format!(
            "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: shop}}
spec:
  action: DENY
  selector: {{matchLabels: {{app: db}}}}
  rules: [{{to: [{{operation: {{ports: [\"{port}\"]}}}}]}}]
"
        ));
    }
    let config = control::load_config_str("mesh.yaml", &yaml).unwrap_or_else(|d| panic!("{d}"));
    from_config(&config, &Settings::default()).unwrap_or_else(|d| panic!("{d}"))
}

fn authz(pairs: &[(&str, u16)]) -> BTreeMap<String, u16> {
    pairs
        .iter()
        .map(|(n, p)| (format!("shop/{n}"), *p))
        .collect()
}

/// An Authorization whose bytes do not decode, under a name of its own.
fn undecodable(name: &str) -> Served {
    Served {
        ty: ResourceType::Authorization,
        name: name.to_string(),
        any: Any {
            type_url: ResourceType::Authorization.type_url().to_string(),
            value: vec![0xff, 0xff, 0xff],
        },
    }
}

fn served(resources: &[Resource]) -> Vec<Served> {
    resources.iter().map(|r| Served::of(r).unwrap()).collect()
}

async fn sync_update_remove_nack_fix(mode: Mode) {
    let server = AdsServer::bind("127.0.0.1:0").await.unwrap();
    assert!(server.address().port() != 0);
    let v1 = server.set(resources(&[("a", 80), ("b", 81)])).unwrap();
    let (accepted, status, task) = start_client(&server, mode, &ResourceType::ALL);

    // Initial sync: every type answered and ACKed.
    server.wait_acked(v1, WAIT).await.unwrap();
    assert_eq!(server.open_streams(), 1);
    assert_eq!(accepted.authorizations(), authz(&[("a", 80), ("b", 81)]));
    assert_eq!(accepted.workloads(), vec!["shop/db", "shop/web"]);
    let s = status.get();
    assert_eq!(
        s.types[&ResourceType::Authorization].last_acked_version,
        Some(v1.to_string())
    );

    // Update: only Authorization changes, so only it is pushed.
    let before = accepted.count();
    let v2 = server.set(resources(&[("a", 90), ("b", 81)])).unwrap();
    server.wait_acked(v2, WAIT).await.unwrap();
    assert_eq!(accepted.authorizations(), authz(&[("a", 90), ("b", 81)]));
    assert_eq!(
        accepted.count(),
        before + 1,
        "one response: the changed type"
    );

    // Removal.
    let v3 = server.set(resources(&[("a", 90)])).unwrap();
    server.wait_acked(v3, WAIT).await.unwrap();
    assert_eq!(accepted.authorizations(), authz(&[("a", 90)]));

    // NACK of an undecodable resource: the reason comes back, the client keeps v3.
    let mut broken = served(&resources(&[("a", 91)]));
    broken.push(undecodable("shop/broken"));
    let v4 = server.set_served(broken).unwrap();
    let reason = server.wait_acked(v4, WAIT).await.unwrap_err();
    assert!(
        reason.contains("NACKed Authorization version 4")
            && reason.contains("Authorization shop/broken: cannot decode Authorization"),
        "{reason}"
    );
    assert_eq!(accepted.authorizations(), authz(&[("a", 90)]));
    assert!(status.get().nacks >= 1);

    // The fix is ACKed, and applies against what the client kept: `a` as the NACKed
    // response had it is sent again (delta: the server forgot that it was sent).
    let v5 = server.set(resources(&[("a", 91), ("c", 93)])).unwrap();
    server.wait_acked(v5, WAIT).await.unwrap();
    assert_eq!(accepted.authorizations(), authz(&[("a", 91), ("c", 93)]));

    // A NACK from the sink (to_config refuses port 0) reads the same way.
    let mut zero = resources(&[("a", 92)]);
    for r in &mut zero {
        if let Resource::Authorization(a) = r {
            a.rules[0].clauses[0].matches[0].destination_ports = vec![0];
        }
    }
    let v6 = server.set(zero).unwrap();
    let reason = server.wait_acked(v6, WAIT).await.unwrap_err();
    assert!(
        reason.contains("port 0 is out of range (1-65535)"),
        "{reason}"
    );
    assert_eq!(accepted.authorizations(), authz(&[("a", 91), ("c", 93)]));
    let v7 = server.set(resources(&[("a", 92)])).unwrap();
    server.wait_acked(v7, WAIT).await.unwrap();
    assert_eq!(accepted.authorizations(), authz(&[("a", 92)]));

    // A set that changes nothing is ACKed already.
    let v8 = server.set(resources(&[("a", 92)])).unwrap();
    server
        .wait_acked(v8, Duration::from_millis(1))
        .await
        .unwrap();

    task.abort();
    let _ = task.await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_initial_sync_update_removal_nack_and_fix() {
    sync_update_remove_nack_fix(Mode::Delta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_initial_sync_update_removal_nack_and_fix() {
    sync_update_remove_nack_fix(Mode::Sotw).await;
}

/// Two streams at once, one subscribed to a single type: `wait_acked` waits for both, and
/// the types a stream did not subscribe to are never sent to it (the client would NACK them
/// as unknown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_and_only_subscribed_types() {
    let server = AdsServer::bind("127.0.0.1:0").await.unwrap();
    assert!(
        server
            .wait_acked(0, Duration::from_millis(50))
            .await
            .unwrap_err()
            .contains("no stream is open")
    );
    let v1 = server.set(resources(&[("a", 80)])).unwrap();
    let (all, _, t1) = start_client(&server, Mode::Delta, &ResourceType::ALL);
    let (only, only_status, t2) = start_client(&server, Mode::Sotw, &[ResourceType::Authorization]);
    // Only open streams count: wait for both to be there.
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.open_streams() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the clients do not connect"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.wait_acked(v1, WAIT).await.unwrap();
    assert_eq!(server.open_streams(), 2);
    assert_eq!(all.authorizations(), authz(&[("a", 80)]));
    assert_eq!(only.authorizations(), authz(&[("a", 80)]));
    assert!(only.workloads().is_empty());

    let v2 = server.set(resources(&[("a", 81), ("b", 82)])).unwrap();
    server.wait_acked(v2, WAIT).await.unwrap();
    assert_eq!(only.authorizations(), authz(&[("a", 81), ("b", 82)]));
    assert_eq!(all.authorizations(), authz(&[("a", 81), ("b", 82)]));
    assert_eq!(only_status.get().nacks, 0);
    assert_eq!(only.count(), 2, "the Authorization responses, nothing else");

    // A stream that goes away no longer counts.
    t2.abort();
    let _ = t2.await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.open_streams() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream stays open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v3 = server.set(resources(&[("a", 83)])).unwrap();
    server.wait_acked(v3, WAIT).await.unwrap();
    assert_eq!(all.authorizations(), authz(&[("a", 83)]));
    t1.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nameless_and_duplicate_resources_are_refused_by_set() {
    let server = AdsServer::bind("127.0.0.1:0").await.unwrap();
    let nameless = Resource::Authorization(Default::default());
    assert!(
        server
            .set(vec![nameless])
            .unwrap_err()
            .contains("has no name")
    );
    let twice = [resources(&[("a", 80)]), resources(&[("a", 81)])].concat();
    assert!(
        server
            .set(twice)
            .unwrap_err()
            .contains("two Address resources are named")
    );
    assert_eq!(server.version(), 0, "nothing changed");
}
