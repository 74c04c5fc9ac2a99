//! The reconciler: the one writer of the kernel tables. It turns a config into a compiled
//! generation and applies it whole, or rejects it whole and keeps the previous one in force.
//!
//! The config is the local files merged with the last accepted xDS resources (`merge.rs`).
//! Both sides come through here: a file reload is merged with the last ACKed xDS config, an xDS
//! response with the last good local config; either gives one new generation or none.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
};

use anyhow::Result;
use control::Diagnostics;
use dataplane::kernel::{
    attach::Attachments,
    cgroup,
    loader::Kernel,
    tables::{Generation, Tables},
};
use dataplane_common::{FIRST_RULE_ID, WorkloadValue, rule_ids};

use ::xds::{Rejection, Rejections, ResourceType};

use super::{
    binaries,
    control_plane::Proposal,
    dns::Resolver,
    merge::{Proposer, merge},
    revoke,
    source::ConfigSource,
    state::{ReloadStatus, Shared, Snapshot, Sources, WorkloadStatus, XdsSync, now_rfc3339},
    xds_sync::{Deadline, XdsOptions, XdsState},
};

/// How often expired DNS-learned addresses are deleted from the kernel table.
const DNS_SWEEP: std::time::Duration = std::time::Duration::from_secs(10);

/// How often `spec.binaries` patterns are resolved again (a package upgrade replaces files).
const BINARY_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Options {
    pub cgroup_root: PathBuf,
    pub settings: control::Settings,
    pub events_per_sec: u32,
    /// Reset established connections that a new generation denies (not --keep-established).
    pub close_revoked: bool,
    /// With --xds-address.
    pub xds: Option<XdsOptions>,
}

/// Why a config was not applied.
enum Failure {
    Invalid(Diagnostics),
    Kernel(String),
}

pub struct Reconciler {
    kernel: Kernel,
    tables: Tables,
    attachments: Attachments,
    shared: Arc<Shared>,
    source: ConfigSource,
    resolver: Resolver,
    opts: Options,
    /// The local files' config as last loaded and accepted.
    local: Option<control::Config>,
    xds: Option<XdsState>,
    /// Last merged config that was applied (kept to recompile when DNS answers or cgroups
    /// change).
    config: Option<control::Config>,
    compiled: Option<Arc<control::CompiledPolicy>>,
    rule_ids: control::RuleIds,
    /// Executable files of the `spec.binaries` patterns, as last resolved.
    binaries: control::BinaryResolutions,
    binaries_checked: tokio::time::Instant,
    workloads: Vec<WorkloadStatus>,
    last_reload: Option<ReloadStatus>,
    last_good: Option<ReloadStatus>,
    /// The last recorded outcome is a refused xDS response.
    xds_refused: bool,
    swept_stale_links: bool,
    dns_swept: std::time::Instant,
}

impl Reconciler {
    pub fn new(
        kernel: Kernel,
        tables: Tables,
        shared: Arc<Shared>,
        source: ConfigSource,
        resolver: Resolver,
        opts: Options,
    ) -> Self {
        // Rule ids recorded by a previous agent keep their counters.
        let recorded = shared.counters().recorded_names();
        let rule_ids: control::RuleIds = recorded
            .into_iter()
            .filter(|(id, _)| *id >= FIRST_RULE_ID)
            .collect();
        let adopted = kernel.adopted && tables.generation() > 0;
        let xds = opts.xds.as_ref().map(|x| XdsState::new(x, adopted));
        Self {
            kernel,
            tables,
            attachments: Attachments::default(),
            shared,
            source,
            resolver,
            opts,
            local: None,
            xds,
            config: None,
            compiled: None,
            rule_ids,
            binaries: control::BinaryResolutions::new(),
            binaries_checked: tokio::time::Instant::now(),
            workloads: Vec::new(),
            last_reload: None,
            last_good: None,
            xds_refused: false,
            swept_stale_links: false,
            dns_swept: std::time::Instant::now(),
        }
    }

