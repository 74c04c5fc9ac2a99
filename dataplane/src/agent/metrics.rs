//! `/metrics` in the Prometheus text format. Kernel counters are read at scrape time.

use std::{fmt::Write, sync::atomic::Ordering};

use dataplane_common::rule_ids;

use super::state::Shared;

pub fn render(shared: &Shared) -> String {
    let snapshot = shared.snapshot();
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        "meshward_rule_verdicts_total",
        "counter",
        "Connections decided per policy rule, counted in the kernel (verdict: allow, deny, audit).",
    );
    let mut lines = String::new();
    {
        let counters = shared.counters();
        let reserved = [
            (rule_ids::DEFAULT_ALLOW, "egress", "default-allow", "ALLOW"),
            (rule_ids::DEFAULT_DENY, "egress", "default-deny", "DENY"),
            (
                rule_ids::INBOUND_DEFAULT_ALLOW,
                "inbound",
                "default-allow",
                "ALLOW",
            ),
            (
                rule_ids::INBOUND_DEFAULT_DENY,
                "inbound",
                "default-deny",
                "DENY",
            ),
            (
                rule_ids::SNI_DEFAULT_DENY,
                "egress",
                "sni-default-deny",
                "DENY",
            ),
        ]
        .map(|(id, direction, rule, action)| RuleRow {
            id,
            direction,
            namespace: "",
            policy: "(default)",
            rule: rule.to_string(),
            action,
        });
        let rules = snapshot
            .compiled
            .iter()
            .flat_map(|c| c.rules.iter())
            .map(|r| RuleRow {
                id: r.id,
                direction: r.kind.as_str(),
                namespace: &r.policy_namespace,
                policy: &r.policy_name,
                rule: r.rule_index.to_string(),
                action: r.action.as_str(),
            });
        for row in reserved.into_iter().chain(rules) {
            let Ok(c) = counters.rule(row.id) else {
                continue;
            };
            for (verdict, value) in [
                ("allow", c.allowed),
                ("deny", c.denied),
                ("audit", c.audited),
            ] {
                if value > 0 || verdict == action_verdict(row.action) {
                    let _ = writeln!(
                        lines,
                        "meshward_rule_verdicts_total{{direction=\"{}\",namespace=\"{}\",policy=\"{}\",rule=\"{}\",action=\"{}\",verdict=\"{verdict}\"}} {value}",
                        row.direction,
                        esc(row.namespace),
                        esc(row.policy),
                        esc(&row.rule),
                        row.action
                    );
                }
            }
        }
        if let Ok(s) = counters.kernel_stats() {
            let _ = writeln!(
                lines,
                "# HELP meshward_ungoverned_verdicts_total Hook runs for processes in no governed workload.\n# TYPE meshward_ungoverned_verdicts_total counter\nmeshward_ungoverned_verdicts_total {}",
                s.ungoverned_verdicts
            );
            let _ = writeln!(
                lines,
                "# HELP meshward_events_lost_total Deny/audit events not delivered (rate_limited, ring_full).\n# TYPE meshward_events_lost_total counter\nmeshward_events_lost_total{{reason=\"rate_limited\"}} {}\nmeshward_events_lost_total{{reason=\"ring_full\"}} {}",
                s.events_rate_limited, s.events_ring_full
            );
        }
    }
    out.push_str(&lines);

    render_posture(shared, &snapshot, &mut out);
    let mut gauge = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let events = shared.events().by_verdict.clone();
    let ev: Vec<(String, u64)> = events
        .iter()
        .map(|(k, v)| (format!("{{verdict=\"{k}\"}}"), *v))
        .collect();
    let ev_refs: Vec<(&str, u64)> = ev.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    gauge(
        "meshward_events_total",
        "counter",
        "Deny/audit events received from the kernel.",
        &ev_refs,
    );
    gauge(
        "meshward_config_reloads_total",
        "counter",
        "Config loads by result; a failed one leaves the previous policy in force.",
        &[
            (
                "{result=\"success\"}",
                shared.reloads_ok.load(Ordering::Relaxed),
            ),
            (
                "{result=\"failure\"}",
                shared.reloads_failed.load(Ordering::Relaxed),
            ),
        ],
    );
    let last_ok = snapshot
        .last_reload
        .as_ref()
        .map(|r| r.ok as u64)
        .unwrap_or(0);
    gauge(
        "meshward_config_last_reload_success",
        "gauge",
        "1 if the last config load was applied.",
        &[("", last_ok)],
    );
    gauge(
        "meshward_policy_generation",
        "gauge",
        "Policy generation live in the kernel.",
        &[("", snapshot.generation)],
    );
    if let Some(x) = shared.xds_status() {
        gauge(
            "meshward_xds_connected",
            "gauge",
            "1 while the stream to the xDS control plane is open.",
            &[("", (x.state == xds::ConnectionState::Connected) as u64)],
        );
        gauge(
            "meshward_xds_nacks_total",
            "counter",
            "xDS responses refused (NACKed); the previous policy stayed in force.",
            &[("", x.nacks)],
        );
        let per_type = |f: fn(&xds::TypeStatus) -> u64| -> Vec<(String, u64)> {
            x.types
                .iter()
                .map(|(t, s)| (format!("{{type=\"{}\"}}", t.name()), f(s)))
                .collect()
        };
        let acks = per_type(|s| s.acks);
        let resources = per_type(|s| s.resources as u64);
        gauge(
            "meshward_xds_acks_total",
            "counter",
            "xDS responses accepted (ACKed) and applied, per resource type.",
            &label_refs(&acks),
        );
        gauge(
            "meshward_xds_resources",
            "gauge",
            "xDS resources accepted and in force, per resource type.",
            &label_refs(&resources),
        );
    }
    let closed =
        |d: super::revoke::Direction| shared.connections_closed[d as usize].load(Ordering::Relaxed);
    gauge(
        "meshward_connections_closed_total",
        "counter",
        "Established TCP connections reset because a new policy generation denies them.",
        &[
            (
                "{direction=\"egress\"}",
                closed(super::revoke::Direction::Egress),
            ),
            (
                "{direction=\"inbound\"}",
                closed(super::revoke::Direction::Inbound),
            ),
        ],
    );
    if let Ok(totals) = shared.fast_path().totals() {
        let labels: Vec<(String, u64)> = totals
            .into_iter()
            .map(|(event, v)| (format!("{{event=\"{event}\"}}"), v))
            .collect();
        gauge(
            "meshward_fast_path_total",
            "counter",
            "Same-node fast path: messages and bytes redirected socket to socket, messages the stack carried (by reason), sockets that joined the sockhash.",
            &label_refs(&labels),
        );
    }
    if let Ok(d) = shared.dns().stats() {
        gauge(
            "meshward_dns_learning_total",
            "counter",
            "In-kernel DNS learning: queries recorded, answers parsed, associations learned, and answers or names not learned (by reason).",
            &[
                ("{event=\"query\"}", d.queries),
                ("{event=\"answer\"}", d.answers),
                ("{event=\"learned\"}", d.learned),
                ("{event=\"unmatched\"}", d.unmatched),
                ("{event=\"malformed\"}", d.malformed),
                ("{event=\"table_full\"}", d.table_full),
                ("{event=\"keys_dropped\"}", d.keys_dropped),
                ("{event=\"truncated\"}", d.truncated),
            ],
        );
    }
    let governed = snapshot.workloads.iter().filter(|w| w.governed).count() as u64;
    let pending = snapshot.workloads.len() as u64 - governed;
    gauge(
        "meshward_workloads",
        "gauge",
        "Workloads in the policy (governed: programs attached to their cgroup).",
        &[
            ("{state=\"governed\"}", governed),
            ("{state=\"not_governed\"}", pending),
        ],
    );
    out
}

