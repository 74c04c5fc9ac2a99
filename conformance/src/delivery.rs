//! How a case's policies reach the agent: as local files (`--via files`) or over a real gRPC
//! ADS stream (`--via xds`). Both must give the same results.

use anyhow::Result;

use crate::agent::{Agent, Applied};
use crate::case::{Case, Policies};
use crate::render::{self, Paths};

pub trait Delivery {
    /// The `--xds-address` the agent is started with, if any.
    fn agent_address(&self) -> Option<String>;
    fn apply(
        &mut self,
        agent: &mut Agent,
        case: &Case,
        policies: &Policies,
        paths: &Paths,
        rejected: bool,
    ) -> Result<Applied>;
    /// Back to an empty config.
    fn clear(&mut self, agent: &mut Agent) -> Result<()>;
}

/// WorkloadEntries and policies in the agent's config file, reloaded with SIGHUP.
pub struct Files;

impl Delivery for Files {
    fn agent_address(&self) -> Option<String> {
        None
    }

    fn apply(
        &mut self,
        agent: &mut Agent,
        case: &Case,
        policies: &Policies,
        paths: &Paths,
        _rejected: bool,
    ) -> Result<Applied> {
        agent.apply_file(&render::config_text(case, policies, paths))
    }

    fn clear(&mut self, agent: &mut Agent) -> Result<()> {
        match agent.apply_file("")? {
            Applied::Ok => Ok(()),
            Applied::Rejected(why) | Applied::Unsupported(why) => {
                anyhow::bail!("an empty config was refused: {why}")
            }
        }
    }
}
