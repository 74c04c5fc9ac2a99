//! The control plane's side of the config: what it last had accepted, and the initial sync —
//! the first generation with xDS waits until every subscribed type has answered, or until
//! `--xds-sync-timeout-secs` (a policy adopted from a previous agent waits for one answer).

use std::collections::BTreeSet;

use ::xds::ResourceType;
use tokio::time::Instant;

use super::state::XdsSync;

pub struct XdsOptions {
    pub address: String,
    pub types: Vec<ResourceType>,
    pub sync_timeout: std::time::Duration,
}

pub struct XdsState {
    pub address: String,
    types: Vec<ResourceType>,
    /// As last accepted (ACKed): what the control plane's resources say.
    pub accepted: control::Config,
    /// Types with an accepted response since the agent started.
    answered: BTreeSet<ResourceType>,
    pub sync: XdsSync,
    deadline: Instant,
    /// A policy pinned by a previous agent is in force: after the timeout it stays until the
    /// control plane has answered at least once.
    adopted: bool,
    told_waiting: bool,
}

/// What the sync deadline asks of the reconciler.
pub enum Deadline {
    /// Synced already, or not yet due, or an adopted policy waits for a first answer.
    Nothing,
    /// Apply what is known: the accepted config of the types that answered.
    ApplyKnown(control::Config),
}

impl XdsState {
    pub fn new(options: &XdsOptions, adopted: bool) -> Self {
        Self {
            address: options.address.clone(),
            types: options.types.clone(),
            accepted: control::Config::default(),
            answered: BTreeSet::new(),
            sync: XdsSync::Waiting,
            deadline: Instant::now() + options.sync_timeout,
            adopted,
            told_waiting: false,
        }
    }

    pub fn synced(&self) -> bool {
        self.sync != XdsSync::Waiting
    }

    /// Records an answer for `changed`; true if it completes the initial sync.
    pub fn answer(&mut self, changed: ResourceType) -> bool {
        let was_synced = self.synced();
        self.answered.insert(changed);
        !was_synced && self.types.iter().all(|t| self.answered.contains(t))
    }

    /// A refused response does not count as the type's answer if none was accepted before.
    pub fn forget_answer(&mut self, changed: ResourceType) {
        if !self.synced() {
            self.answered.remove(&changed);
        }
    }

    /// After the sync timeout: apply what is known, except that a pinned policy adopted from
    /// a previous agent stays until the control plane has answered at least once.
    pub fn deadline(&mut self) -> Deadline {
        if self.synced() || Instant::now() < self.deadline {
            return Deadline::Nothing;
        }
        if self.adopted && self.answered.is_empty() {
            if !self.told_waiting {
                self.told_waiting = true;
                tracing::warn!(
                    address = %self.address,
                    "no answer from the control plane yet; the policy adopted from the previous agent stays in force until it answers"
                );
            }
            return Deadline::Nothing;
        }
        let missing: Vec<String> = self
            .types
            .iter()
            .filter(|t| !self.answered.contains(t))
            .map(|t| t.to_string())
            .collect();
        tracing::warn!(
            address = %self.address,
            missing = %missing.join(", "),
            "the control plane has not answered every type in time; applying what is known"
        );
        Deadline::ApplyKnown(self.accepted.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn state(timeout: Duration, adopted: bool) -> XdsState {
        let options = XdsOptions {
            address: "http://cp".into(),
            types: ResourceType::ALL.to_vec(),
            sync_timeout: timeout,
        };
        XdsState::new(&options, adopted)
    }

    #[test]
    fn the_sync_completes_with_the_last_type_and_only_once() {
        let mut x = state(Duration::from_secs(60), false);
        assert!(!x.answer(ResourceType::Address));
        assert!(
            !x.answer(ResourceType::Address),
            "a repeat is not a new type"
        );
        assert!(!x.answer(ResourceType::Authorization));
        assert!(x.answer(ResourceType::EgressPolicy));
        x.sync = XdsSync::Complete;
        assert!(!x.answer(ResourceType::EgressPolicy), "completes once");
    }

    #[test]
    fn a_refused_first_answer_does_not_count() {
        let mut x = state(Duration::from_secs(60), false);
        x.answer(ResourceType::Address);
        x.answer(ResourceType::Authorization);
        x.answer(ResourceType::EgressPolicy);
        x.forget_answer(ResourceType::EgressPolicy);
        assert!(
            x.answer(ResourceType::EgressPolicy),
            "the type is still missing"
        );
    }

    #[test]
    fn after_the_timeout_what_is_known_applies_unless_an_adopted_policy_has_no_answer() {
        let mut fresh = state(Duration::ZERO, false);
        assert!(matches!(fresh.deadline(), Deadline::ApplyKnown(_)));
        let mut adopted = state(Duration::ZERO, true);
        assert!(matches!(adopted.deadline(), Deadline::Nothing));
        adopted.answer(ResourceType::Address);
        assert!(matches!(adopted.deadline(), Deadline::ApplyKnown(_)));
        let mut early = state(Duration::from_secs(60), false);
        assert!(matches!(early.deadline(), Deadline::Nothing));
    }
}