    /// Reads the local files, merges them with the last accepted xDS config and applies the
    /// result, or records why not (the previous policy stays).
    pub async fn reload(&mut self, trigger: &str) {
        let local = match self.source.load() {
            Ok(c) => c,
            Err(diags) => return self.rejected(trigger, &diags),
        };
        let empty = control::Config::default();
        let xds = self.xds.as_ref().map_or(&empty, |x| &x.accepted);
        let merged = match merge(&local, xds, Proposer::Files) {
            Ok(m) => m,
            Err(diags) => return self.rejected(trigger, &diags),
        };
        if !self.xds_synced() {
            // Checked now, applied with the control plane's first answer.
            if let Err(diags) = self.compile(&merged) {
                return self.rejected(trigger, &diags);
            }
            tracing::info!(
                trigger,
                source = %self.source.describe(),
                "local config accepted; waiting for the control plane's initial answer before applying"
            );
            self.local = Some(local);
            return self.publish();
        }
        if self.apply_config(merged, trigger).await.is_ok() {
            self.local = Some(local);
        }
    }

    /// One xDS response: merged with the local config and applied as one generation (→ ACK),
    /// or refused with the reasons (→ NACK) and nothing changes.
    pub async fn on_xds(&mut self, proposal: Proposal) {
        let Proposal {
            config,
            changed,
            version,
            reply,
        } = proposal;
        let result = self.xds_response(config, changed, &version).await;
        if result.is_err() {
            self.xds_refused = true;
        }
        // The client may be gone (agent stopping); nothing to tell then.
        let _ = reply.send(result);
    }

    async fn xds_response(
        &mut self,
        config: Option<control::Config>,
        changed: ResourceType,
        version: &str,
    ) -> Result<(), Rejections> {
        let trigger = format!("xDS {changed} version {version}");
        let Some(x) = self.xds.as_mut() else {
            return Err(
                Rejection::of(changed, "", "the agent has no control plane configured").into(),
            );
        };
        let was_synced = x.synced();
        let completes = x.answer(changed);
        let Some(config) = config else {
            // The resources are as last accepted (a resync after a reconnect, or the control
            // plane taking back what was refused): nothing to apply, unless this answer
            // completes the initial sync.
            if completes {
                let xds = x.accepted.clone();
                return self
                    .finish_sync(xds, XdsSync::Complete, &trigger, changed)
                    .await;
            }
            if self.xds_refused {
                // What the control plane wants is in force again.
                self.xds_refused = false;
                if let Some(good) = self.last_good.take() {
                    self.last_reload = Some(good);
                }
                self.publish();
            }
            return Ok(());
        };
        if completes {
            return self
                .finish_sync(config, XdsSync::Complete, &trigger, changed)
                .await;
        }
        let empty = control::Config::default();
        let merged = match merge(
            self.local.as_ref().unwrap_or(&empty),
            &config,
            Proposer::Xds,
        ) {
            Ok(m) => m,
            Err(diags) => {
                self.forget_answer(changed);
                self.rejected(&trigger, &diags);
                return Err(rejections(&diags, changed));
            }
        };
        if !was_synced || self.local.is_none() {
            // Not applied yet: checked, accepted, applied when the sync completes.
            if let Err(diags) = self.compile(&merged) {
                self.forget_answer(changed);
                self.rejected(&trigger, &diags);
                return Err(rejections(&diags, changed));
            }
            tracing::info!(
                trigger,
                "xDS response accepted; waiting for the initial answer of every type before applying"
            );
            self.set_xds_accepted(config);
            self.publish();
            return Ok(());
        }
        match self.apply_config(merged, &trigger).await {
            Ok(()) => {
                self.set_xds_accepted(config);
                Ok(())
            }
            Err(failure) => Err(failure.rejections(changed)),
        }
    }

