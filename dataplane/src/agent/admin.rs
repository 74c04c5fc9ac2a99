//! The admin HTTP endpoint (loopback by default): /healthz, /metrics, /policy, /events, /explain.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use super::{metrics, state::Shared};
use crate::cli::explain::{decide, host_keys, normalize_host};

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/policy", get(policy))
        .route("/events", get(events))
        .route("/explain", get(explain))
        .route("/posture", get(posture))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "admin endpoint stopped");
    }
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let s = shared.snapshot();
    let ok = s.last_reload.as_ref().is_some_and(|r| r.ok);
    Json(json!({
        "ktls_available": dataplane::kernel::posture::ktls_available(),
        "status": if ok { "ok" } else { "degraded" },
        "generation": s.generation,
        "source": s.source,
        "sources": s.sources,
        "last_reload": s.last_reload,
        "last_good_reload": s.last_good_reload,
        "xds": xds_json(&shared, &s),
    }))
}

/// The xDS client's status (connection state, last ACKed version per type, NACKs) and the
/// initial sync; `null` without a control plane.
fn xds_json(shared: &Shared, s: &super::state::Snapshot) -> serde_json::Value {
    let Some(status) = shared.xds_status() else {
        return serde_json::Value::Null;
    };
    let mut v = serde_json::to_value(&status).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("initial_sync".into(), json!(s.xds_sync));
    }
    v
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    let body = tokio::task::spawn_blocking(move || metrics::render(&shared))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn policy(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let s = shared.snapshot();
    let rules: Vec<serde_json::Value> = match &s.compiled {
        Some(c) => {
            let counters = shared.counters();
            c.rules
                .iter()
                .map(|r| {
                    let n = counters.rule(r.id).unwrap_or_default();
                    json!({
                        "id": r.id, "name": r.name, "action": r.action.as_str(),
                        "location": r.location.to_string(),
                        "allowed": n.allowed, "denied": n.denied, "audited": n.audited,
                    })
                })
                .collect()
        }
        None => Vec::new(),
    };
    Json(json!({
        "generation": s.generation,
        "source": s.source,
        "sources": s.sources,
        "workloads": s.workloads,
        "rules": rules,
        "table_entries": s.compiled.as_ref().map(|c| c.egress.len()).unwrap_or(0),
        "dns_names": s.dns_names,
        "dns_learned": super::learned::records(&shared),
        "dns_stats": shared.dns().stats().unwrap_or_default(),
        "warnings": s.last_good_reload.as_ref().or(s.last_reload.as_ref()).map(|r| r.warnings.clone()),
    }))
}

async fn posture(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let snapshot = shared.snapshot();
    let (rows, stats) = {
        let maps = shared.posture();
        (maps.rows(), maps.stats().unwrap_or_default())
    };
    Json(json!({
        "records": super::posture::records(&rows, &snapshot),
        "stats": stats,
        "ktls_available": dataplane::kernel::posture::ktls_available(),
    }))
}

async fn events(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<serde_json::Value> {
    let since = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    let (events, next) = shared.events().since(since);
    Json(json!({ "events": events, "next": next }))
}

async fn explain(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = shared.snapshot();
    let Some(compiled) = &s.compiled else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no policy applied yet").into_response();
    };
    let (Some(from), Some(to)) = (q.get("from"), q.get("to")) else {
        return (StatusCode::BAD_REQUEST, "need from= and to=").into_response();
    };
    let Ok(to) = to.parse::<SocketAddr>() else {
        return (StatusCode::BAD_REQUEST, "to= must be IP:PORT").into_response();
    };
    let binary = q
        .get("binary")
        .and_then(|b| super::binaries::file_id(std::path::Path::new(b)));
    let sni = q.get("sni").or(q.get("host")).map(String::as_str);
    // With host=, as if `to` had been answered for that name; without, what the kernel learned.
    let host = q.get("host").map(|h| normalize_host(h));
    let learned = |workload_id: u32| match &host {
        Some(h) => host_keys(h),
        None => shared.dns().keys_for(workload_id, to.ip()),
    };
    let mut explanation = match decide(compiled, from, to, binary, sni, &learned) {
        Ok(e) => e,
        Err(e) => return (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    };
    if let Some(host) = q.get("host") {
        let host = normalize_host(host);
        let keys = host_keys(&host);
        let resolved = s
            .dns_names
            .iter()
            .any(|n| n.name == host && n.ips.contains(&to.ip()));
        // What the kernel holds for the source workload and this address (one map lookup).
        let learned = explanation
            .from
            .split_once('/')
            .and_then(|(ns, name)| compiled.workload_by_name(ns, name))
            .is_some_and(|w| {
                shared
                    .dns()
                    .keys_for(w.workload_id, to.ip())
                    .iter()
                    .any(|k| keys.contains(k))
            });
        let known = resolved || learned;
        if !known {
            explanation.rule.push_str(&format!(
                " ({host} does not currently resolve to {})",
                to.ip()
            ));
        }
    }
    Json(explanation).into_response()
}
