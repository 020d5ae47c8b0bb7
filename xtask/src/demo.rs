//! `cargo xtask demo`: three agents (priorities 100, 150, 200) and a client on a LAN in network
//! namespaces. Shows who is ACTIVE, cuts its link and prints the outage the client saw (it pings
//! the VIP every 5 ms), heals, shows that exactly one node holds the VIP, stops the ACTIVE with
//! SIGTERM, and cleans everything up.

use std::{thread, time::Duration};

use anyhow::Context as _;
use ha_tests::{agent_binary, longest_gap_ms, wait_for, Lan, Prober, VIP_CIDR};

use crate::{require_root, use_release_agent};

const CLIENT: usize = 3;
const PRIORITIES: [u8; 3] = [100, 150, 200];

fn name(index: usize) -> String {
    format!("h{}", index + 1)
}

fn describe_holders(lan: &Lan) -> String {
    let holders = lan.vip_holders();
    if holders.is_empty() {
        return "nobody".into();
    }
    holders.iter().map(|&i| format!("{} ({})", name(i), lan.hosts[i].mac)).collect::<Vec<_>>().join(", ")
}

/// Runs the demo.
pub fn run() -> anyhow::Result<()> {
    require_root("demo")?;
    use_release_agent()?;
    println!(
        "ha-agent demo: a LAN in network namespaces: a switch, three agents sharing {VIP_CIDR}, and a client"
    );

    let lan = Lan::new("demo", 4).context("building the LAN")?;
    let mut agents = Vec::new();
    for (i, &priority) in PRIORITIES.iter().enumerate() {
        agents.push(lan.start_agent(i, priority, &[])?);
        println!("  started the agent on {} ({}) with priority {priority}", name(i), lan.hosts[i].addr);
    }
    let took = wait_for(Duration::from_secs(5), "the first election", || lan.vip_holders().len() == 1)?;
    let active = lan.vip_holders()[0];
    println!(
        "\n1. first election, {:.0} ms after start: {} is ACTIVE",
        took.as_secs_f64() * 1000.0,
        name(active)
    );
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &lan.hosts[active].ns.name])
        .arg(agent_binary())
        .arg("status")
        .arg("--run-dir")
        .arg(&agents[active].run_dir)
        .output()?;
    for line in String::from_utf8_lossy(&status.stdout).lines() {
        println!("   | {line}");
    }

    println!(
        "\n2. cutting {}'s link (its switch port goes down); the client pings the VIP every 5 ms",
        name(active)
    );
    let prober = Prober::start(&lan, CLIENT)?;
    thread::sleep(Duration::from_millis(500));
    lan.cut(active)?;
    wait_for(Duration::from_secs(3), "a takeover", || lan.vip_holders().iter().any(|&i| i != active))?;
    thread::sleep(Duration::from_millis(500));
    let outage = longest_gap_ms(&prober.stop()?);
    let successor = *lan.vip_holders().iter().find(|&&i| i != active).expect("checked above");
    println!("   {} took over; the client's longest gap between answers: {outage:.0} ms", name(successor));
    println!("   the client's ARP entry for the VIP: {}", lan.neighbour_mac(CLIENT).unwrap_or_default());
    let cut_off = agents[active].status()?;
    println!(
        "   VIP held by: {}; {} lost its carrier and is {} ({}): it gave its copy up",
        describe_holders(&lan),
        name(active),
        cut_off["state"].as_str().unwrap_or("?"),
        cut_off["fault"].as_str().unwrap_or("no fault")
    );

    println!("\n3. healing {}'s link", name(active));
    let prober = Prober::start(&lan, CLIENT)?;
    lan.heal(active)?;
    let took = wait_for(Duration::from_secs(3), "the healed node back", || lan.vip_holders() == [active])?;
    thread::sleep(Duration::from_millis(500));
    let outage = longest_gap_ms(&prober.stop()?);
    let holder = lan.vip_holders()[0];
    println!(
        "   {} listened for a dead time, then took the VIP back after {:.0} ms: {}",
        name(active),
        took.as_secs_f64() * 1000.0,
        describe_holders(&lan)
    );
    println!("   the client's longest gap between answers meanwhile: {outage:.0} ms");

    println!("\n4. planned stop: SIGTERM to {}", name(holder));
    let prober = Prober::start(&lan, CLIENT)?;
    thread::sleep(Duration::from_millis(500));
    agents[holder].signal(libc::SIGTERM);
    let code = agents[holder].wait_exit(Duration::from_secs(3))?;
    thread::sleep(Duration::from_millis(500));
    let outage = longest_gap_ms(&prober.stop()?);
    println!(
        "   it exited with {}; VIP held by: {}; the client's longest gap between answers: {outage:.0} ms",
        code.map_or("a signal".into(), |c| format!("code {c}")),
        describe_holders(&lan)
    );

    let prefix = lan.prefix.clone();
    drop(agents);
    drop(lan);
    let left = ha_tests::run("ip", &["netns", "list"])?;
    let leftovers = left.lines().filter(|l| l.starts_with(&prefix)).count();
    println!("\ncleaned up: {leftovers} of the demo's namespaces left");
    Ok(())
}
