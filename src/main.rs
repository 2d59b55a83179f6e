//! The `sluice` binary: flags → configuration → run until Ctrl-C or SIGTERM.

use std::time::Duration;

use anyhow::Context;
use sluice::cli::{self, CliError, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (cli, matches) = match cli::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(CliError::Clap(e)) => e.exit(),
        Err(e) => return Err(e.into()),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Some(Command::Demo(args)) => {
            let mut stdout = std::io::stdout();
            let (running, _) =
                sluice::demo::run(args.listen, Duration::from_millis(300), &mut stdout)
                    .await
                    .context("the demo failed")?;
            if args.once {
                running.stop().await;
                return Ok(());
            }
            println!(
                "\nThe proxy keeps running; try it yourself:\n  {}\nCtrl-C to stop.",
                sluice::demo::try_it(&running.url())
            );
            shutdown_signal().await;
            running.stop().await;
        }
        None => {
            let config = cli.run.into_config(&matches)?;
            let running = sluice::app::start(config)
                .await
                .context("sluice could not start")?;
            shutdown_signal().await;
            tracing::info!("shutting down");
            running.stop().await;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
