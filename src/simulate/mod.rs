//! The synthetic exchange (placeholder until the simulator lands).

/// Options of `ctrbid simulate`.
#[derive(Debug, clap::Args)]
pub struct Opts {}

pub fn run(_opts: Opts) -> anyhow::Result<()> {
    anyhow::bail!("simulate is not built yet")
}
