//! The `ha-agent` binary: parses the command line and hands over to the library. The only place
//! that uses anyhow: every error arrives here typed and leaves as one line on stderr.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser as _;
use ha_agent::{
    cli::{Cli, Command, CtlArgs, CtlCommand, Generated, RunArgs, StatusArgs, Target},
    config, daemon, keys, status,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Status(args)) => show_status(&args),
        Some(Command::Generate(args)) => generate(&args.what),
        Some(Command::CheckConfig(args)) => check_config(&args),
        Some(Command::Ctl(args)) => ctl(&args),
        Some(Command::ImportKeepalived(args)) => import_keepalived(&args.file),
        Some(Command::Keygen(args)) => keys::generate(&args.key_file, args.force)
            .map(|()| {
                println!("wrote a new key to {} (mode 0600); copy it to every node", args.key_file.display());
            })
            .map_err(Into::into),
        None => run_agent(&cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ha-agent: error: {}", one_line(&format!("{err:#}")));
            ExitCode::FAILURE
        }
    }
}

/// The error chain on one line. Only the verifier's log spans lines: its first line says what
/// failed and its last why, and `bpftool prog load` gives the whole log to whoever needs it.
fn one_line(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    match (lines.next(), lines.next_back()) {
        (Some(first), Some(last)) => format!("{first} … {last}"),
        (Some(first), None) => first.to_string(),
        (None, _) => String::new(),
    }
}

fn run_agent(args: &RunArgs) -> anyhow::Result<()> {
    let config = config::load(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    Ok(runtime.block_on(daemon::run(config, args.clone()))?)
}

/// Checks the config and its key file as the agent would at start, and says what it means.
fn check_config(args: &RunArgs) -> anyhow::Result<()> {
    let config = config::load(args)?;
    let auth = match &config.key_file {
        Some(path) => {
            let keys = keys::load(path)?;
            format!(
                "key file {} ({} key{})",
                path.display(),
                if keys.next.is_some() { 2 } else { 1 },
                if keys.next.is_some() { "s" } else { "" }
            )
        }
        None => "no authentication (--insecure-no-auth)".to_string(),
    };
    let destination = match &config.destination {
        ha_agent::heartbeat::Destination::Multicast(group) => format!("multicast {group}"),
        ha_agent::heartbeat::Destination::Unicast(peers) => {
            format!("unicast to {}", peers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
        }
    };
    println!(
        "config OK: {} group{} on {}, heartbeat every {} ms ({destination}), dead after {} ms, {auth}",
        config.groups.len(),
        if config.groups.len() == 1 { "" } else { "s" },
        config.iface,
        config.interval.as_millis(),
        config.dead_time.as_millis(),
    );
    for group in &config.groups {
        let vips: Vec<String> = group.vips.iter().map(ToString::to_string).collect();
        let track = if group.track.is_empty() {
            String::new()
        } else {
            format!(", tracks {}", group.track.join(", "))
        };
        println!(
            "group {}: VIPs [{}], priority {}{}{track}",
            group.id,
            vips.join(", "),
            group.priority,
            if group.preempt { "" } else { ", no preemption" },
        );
    }
    for check in &config.checks {
        println!("check {}: {} every {} ms", check.name, check.kind, check.interval.as_millis());
    }
    Ok(())
}

/// Prints the man page or completions, generated from the command line's own definition.
fn generate(what: &Generated) -> anyhow::Result<()> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut out = std::io::stdout().lock();
    match what {
        Generated::Man => clap_mangen::Man::new(command).section("8").render(&mut out)?,
        Generated::Completions { shell } => {
            clap_complete::generate(*shell, &mut command, "ha-agent", &mut out);
        }
    }
    Ok(())
}

/// The run directory of the agent `target` names.
fn run_dir(target: &Target) -> anyhow::Result<PathBuf> {
    Ok(match (&target.run_dir, &target.iface) {
        (Some(dir), _) => dir.clone(),
        (None, Some(iface)) => PathBuf::from(config::DEFAULT_RUN_ROOT).join(iface),
        (None, None) => only_run_dir()?,
    })
}

/// Prints the translation on stdout; says on stderr how much could not be translated.
fn import_keepalived(file: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let import = ha_agent::keepalived::import(&text)
        .with_context(|| format!("{} is not a keepalived config", file.display()))?;
    print!("{}", import.toml);
    match import.untranslated.len() {
        0 => eprintln!("import-keepalived: everything translated"),
        n => eprintln!("import-keepalived: {n} item(s) not translated: listed at the top of the output"),
    }
    Ok(())
}

fn ctl(args: &CtlArgs) -> anyhow::Result<()> {
    let request = match args.command {
        CtlCommand::Drain => ha_agent::control::Request::Drain,
        CtlCommand::Resume => ha_agent::control::Request::Resume,
        CtlCommand::Reload => ha_agent::control::Request::Reload,
        CtlCommand::Handover { to, group } => {
            ha_agent::control::Request::Handover { group: group.map(ha_agent::ids::GroupId), to }
        }
    };
    print!("{}", ha_agent::control::request(&run_dir(&args.target)?, request)?);
    Ok(())
}

fn show_status(args: &StatusArgs) -> anyhow::Result<()> {
    let report = status::fetch(&run_dir(&args.target)?)?;
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

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn errors_leave_as_one_line() {
        assert_eq!(one_line("a: b"), "a: b");
        assert_eq!(
            one_line("load failed: verifier:\n0: r1 = r2\n\n1: invalid access\n"),
            "load failed: verifier: … 1: invalid access"
        );
        assert_eq!(one_line(""), "");
    }
}