    /// Applies the first generation with the control plane's config (or, while the local
    /// files have not loaded, checks it: the first apply then waits for them).
    async fn finish_sync(
        &mut self,
        xds: control::Config,
        how: XdsSync,
        trigger: &str,
        changed: ResourceType,
    ) -> Result<(), Rejections> {
        let empty = control::Config::default();
        let merged = match merge(self.local.as_ref().unwrap_or(&empty), &xds, Proposer::Xds) {
            Ok(m) => m,
            Err(diags) => {
                self.forget_answer(changed);
                self.rejected(trigger, &diags);
                return Err(rejections(&diags, changed));
            }
        };
        if self.local.is_none() {
            if let Err(diags) = self.compile(&merged) {
                self.forget_answer(changed);
                self.rejected(trigger, &diags);
                return Err(rejections(&diags, changed));
            }
            self.set_sync(how);
            self.set_xds_accepted(xds);
            self.publish();
            return Ok(());
        }
        self.set_sync(how);
        match self.apply_config(merged, trigger).await {
            Ok(()) => {
                tracing::info!(trigger, sync = ?how, "initial xDS sync applied");
                self.set_xds_accepted(xds);
                Ok(())
            }
            Err(failure) => {
                // A refused answer does not complete the sync; after the timeout, the next
                // accepted response or file reload applies.
                if how == XdsSync::Complete {
                    self.set_sync(XdsSync::Waiting);
                    self.forget_answer(changed);
                }
                self.publish();
                Err(failure.rejections(changed))
            }
        }
    }

    fn set_sync(&mut self, sync: XdsSync) {
        if let Some(x) = self.xds.as_mut() {
            x.sync = sync;
        }
    }

    fn set_xds_accepted(&mut self, config: control::Config) {
        if let Some(x) = self.xds.as_mut() {
            x.accepted = config;
        }
    }

    fn forget_answer(&mut self, changed: ResourceType) {
        if let Some(x) = self.xds.as_mut() {
            x.forget_answer(changed);
        }
    }

    /// No control plane, or its initial answer is in (or was waited for long enough).
    fn xds_synced(&self) -> bool {
        self.xds.as_ref().is_none_or(XdsState::synced)
    }

    /// After --xds-sync-timeout: apply what is known (`XdsState::deadline`).
    async fn check_sync_deadline(&mut self) {
        let Some(Deadline::ApplyKnown(xds)) = self.xds.as_mut().map(XdsState::deadline) else {
            return;
        };
        let _ = self
            .finish_sync(
                xds,
                XdsSync::TimedOut,
                "xDS initial sync timed out",
                ResourceType::Address,
            )
            .await;
    }

    /// Periodic work: file changes, DNS refreshes that are due, cgroups that appeared or vanished.
    pub async fn on_tick(&mut self) {
        if self.dns_swept.elapsed() >= DNS_SWEEP {
            self.dns_swept = std::time::Instant::now();
            let n = self.shared.dns().sweep();
            if n > 0 {
                tracing::debug!(pairs = n, "expired DNS-learned addresses deleted");
            }
        }
        if self.source.changed() {
            return self.reload("file change").await;
        }
        self.check_sync_deadline().await;
        if let Some(trigger) = self.due_reapply().await {
            // Cloned only now: a config of 100k rules costs milliseconds to copy, far too much
            // for every watch interval.
            if let Some(config) = self.config.clone() {
                let _ = self.apply_config(config, trigger).await;
            }
        }
    }

