//! `--via xds`: the case's policies and workloads over a real gRPC ADS stream (xds::server,
//! tonic) as istiod would send them to ztunnel (xds::from_config); the node's own file holds
//! only the local WorkloadEntries (cgroup, network namespace, labels).

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use xds::ResourceType;
use xds::server::{AdsServer, Served};

use crate::agent::{Agent, Applied};
use crate::case::{Case, Policies};
use crate::delivery::Delivery;
use crate::render::{self, Paths};

const ACK_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Xds {
    runtime: tokio::runtime::Runtime,
    server: AdsServer,
    /// What is served now (a rejected update is served on top of it).
    served: Vec<Served>,
}

impl Xds {
    pub fn start() -> Result<Box<dyn Delivery>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let server = runtime
            .block_on(AdsServer::bind("127.0.0.1:0"))
            .context("start the ADS server")?;
        Ok(Box::new(Self {
            runtime,
            server,
            served: Vec::new(),
        }))
    }

    /// Serves `served` and waits until the agent has applied it (ACK) or refused it (NACK).
    fn serve(&mut self, served: Vec<Served>) -> Result<Applied> {
        let version = self
            .server
            .set_served(served.clone())
            .map_err(|e| anyhow!("serve: {e}"))?;
        match self
            .runtime
            .block_on(self.server.wait_acked(version, ACK_TIMEOUT))
        {
            Ok(()) => {
                self.served = served;
                Ok(Applied::Ok)
            }
            Err(reason) if reason.contains("not ACKed") => Err(anyhow!(reason)),
            Err(reason) => Ok(Applied::Rejected(reason)),
        }
    }
}

impl Delivery for Xds {
    fn agent_address(&self) -> Option<String> {
        Some(self.server.url())
    }

    fn apply(
        &mut self,
        agent: &mut Agent,
        case: &Case,
        policies: &Policies,
        paths: &Paths,
        rejected: bool,
    ) -> Result<Applied> {
        if let Applied::Rejected(why) =
            agent.apply_file(&render::local_entries_text(case, paths))?
        {
            anyhow::bail!("the local WorkloadEntries were refused: {why}");
        }
        if rejected {
            // What the files refuse does not parse, so it has no wire form: the update is a
            // resource whose bytes do not decode, which the client must NACK, keeping the rest.
            let good = self.served.clone();
            let mut served = good.clone();
            served.push(undecodable());
            let outcome = self.serve(served)?;
            // Then the control plane goes back to what the agent accepted, as one fixing its
            // mistake would: a resource it keeps refusing would hold up a restarted agent's
            // initial sync.
            if let Applied::Rejected(why) | Applied::Unsupported(why) = self.serve(good)? {
                anyhow::bail!("the last good resources were refused after a NACK: {why}");
            }
            return Ok(outcome);
        }
        let text = render::config_text(case, policies, paths);
        let config = control::load_config_str("case.yaml", &text)
            .map_err(|d| anyhow!("the case's policies: {}", first_error(&d)))?;
        let resources = match xds::from_config(&config, &control::Settings::default()) {
            Ok(r) => r,
            Err(d) => {
                return Ok(Applied::Unsupported(format!(
                    "no xDS form: {}",
                    first_error(&d)
                )));
            }
        };
        let served = resources
            .iter()
            .map(Served::of)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| anyhow!(e))?;
        self.serve(served)
    }

    fn clear(&mut self, agent: &mut Agent) -> Result<()> {
        if let Applied::Rejected(why) | Applied::Unsupported(why) = self.serve(Vec::new())? {
            anyhow::bail!("an empty update was refused: {why}");
        }
        match agent.apply_file("")? {
            Applied::Ok => Ok(()),
            Applied::Rejected(why) | Applied::Unsupported(why) => {
                anyhow::bail!("an empty config was refused: {why}")
            }
        }
    }
}

fn undecodable() -> Served {
    Served {
        ty: ResourceType::EgressPolicy,
        name: "conformance/undecodable".into(),
        any: envoy_types::pb::google::protobuf::Any {
            type_url: ResourceType::EgressPolicy.type_url().into(),
            value: vec![0xff; 7],
        },
    }
}

fn first_error(d: &control::Diagnostics) -> String {
    d.errors()
        .next()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "invalid".into())
}
