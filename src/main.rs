//! The `sluice` binary: flags → configuration → run until Ctrl-C or SIGTERM.

use std::time::Duration;

use anyhow::Context;
use sluice::cli::{self, CliError, Command, LogFormat, PluginCommand, TapeCommand};
use sluice::error_chain::ErrorChain;

fn main() -> std::process::ExitCode {
    let ran = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run()));
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line with each cause once (the messages already name their direct
            // cause), and no backtrace: a failed start is the operator's to fix, not a
            // crash of sluice.
            eprintln!("error: {}", ErrorChain(error.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let (cli, matches) = match cli::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(CliError::Clap(e)) => e.exit(),
        Err(e) => return Err(e.into()),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.run.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
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
        Some(Command::Tape(TapeCommand::Serve(args))) => {
            let records = sluice::tape::format::read(&args.tape)?;
            let serving = sluice::tape::serve::start(&records, args.listen, args.timing)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            println!(
                "sluice tape serve: {} exchanges from {} on {}",
                serving.replay.remaining(),
                args.tape.display(),
                serving.url()
            );
            shutdown_signal().await;
            serving.stop().await;
        }
        Some(Command::Plugin(PluginCommand::Check(args))) => {
            let options = args.options()?;
            let report = sluice::check::check(&args.file, &options)?;
            print!("{report}");
            if !report.passed() {
                anyhow::bail!(
                    "sluice would refuse {}: see the problems above",
                    args.file.display()
                );
            }
        }
        Some(Command::Plugin(PluginCommand::Test(args))) => {
            // 0: done (and equal to --expect), 1: differs from --expect, 2: bad input.
            let mut stdout = std::io::stdout().lock();
            let code = match args
                .invocation()
                .map_err(anyhow::Error::from)
                .and_then(|run| Ok(sluice::tape::harness::execute(&run, &mut stdout)?))
            {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(e) => {
                    eprintln!("error: {}", ErrorChain(&*e));
                    2
                }
            };
            std::io::Write::flush(&mut stdout).context("writing the report")?;
            std::process::exit(code);
        }
        None => {
            let (admin_listen, watch) = (cli.run.admin_listen, !cli.run.no_watch);
            let admin_token = match &cli.run.admin_token_file {
                Some(path) => Some(read_token(path)?),
                None => cli.run.admin_token.clone(),
            };
            if matches.value_source("admin_token") == Some(clap::parser::ValueSource::CommandLine) {
                tracing::warn!(
                    "--admin-token on the command line is visible in the process list; prefer SLUICE_ADMIN_TOKEN or --admin-token-file"
                );
            }
            let chain_file = cli.run.chain_file(&matches);
            let config = cli.run.into_config(&matches)?;
            let started = match chain_file {
                // A config file that lists the chain is re-read on every reload.
                Some(file) => {
                    let watch_file = vec![file.path.clone()];
                    let source = Box::new(move || file.load());
                    sluice::app::start_with_source(config, source, watch_file).await
                }
                None => sluice::app::start(config).await,
            };
            let mut running = started.context("sluice could not start")?;
            if watch {
                running
                    .watch_files()
                    .context("cannot watch the plugin files (--no-watch to run without)")?;
            }
            #[cfg(unix)]
            running
                .reload_on_sighup()
                .context("cannot listen for SIGHUP")?;
            if let Some(addr) = admin_listen {
                running
                    .serve_admin(addr, admin_token)
                    .await
                    .context("cannot start the admin API")?;
            }
            shutdown_signal().await;
            tracing::info!("shutting down");
            running.stop().await;
        }
    }
    Ok(())
}

/// The admin token in `path`: its first line, without surrounding whitespace.
fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --admin-token-file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    anyhow::ensure!(
        !token.is_empty(),
        "--admin-token-file {} is empty",
        path.display()
    );
    Ok(token.to_string())
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