    /// Why the current config must be compiled and applied again, if it must: a DNS answer,
    /// an executable file or a governed cgroup or netns changed.
    async fn due_reapply(&mut self) -> Option<&'static str> {
        let compiled = self.compiled.clone()?;
        let dns_due = self
            .resolver
            .next_refresh()
            .is_some_and(|t| t <= tokio::time::Instant::now());
        if dns_due && self.resolver.refresh(&compiled.dns_names).await {
            return Some("DNS answer changed");
        }
        if self.binaries_checked.elapsed() >= BINARY_RECHECK {
            self.binaries_checked = tokio::time::Instant::now();
            if binaries::resolve(&compiled.binary_patterns) != self.binaries {
                return Some("executable files changed");
            }
        }
        self.cgroups_changed()
            .then_some("cgroup appeared or vanished")
    }

    /// Compiles and applies `config` as one generation, recording the outcome.
    async fn apply_config(
        &mut self,
        config: control::Config,
        trigger: &str,
    ) -> Result<(), Failure> {
        let started = std::time::Instant::now();
        let mut compiled = match self.compile(&config) {
            Ok(c) => c,
            Err(diags) => {
                self.rejected(trigger, &diags);
                return Err(Failure::Invalid(diags));
            }
        };
        let files = binaries::resolve(&compiled.binary_patterns);
        let files_changed = files != self.binaries;
        self.binaries = files;
        self.binaries_checked = tokio::time::Instant::now();
        if self.resolver.refresh(&compiled.dns_names).await || files_changed {
            compiled = match self.compile(&config) {
                Ok(c) => c,
                Err(diags) => {
                    self.rejected(trigger, &diags);
                    return Err(Failure::Invalid(diags));
                }
            };
        }
        let compiled_at = started.elapsed();
        match self.apply(&compiled).await {
            Ok(generation) => {
                let warnings: Vec<String> = config
                    .warnings
                    .iter()
                    .chain(compiled.warnings.iter())
                    .map(|d| d.to_string())
                    .collect();
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                tracing::info!(
                    trigger, generation, source = %self.describe_source(),
                    workloads = compiled.workloads.len(), rules = compiled.rules.len(),
                    entries = compiled.egress.len(),
                    compile_ms = compiled_at.as_secs_f64() * 1e3,
                    total_ms = started.elapsed().as_secs_f64() * 1e3,
                    "policy applied"
                );
                self.rule_ids = compiled.rule_ids.clone();
                let compiled = Arc::new(compiled);
                self.compiled = Some(compiled.clone());
                let previous = self.config.replace(config);
                let status = self.status(trigger, true, Vec::new(), warnings);
                self.last_good = None;
                self.xds_refused = false;
                self.last_reload = Some(status);
                self.shared.count_reload(true);
                self.publish();
                if let (Some(previous), true) = (previous, self.opts.close_revoked) {
                    self.close_revoked(&previous, compiled).await;
                }
                Ok(())
            }
            Err(e) => {
                let msg = format!("applying the policy to the kernel failed: {e:#}");
                self.rejected_with(trigger, vec![msg.clone()]);
                Err(Failure::Kernel(msg))
            }
        }
    }

    /// Resets the live connections that the `previous` config allowed and `current` denies
    /// (`revoke.rs`). Only a change of the policy itself counts: the previous config is compiled
    /// again with today's DNS answers and executable files, so an address that left a name's
    /// answer, or a replaced binary, never resets a live connection.
    async fn close_revoked(
        &self,
        previous: &control::Config,
        current: Arc<control::CompiledPolicy>,
    ) {
        if Some(previous) == self.config.as_ref() {
            return;
        }
        // Its own `spec.binaries` patterns, resolved now.
        let files = binaries::resolve(&control::binary_patterns(previous));
        let previous = match self.compile_with(previous, &files) {
            Ok(p) => p,
            Err(diags) => {
                tracing::warn!(%diags, "the previous policy no longer compiles; no live connection is decided again");
                return;
            }
        };
        let shared = self.shared.clone();
        let cgroup_root = self.opts.cgroup_root.clone();
        let swept = tokio::task::spawn_blocking(move || {
            let learned = |workload_id, ip| shared.dns().keys_for(workload_id, ip);
            revoke::close_revoked(&previous, &current, &cgroup_root, &learned)
        })
        .await;
        let Ok((closed, problems)) = swept else {
            tracing::warn!("the sweep for revoked connections did not finish");
            return;
        };
        for c in &closed {
            tracing::warn!(
                direction = ?c.direction, workload = %c.workload, local = %c.local,
                remote = %c.remote, rule = %c.rule,
                "connection reset: the new policy denies it"
            );
            self.shared.count_closed(c.direction);
        }
        for p in &problems {
            tracing::warn!("sweep for revoked connections: {p}");
        }
    }

    fn compile(
        &self,
        config: &control::Config,
    ) -> Result<control::CompiledPolicy, control::Diagnostics> {
        self.compile_with(config, &self.binaries)
    }

    fn compile_with(
        &self,
        config: &control::Config,
        binaries: &control::BinaryResolutions,
    ) -> Result<control::CompiledPolicy, control::Diagnostics> {
        control::compile_with_binaries(
            config,
            &self.opts.settings,
            &self.resolver.resolutions(),
            binaries,
            &self.rule_ids,
        )
    }

    /// Attaches to new cgroups and network namespaces, switches the kernel to the new
    /// generation, then lets go of what the new generation no longer needs.
    async fn apply(&mut self, compiled: &control::CompiledPolicy) -> Result<u64> {
        let mut generation = Generation {
            egress: compiled.egress.clone(),
            inbound: compiled.inbound.clone(),
            sni_rules: compiled
                .sni_rules
                .iter()
                .map(|r| ((r.subject_id, r.port, r.name_key), r.rules))
                .collect(),
            sni_required: compiled
                .sni_required
                .iter()
                .map(|r| ((r.subject_id, r.port, r.addr), r.rule_id))
                .collect(),
            dns_watch: compiled
                .dns_watch
                .iter()
                .map(|w| (w.workload_id, w.name_key))
                .collect(),
            ..Generation::default()
        };
        let mut workloads = Vec::new();
        let mut governed = BTreeSet::new();
        // Workloads (or their binary subjects) with DNS-name rules: the only ones whose
        // answers there is anything to learn from.
        let watched: BTreeSet<u32> = compiled.dns_watch.iter().map(|d| d.workload_id).collect();
        for w in &compiled.workloads {
            let value = WorkloadValue {
                workload_id: w.workload_id,
                flags: w.flags,
            };
            let mut status = WorkloadStatus {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
                principal: w.principal.clone(),
                cgroup: w.cgroup.as_ref().map(|c| c.display().to_string()),
                cgroup_id: None,
                governed: false,
                netns: w.netns.as_ref().map(|n| n.display().to_string()),
                netns_attached: false,
                inbound_governed: false,
                note: None,
            };
            match &w.cgroup {
                None => {
                    status.note =
                        Some("no meshward.io/cgroup annotation: no local processes".into())
                }
                Some(rel) => {
                    let path = self.opts.cgroup_root.join(rel);
                    match cgroup::cgroup_id(&path) {
                        Ok(id) => {
                            governed.insert(self.attachments.ensure_cgroup(
                                &mut self.kernel,
                                id,
                                &path,
                            )?);
                            if watched.contains(&w.workload_id)
                                && let Some(dns) =
                                    self.attachments.ensure_dns(&mut self.kernel, id, &path)?
                            {
                                governed.insert(dns);
                            }
                            generation.workloads.push((id, value));
                            status.cgroup_id = Some(id);
                            status.governed = true;
                        }
                        Err(e) => {
                            status.note = Some(format!("{e:#}; governed as soon as it exists"))
                        }
                    }
                }
            }
            if let Some(netns) = &w.netns {
                match self.attachments.ensure_netns(&mut self.kernel, netns) {
                    Ok(target) => {
                        governed.insert(target);
                        status.netns_attached = true;
                        status.inbound_governed = w.address.is_some();
                    }
                    Err(e) => {
                        status.note = Some(format!("{e:#}; inbound governed as soon as it exists"))
                    }
                }
            }
            workloads.push(status);
        }
        let flags_of: BTreeMap<u32, u32> = compiled
            .workloads
            .iter()
            .map(|w| (w.workload_id, w.flags))
            .collect();
        generation.binaries = compiled.binaries.clone();
        generation.subjects = compiled
            .subjects
            .iter()
            .map(|s| {
                let value = WorkloadValue {
                    workload_id: s.subject_id,
                    flags: s.flags,
                };
                ((s.workload_id, s.binary_id), value)
            })
            .collect();
        generation.identities = compiled
            .identities
            .iter()
            .map(|(addr, id)| {
                let flags = flags_of.get(id).copied().unwrap_or_default();
                (
                    *addr,
                    WorkloadValue {
                        workload_id: *id,
                        flags,
                    },
                )
            })
            .collect();
        let mut live: BTreeMap<u32, String> = compiled
            .rules
            .iter()
            .map(|r| (r.id, r.name.clone()))
            .collect();
        for id in [
            rule_ids::DEFAULT_ALLOW,
            rule_ids::DEFAULT_DENY,
            rule_ids::INBOUND_DEFAULT_ALLOW,
            rule_ids::INBOUND_DEFAULT_DENY,
            rule_ids::SNI_DEFAULT_DENY,
        ] {
            live.insert(id, compiled.rule_name(id));
        }
        self.shared.counters().record_names(&live)?;
        let number = self
            .tables
            .apply(&generation, self.opts.events_per_sec)
            .await?;
        self.attachments.retain(&governed);
        if let Some(previous) = &self.compiled {
            let moves = renumbered(previous, compiled);
            match self.shared.dns().renumber(&moves) {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    pairs = n,
                    "DNS-learned addresses moved with their workloads' new ids"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "DNS-learned addresses could not follow renumbered workloads")
                }
            }
        }
        if !self.swept_stale_links {
            self.attachments.remove_stale_pins(&self.kernel);
            self.swept_stale_links = true;
        }
        self.shared.counters().forget_others(&live)?;
        self.workloads = workloads;
        Ok(number)
    }

    /// True when a workload's cgroup or netns exists now but did not at the last apply, or vice
    /// versa.
    fn cgroups_changed(&self) -> bool {
        self.workloads.iter().any(|w| {
            let cgroup_moved = w.cgroup.as_ref().is_some_and(|rel| {
                cgroup::cgroup_id(&self.opts.cgroup_root.join(rel)).ok() != w.cgroup_id
            });
            let netns_moved = w
                .netns
                .as_ref()
                .is_some_and(|n| std::path::Path::new(n).exists() != w.netns_attached);
            cgroup_moved || netns_moved
        })
    }

    fn rejected(&mut self, trigger: &str, diags: &control::Diagnostics) {
        let errors: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        self.rejected_with(trigger, errors);
    }

    fn rejected_with(&mut self, trigger: &str, errors: Vec<String>) {
        self.xds_refused = false;
        for e in &errors {
            tracing::error!("{e}");
        }
        tracing::error!(
            trigger, source = %self.describe_source(),
            generation = self.tables.generation(),
            "config rejected; the previous policy stays in force"
        );
        if self.last_good.is_none() {
            self.last_good = self.last_reload.clone().filter(|r| r.ok);
        }
        self.last_reload = Some(self.status(trigger, false, errors, Vec::new()));
        self.shared.count_reload(false);
        self.publish();
    }

    fn status(
        &self,
        trigger: &str,
        ok: bool,
        errors: Vec<String>,
        warnings: Vec<String>,
    ) -> ReloadStatus {
        ReloadStatus {
            ok,
            trigger: trigger.to_string(),
            at: now_rfc3339(),
            generation: self.tables.generation(),
            errors,
            warnings,
        }
    }

    /// "PATH" or "PATH + xDS URL".
    fn describe_source(&self) -> String {
        match &self.xds {
            Some(x) => format!("{} + xDS {}", self.source.describe(), x.address),
            None => self.source.describe(),
        }
    }

    fn publish(&self) {
        self.shared.publish(Snapshot {
            generation: self.tables.generation(),
            source: self.describe_source(),
            sources: Sources {
                files: self.source.describe(),
                xds: self.xds.as_ref().map(|x| x.address.clone()),
            },
            xds_sync: self.xds.as_ref().map(|x| x.sync),
            compiled: self.compiled.clone(),
            workloads: self.workloads.clone(),
            dns_names: self.resolver.status(),
            last_reload: self.last_reload.clone(),
            last_good_reload: self.last_good.clone(),
        });
    }
}

