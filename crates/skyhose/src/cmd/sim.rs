use clap::Args;

/// Options of `skyhose sim-relay`.
#[derive(Args, Debug)]
pub struct SimRelayArgs {}

pub async fn run(_args: SimRelayArgs) -> anyhow::Result<()> {
    anyhow::bail!("sim-relay is not implemented yet")
}
