//! `switchboard-demo`: serves the demo page and bridges its WebSocket to a running
//! Switchboard server's control socket. See the crate documentation and README.md.

use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// The Switchboard demo backend: open the printed URL in two browser tabs.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Where to serve the page and its WebSocket.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The media server's control socket (`HOST:PORT` or `unix:PATH`).
    #[arg(long, default_value = "127.0.0.1:7700")]
    rpc: String,
    /// The media server's rpc.token, when it has one.
    #[arg(long, env = "SWITCHBOARD_RPC__TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let mut demo =
        match switchboard_demo::serve(&args.listen, &args.rpc, args.token.as_deref()).await {
            Ok(demo) => demo,
            Err(e) => {
                eprintln!("switchboard-demo: {e}");
                return ExitCode::FAILURE;
            }
        };
    println!("open {} in two browser tabs", demo.url());

    // The HTTP server only stops by itself on an error; otherwise Ctrl-C ends the demo.
    let outcome = tokio::select! {
        stopped = demo.stopped() => Some(stopped),
        signal = tokio::signal::ctrl_c() => match signal {
            Ok(()) => None,
            Err(e) => Some(Err(switchboard_demo::DemoError::Serve(format!(
                "cannot wait for Ctrl-C: {e}"
            )))),
        },
    };
    let outcome = match outcome {
        Some(stopped) => stopped,
        None => demo.shutdown().await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
