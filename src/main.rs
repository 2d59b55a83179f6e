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
    let logging = match &cli.command {
        Some(Command::Stdio(args)) => &args.run,
        _ => &cli.run,
    };
    // A report on stdout is what `plugin` commands are for: their logs (on stderr) say
    // only what went wrong, unless RUST_LOG asks for more.
    let quiet = matches!(cli.command, Some(Command::Plugin(_) | Command::Wit(_)));
    init_logs(logging.log_format, logging.log_file.as_deref(), quiet)?;
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
                // The report says why (its last line: REFUSED); a refusal is an answer,
                // not an error of sluice's.
                std::io::Write::flush(&mut std::io::stdout()).context("writing the report")?;
                std::process::exit(1);
            }
        }
        Some(Command::Plugin(PluginCommand::New(args))) => {
            let created = sluice::scaffold::new(&sluice::scaffold::Options {
                lang: args.lang,
                dir: args.dir,
                name: args.name,
                sdk: args.sdk,
            })?;
            print!("{created}");
        }
        Some(Command::Wit(args)) => {
            let Some((_, text)) = sluice::plugin::WIT
                .iter()
                .find(|(version, _)| *version == args.contract)
            else {
                let known: Vec<&str> = sluice::plugin::WIT.iter().map(|(v, _)| *v).collect();
                anyhow::bail!(
                    "no contract version {:?}: this sluice has {}",
                    args.contract,
                    known.join(", ")
                );
            };
            print!("{text}");
        }
        Some(Command::Reload(args)) => {
            let answer = sluice::admin_client::reload(&args).await?;
            if args.json {
                println!("{}", answer.body);
            } else if answer.reloaded {
                println!("{}", answer.plain());
            } else {
                eprintln!("{}", answer.plain());
            }
            if !answer.reloaded {
                std::process::exit(1);
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
            let workers = cli.run.workers.map_or_else(
                || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
                usize::from,
            );
            sluice::http::workers::install(
                sluice::http::workers::Workers::start(workers)
                    .context("cannot start the connection workers")?,
            )?;
            let (admin_listen, watch) = (cli.run.admin_listen, !cli.run.no_watch);
            let admin_token = admin_token(&cli.run, &matches)?;
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
        Some(Command::Stdio(args)) => {
            let matches = matches
                .subcommand_matches("stdio")
                .expect("clap parsed the stdio subcommand");
            let code = match run_stdio(args.run, matches).await {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("error: {}", ErrorChain(error.as_ref()));
                    1
                }
            };
            // tokio reads stdin on a blocking thread that cannot be interrupted: after a
            // signal, dropping the runtime would wait for the client's next line.
            std::process::exit(code);
        }
    }
    Ok(())
}

/// `sluice stdio`: the chain as for the proxy, fed by the client on stdin and stdout.
async fn run_stdio(run: cli::RunArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    // First: from here on, fd 1 is the protocol's alone.
    #[cfg(unix)]
    let output = sluice::ingress::stdio::take_stdout().context("cannot take over stdout")?;
    #[cfg(not(unix))]
    let output = tokio::io::stdout();
    let (admin_listen, watch) = (run.admin_listen, !run.no_watch);
    let admin_token = admin_token(&run, matches)?;
    let chain_file = run.chain_file(matches);
    let mut config = run.into_config(matches)?;
    if config.access.resource.is_some() {
        // Every request would be refused: nothing on stdin carries a bearer token.
        anyhow::bail!(
            "sluice stdio cannot check tokens: [auth] is for HTTP clients, and a stdio client sends none (the desktop client that launches sluice is the caller)"
        );
    }
    let (max_line, drain) = (config.proxy.max_event_bytes, config.proxy.shutdown_grace);
    let settings = if config.stdio.is_some() {
        sluice::ingress::stdio::Settings::for_stdio_server(max_line, drain)
    } else {
        let (base, settings) =
            sluice::ingress::stdio::Settings::for_endpoint(&config.upstream, max_line, drain);
        config.upstream = base;
        settings
    };
    let (source, watch_files): (sluice::reload::ChainSource, _) = match chain_file {
        // A config file that lists the chain is re-read on every reload.
        Some(file) => {
            let watch_file = vec![file.path.clone()];
            (Box::new(move || file.load()), watch_file)
        }
        None => {
            let specs = config.plugins.clone();
            (Box::new(move || Ok(specs.clone())), Vec::new())
        }
    };
    let mut core = sluice::app::Core::start(&config, source, watch_files)
        .await
        .context("sluice could not start")?;
    if watch {
        core.watch_files()
            .context("cannot watch the plugin files (--no-watch to run without)")?;
    }
    #[cfg(unix)]
    core.reload_on_sighup()
        .context("cannot listen for SIGHUP")?;
    if let Some(addr) = admin_listen {
        core.serve_admin(addr, admin_token)
            .await
            .context("cannot start the admin API")?;
    }
    let plugins = core.proxy().chain().plugins().len();
    tracing::info!(upstream = %config.upstream_label(), path = %settings.path, plugins, "sluice stdio: serving the client on stdin and stdout");
    let served = sluice::ingress::stdio::serve(
        core.proxy().clone(),
        settings,
        tokio::io::stdin(),
        output,
        shutdown_signal(),
    )
    .await;
    tracing::info!("sluice stdio: the client is gone; stopping");
    core.stop().await;
    Ok(served?)
}

/// Logs to stderr, or appended to `file`; never to stdout (`sluice stdio` speaks
/// JSON-RPC there).
fn init_logs(format: LogFormat, file: Option<&std::path::Path>, quiet: bool) -> anyhow::Result<()> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let writer = match file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open --log-file {}", path.display()))?;
            BoxMakeWriter::new(std::sync::Mutex::new(file))
        }
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let mut logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if file.is_some() {
        logs = logs.with_ansi(false); // no colour codes in a file
    }
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
    Ok(())
}

/// The admin token: from `--admin-token-file`, else `--admin-token` (with a warning
/// when that was on the command line).
fn admin_token(run: &cli::RunArgs, matches: &clap::ArgMatches) -> anyhow::Result<Option<String>> {
    if matches.value_source("admin_token") == Some(clap::parser::ValueSource::CommandLine) {
        tracing::warn!(
            "--admin-token on the command line is visible in the process list; prefer SLUICE_ADMIN_TOKEN or --admin-token-file"
        );
    }
    match &run.admin_token_file {
        Some(path) => Ok(Some(sluice::admin_client::read_token_file(path)?)),
        None => Ok(run.admin_token.clone()),
    }
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