fn label_refs(samples: &[(String, u64)]) -> Vec<(&str, u64)> {
    samples.iter().map(|(l, n)| (l.as_str(), *n)).collect()
}

/// One rule's labels in `meshward_rule_verdicts_total`.
struct RuleRow<'a> {
    id: u32,
    direction: &'a str,
    namespace: &'a str,
    policy: &'a str,
    rule: String,
    action: &'a str,
}

fn action_verdict(action: &str) -> &'static str {
    match action {
        "DENY" => "deny",
        "AUDIT" => "audit",
        _ => "allow",
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// TLS posture metrics, from the kernel's aggregates: handshakes by version, cipher and mTLS
/// state, and Istio's connection metric with `connection_security_policy` as measured.
fn render_posture(shared: &Shared, snapshot: &super::state::Snapshot, out: &mut String) {
    let rows = shared.posture().rows();
    let records = super::posture::records(&rows, snapshot);
    let mut handshakes: std::collections::BTreeMap<String, u64> = Default::default();
    let mut opened: std::collections::BTreeMap<String, u64> = Default::default();
    for r in &records {
        let ns = esc(r.namespace.as_deref().unwrap_or(""));
        let wl = esc(r.workload.as_deref().unwrap_or(""));
        let mtls = match &r.mtls {
            serde_json::Value::Bool(true) => "true",
            serde_json::Value::Bool(false) => "false",
            _ => "unknown",
        };
        if r.tls_version != "none" {
            *handshakes
                .entry(format!(
                    "namespace=\"{ns}\",workload=\"{wl}\",role=\"{}\",version=\"{}\",cipher=\"{}\",mtls=\"{mtls}\"",
                    r.role, r.tls_version, r.cipher
                ))
                .or_default() += r.count;
        }
        let policy = match mtls {
            "true" => "mutual_tls",
            "false" => "none",
            _ => "unknown",
        };
        let (reporter, app) = if r.role == "client" {
            ("source", "source_workload")
        } else {
            ("destination", "destination_workload")
        };
        *opened
            .entry(format!(
                "reporter=\"{reporter}\",{app}=\"{wl}\",{reporter}_workload_namespace=\"{ns}\",connection_security_policy=\"{policy}\""
            ))
            .or_default() += r.count;
    }
    let _ = writeln!(
        out,
        "# HELP meshward_tls_handshakes_total TLS handshakes read in the kernel, by negotiated version, cipher and mTLS state.\n# TYPE meshward_tls_handshakes_total counter"
    );
    for (labels, n) in &handshakes {
        let _ = writeln!(out, "meshward_tls_handshakes_total{{{labels}}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP istio_tcp_connections_opened_total TCP connections of governed workloads; connection_security_policy as measured on the wire.\n# TYPE istio_tcp_connections_opened_total counter"
    );
    for (labels, n) in &opened {
        let _ = writeln!(out, "istio_tcp_connections_opened_total{{{labels}}} {n}");
    }
    if let Ok(s) = shared.posture().stats() {
        let _ = writeln!(
            out,
            "# HELP meshward_tls_unparsed_total Connections whose bytes were not a parseable TLS handshake, or that could not be tracked.\n# TYPE meshward_tls_unparsed_total counter\nmeshward_tls_unparsed_total{{reason=\"malformed\"}} {}\nmeshward_tls_unparsed_total{{reason=\"conns_table_full\"}} {}\nmeshward_tls_unparsed_total{{reason=\"posture_table_full\"}} {}\nmeshward_tls_unparsed_total{{reason=\"sockhash_full\"}} {}\nmeshward_tls_unparsed_total{{reason=\"incomplete\"}} {}\nmeshward_tls_unparsed_total{{reason=\"out_of_order\"}} {}",
            s.malformed,
            s.conns_table_full,
            s.posture_table_full,
            s.sockhash_full,
            s.incomplete,
            s.out_of_order
        );
        let _ = writeln!(
            out,
            "# HELP meshward_tls_sni_cut_total TLS connections cut at their ClientHello because the server name (SNI) is not allowed.\n# TYPE meshward_tls_sni_cut_total counter\nmeshward_tls_sni_cut_total {}",
            s.sni_cut
        );
    }
}
