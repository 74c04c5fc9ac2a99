//! `--via xds`: placeholder until the ADS server lands.
use anyhow::Result;

pub struct Xds;

impl Xds {
    pub fn start() -> Result<Box<dyn crate::delivery::Delivery>> {
        anyhow::bail!("--via xds is not built yet")
    }
}
