//! simulate (being implemented).

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {}

pub fn cli_main(_args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::bail!("simulate is not implemented yet")
}
