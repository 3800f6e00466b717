//! `opsight`: the KPI insight server and its command-line tools. See `server/src/lib.rs`
//! for the layout and ARCHITECTURE.md for a tour.

use clap::Parser;

#[tokio::main]
async fn main() {
    server::telemetry::init();
    let cli = server::cli::Cli::parse();
    if let Err(e) = server::cli::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
