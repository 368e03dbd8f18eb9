//! analyze (being implemented).

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {}

pub fn cli_main(_args: AnalyzeArgs) -> anyhow::Result<()> {
    anyhow::bail!("analyze is not implemented yet")
}