impl Failure {
    /// The NACK's reasons, each naming its resource where the compiler said which.
    fn rejections(&self, changed: ResourceType) -> Rejections {
        match self {
            Failure::Invalid(diags) => rejections(diags, changed),
            Failure::Kernel(msg) => Rejection::of(changed, "", msg.clone()).into(),
        }
    }
}

fn rejections(diags: &Diagnostics, changed: ResourceType) -> Rejections {
    let r = Rejections::from_diagnostics(diags);
    if r.is_empty() {
        return Rejection::of(changed, "", "refused").into();
    }
    r
}

/// Workload ids of `previous` that name another workload (or none) in `next`: old id → the
/// same workload's new id, or None when it is gone.
fn renumbered(
    previous: &control::CompiledPolicy,
    next: &control::CompiledPolicy,
) -> BTreeMap<u32, Option<u32>> {
    let now: BTreeMap<(&str, &str), u32> = next
        .workloads
        .iter()
        .map(|w| ((w.namespace.as_str(), w.name.as_str()), w.workload_id))
        .collect();
    previous
        .workloads
        .iter()
        .filter_map(|w| {
            let new_id = now.get(&(w.namespace.as_str(), w.name.as_str())).copied();
            (new_id != Some(w.workload_id)).then_some((w.workload_id, new_id))
        })
        .collect()
}
