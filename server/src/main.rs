//! `opsight`: the KPI insight server and its command-line tools. See `server/src/lib.rs`
//! for the layout and ARCHITECTURE.md for a tour.

use clap::Parser;

#[tokio::main]
async fn main() {
    server::telemetry::init();
    let cli = server::cli::Cli::parse();
    let result = server::cli::run(cli).await;
    // The last spans (a command's run, its agent calls) reach the collector before exit.
    server::telemetry::flush().await;
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
