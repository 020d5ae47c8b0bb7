//! The `ha-agent` binary: parses the command line and hands over to the library.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser as _;
use ha_agent::{
    config::{self, Cli, Command, Config, StatusArgs},
    daemon, status,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Status(args)) => show_status(&args),
        Some(Command::Keygen(args)) => ha_agent::keys::generate(&args.key_file, args.force)
            .map(|()| {
                println!("wrote a new key to {} (mode 0600); copy it to every node", args.key_file.display())
            })
            .map_err(Into::into),
        None => run_agent(&cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ha-agent: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_agent(args: &config::RunArgs) -> anyhow::Result<()> {
    let file = config::read_file(args.config.as_deref())?;
    let config = Config::resolve(args, file)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(daemon::run(config))
}

fn show_status(args: &StatusArgs) -> anyhow::Result<()> {
    let run_dir = match (&args.run_dir, &args.iface) {
        (Some(dir), _) => dir.clone(),
        (None, Some(iface)) => PathBuf::from(config::DEFAULT_RUN_ROOT).join(iface),
        (None, None) => only_run_dir()?,
    };
    let report = status::fetch(&run_dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", status::render(&report));
    }
    Ok(())
}

/// The run directory of the only agent under the default root, when no flag says which.
fn only_run_dir() -> anyhow::Result<PathBuf> {
    let root = PathBuf::from(config::DEFAULT_RUN_ROOT);
    let dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| status::socket_path(p).exists())
                .collect()
        })
        .unwrap_or_default();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("no agent found under {}: give --run-dir or --iface", root.display()),
        _ => anyhow::bail!("several agents run under {}: give --run-dir or --iface", root.display()),
    }
}
