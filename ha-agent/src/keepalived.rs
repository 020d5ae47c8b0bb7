//! `ha-agent import-keepalived FILE`: translates a keepalived.conf into an ha-agent config.
//! Each `vrrp_instance` on the first instance's interface becomes a `[[group]]` (its
//! `virtual_router_id` the group id), each tracked `vrrp_script` or interface a `[[check]]`, and
//! the notify scripts hooks. What has no equivalent is listed at the top of the output, each
//! with its line and why, and counted in [`Import::untranslated`]: nothing is dropped silently.

use std::{collections::BTreeSet, fmt::Write as _};

mod parse;
mod render;

pub use parse::SyntaxError;
use parse::{parse, Item};
use render::{quote, render_check, render_group};

/// The translation of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// The ha-agent config, as TOML with comments.
    pub toml: String,
    /// What could not be translated, one line each.
    pub untranslated: Vec<String>,
}

/// A `vrrp_script` block.
#[derive(Clone, Debug, Default)]
struct Script {
    command: Option<String>,
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    rise: Option<u32>,
    fall: Option<u32>,
    weight: i32,
}

/// One `[[check]]` to write.
struct Check {
    name: String,
    kind: (&'static str, String),
    script: Script,
    weight: i32,
}

/// One `[[group]]` to write.
#[derive(Default)]
struct Group {
    instance: String,
    line: usize,
    id: u32,
    vips: Vec<String>,
    priority: Option<u32>,
    preempt: bool,
    preempt_delay_ms: Option<u64>,
    track: Vec<String>,
    hooks: Vec<(&'static str, String)>,
}

/// What the translation gathers as it goes.
#[derive(Default)]
struct Translation {
    iface: Option<String>,
    intervals: BTreeSet<u64>,
    peers: BTreeSet<String>,
    multicast_instances: usize,
    garp_refresh_ms: Option<u64>,
    checks: Vec<Check>,
    groups: Vec<Group>,
    untranslated: Vec<String>,
}

/// Translates the text of a keepalived.conf.
pub fn import(text: &str) -> Result<Import, SyntaxError> {
    let items = parse(text)?;
    let scripts: Vec<(String, Script)> = items
        .iter()
        .filter(|item| item.name() == "vrrp_script")
        .map(|item| (item.args().first().cloned().unwrap_or_default(), script(item)))
        .collect();
    let mut translation = Translation::default();
    for item in &items {
        match item.name() {
            "vrrp_script" => {}
            "vrrp_instance" => translation.instance(item, &scripts),
            "global_defs" => translation.skip(
                item,
                "global settings (router id, mail, SNMP, script security) have no ha-agent equivalent",
            ),
            "virtual_server" | "virtual_server_group" => translation
                .skip(item, "LVS load balancing: ha-agent moves VIPs only; keep the LVS part elsewhere"),
            "vrrp_sync_group" => translation.skip(
                item,
                "ha-agent groups fail over on their own: to keep VIPs together, put them in one [[group]]",
            ),
            "include" => translation.skip(item, "not followed: import each included file too"),
            _ => translation.skip(item, "no ha-agent equivalent"),
        }
    }
    let toml = translation.render();
    Ok(Import { toml, untranslated: translation.untranslated })
}

/// A duration in seconds as keepalived writes it (`1`, `0.1`), in ms.
fn seconds_ms(text: Option<&String>) -> Option<u64> {
    let seconds: f64 = text?.parse().ok()?;
    (seconds.is_finite() && seconds > 0.0).then(|| (seconds * 1000.0).round() as u64)
}

fn number<T: std::str::FromStr>(text: Option<&String>) -> Option<T> {
    text?.parse().ok()
}

fn script(item: &Item) -> Script {
    let mut script = Script::default();
    for statement in item.items() {
        let value = statement.args().first();
        match statement.name() {
            "script" => script.command = value.cloned(),
            "interval" => script.interval_ms = seconds_ms(value),
            "timeout" => script.timeout_ms = seconds_ms(value),
            "rise" => script.rise = number(value),
            "fall" => script.fall = number(value),
            "weight" => script.weight = number(value).unwrap_or(0),
            _ => {}
        }
    }
    script
}

impl Translation {
    fn note(&mut self, line: usize, what: &str, why: &str) {
        self.untranslated.push(format!("line {line}: {what}: {why}"));
    }

    fn skip(&mut self, item: &Item, why: &str) {
        let what = item.words.join(" ");
        self.note(item.line, &what, why);
    }

    fn instance(&mut self, item: &Item, scripts: &[(String, Script)]) {
        let name = item.args().first().cloned().unwrap_or_default();
        let value =
            |key: &str| item.items().iter().find(|s| s.name() == key).and_then(|s| s.args().first().cloned());
        let iface = value("interface").unwrap_or_default();
        match &self.iface {
            None => self.iface = Some(iface.clone()),
            Some(first) if *first != iface => {
                let why = format!(
                    "on {iface}, not {first}: run one ha-agent per interface (import it again for {iface})"
                );
                return self.note(item.line, &format!("vrrp_instance {name}"), &why);
            }
            Some(_) => {}
        }
        let Some(id) = value("virtual_router_id").and_then(|id| id.parse::<u32>().ok()) else {
            return self.note(item.line, &format!("vrrp_instance {name}"), "no virtual_router_id");
        };
        if self.groups.iter().any(|g| g.id == id) {
            return self.note(
                item.line,
                &format!("vrrp_instance {name}"),
                "a second instance with its virtual_router_id",
            );
        }
        let mut group =
            Group { instance: name.clone(), line: item.line, id, preempt: true, ..Group::default() };
        let mut unicast = false;
        for statement in item.items() {
            self.instance_statement(statement, &mut group, scripts, &iface, &mut unicast);
        }
        if !unicast {
            self.multicast_instances += 1;
        }
        self.groups.push(group);
    }

    fn instance_statement(
        &mut self,
        statement: &Item,
        group: &mut Group,
        scripts: &[(String, Script)],
        iface: &str,
        unicast: &mut bool,
    ) {
        let value = statement.args().first();
        let name = group.instance.clone();
        match statement.name() {
            // The election decides; the initial state and the interface are implied.
            "state" | "interface" | "virtual_router_id" => {}
            "priority" => group.priority = number(value),
            "advert_int" => {
                self.intervals.insert(seconds_ms(value).unwrap_or(1000));
            }
            "nopreempt" => group.preempt = false,
            "preempt_delay" => group.preempt_delay_ms = seconds_ms(value),
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                for entry in statement.items() {
                    self.vip(entry, group, iface);
                }
            }
            "track_script" => {
                for entry in statement.items() {
                    self.track_script(entry, group, scripts);
                }
            }
            "track_interface" => {
                for entry in statement.items() {
                    let tracked = entry.name().to_string();
                    let weight = weight_override(entry).unwrap_or(0);
                    let kind = ("interface", tracked.clone());
                    let check = self.add_check(&format!("if-{tracked}"), kind, Script::default(), weight);
                    group.track.push(check);
                }
            }
            "notify_master" => group.hooks.push(("notify_active", value.cloned().unwrap_or_default())),
            "notify_backup" => group.hooks.push(("notify_standby", value.cloned().unwrap_or_default())),
            "notify_fault" => group.hooks.push(("notify_fault", value.cloned().unwrap_or_default())),
            "notify" => {
                // keepalived calls it with: INSTANCE, the name, MASTER|BACKUP|FAULT, the priority.
                let script = value.cloned().unwrap_or_default();
                let priority = group.priority.unwrap_or(100);
                group.hooks.push((
                    "notify",
                    format!(
                        "case \"$HA_NEW_STATE\" in ACTIVE) s=MASTER ;; STANDBY) s=BACKUP ;; *) s=\"$HA_NEW_STATE\" ;; esac; \
                         exec {script} INSTANCE {name} \"$s\" {priority}"
                    ),
                ));
            }
            "unicast_peer" => {
                *unicast = true;
                self.peers.extend(statement.items().iter().map(|peer| peer.name().to_string()));
            }
            "garp_master_refresh" => self.garp_refresh_ms = seconds_ms(value),
            "authentication" => self.note(
                statement.line,
                "authentication",
                "ha-agent signs every heartbeat with SipHash: run `ha-agent keygen` and copy the key file to every node",
            ),
            "unicast_src_ip" => {
                self.note(statement.line, "unicast_src_ip", "ha-agent sends from the interface's own address");
            }
            other => self.note(statement.line, &format!("{other} in vrrp_instance {name}"), "no ha-agent equivalent"),
        }
    }

    fn vip(&mut self, entry: &Item, group: &mut Group, iface: &str) {
        let address = entry.name();
        let vip = if address.contains('/') {
            address.to_string()
        } else if address.contains(':') {
            format!("{address}/128")
        } else {
            format!("{address}/32")
        };
        let options = entry.args();
        if let Some(dev) = options.windows(2).find(|w| w[0] == "dev").map(|w| &w[1]) {
            if dev != iface {
                let why = format!("on {dev}: ha-agent puts a group's VIPs on its own interface ({iface})");
                return self.note(entry.line, &format!("VIP {address}"), &why);
            }
        }
        let extra: Vec<&String> =
            options.iter().filter(|o| !matches!(o.as_str(), "dev") && *o != iface).collect();
        if !extra.is_empty() {
            let words: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
            self.note(
                entry.line,
                &format!("VIP {address} options {}", words.join(" ")),
                "not kept (label, scope, broadcast)",
            );
        }
        let total: usize = self.groups.iter().map(|g| g.vips.len()).sum::<usize>() + group.vips.len();
        if total >= ha_common::MAX_FENCED_VIPS {
            return self.note(
                entry.line,
                &format!("VIP {vip}"),
                &format!(
                    "more than {max} VIPs: one ha-agent serves at most {max}",
                    max = ha_common::MAX_FENCED_VIPS
                ),
            );
        }
        group.vips.push(vip);
    }

    fn track_script(&mut self, entry: &Item, group: &mut Group, scripts: &[(String, Script)]) {
        let name = entry.name();
        let Some((_, script)) = scripts.iter().find(|(n, _)| n == name) else {
            return self.note(entry.line, &format!("track_script {name}"), "no vrrp_script of that name");
        };
        let Some(command) = script.command.clone() else {
            return self.note(entry.line, &format!("vrrp_script {name}"), "no script line");
        };
        if let (Some(timeout), interval) = (script.timeout_ms, script.interval_ms.unwrap_or(1000)) {
            if timeout > interval {
                let why =
                    format!("longer than its interval: ha-agent ends a probe at its interval, {interval} ms");
                self.note(entry.line, &format!("vrrp_script {name} timeout"), &why);
            }
        }
        let weight = weight_override(entry).unwrap_or(script.weight);
        let check = self.add_check(name, ("exec", command), script.clone(), weight);
        group.track.push(check);
    }

    /// Adds a check (once per name and weight); returns the name groups track it by.
    fn add_check(&mut self, name: &str, kind: (&'static str, String), script: Script, weight: i32) -> String {
        let name = match self.checks.iter().find(|c| c.name == name) {
            Some(existing) if existing.weight == weight => return existing.name.clone(),
            Some(_) => format!("{name}-weight{weight}"),
            None => name.to_string(),
        };
        if !self.checks.iter().any(|c| c.name == name) {
            self.checks.push(Check { name: name.clone(), kind, script, weight });
        }
        name
    }

    fn render(&mut self) -> String {
        let interval = self.intervals.iter().next().copied().unwrap_or(1000);
        if self.intervals.len() > 1 {
            let all: Vec<String> = self.intervals.iter().map(|ms| format!("{ms} ms")).collect();
            self.untranslated.push(format!(
                "advert_int: instances differ ({}): every group of an agent beats at one interval, {interval} ms",
                all.join(", ")
            ));
        }
        if !self.peers.is_empty() && self.multicast_instances > 0 {
            self.untranslated.push(
                "unicast_peer: some instances multicast and some unicast: every group uses the unicast peers"
                    .into(),
            );
        }
        let mut out = String::from(
            "# ha-agent config imported from keepalived.conf by `ha-agent import-keepalived`.\n",
        );
        out.push_str(
            "# Heartbeats are signed: run `ha-agent keygen` once and copy its key file to every node.\n",
        );
        if self.untranslated.is_empty() {
            out.push_str("# Everything was translated.\n");
        } else {
            let _ = writeln!(out, "#\n# NOT TRANSLATED ({}):", self.untranslated.len());
            for line in &self.untranslated {
                let _ = writeln!(out, "# - {line}");
            }
        }
        let _ = writeln!(out, "\niface = {}", quote(self.iface.as_deref().unwrap_or("eth0")));
        let _ = writeln!(out, "interval = \"{interval}ms\"");
        if !self.peers.is_empty() {
            let peers: Vec<String> = self.peers.iter().map(|p| quote(p)).collect();
            let _ = writeln!(out, "peers = [{}]", peers.join(", "));
        }
        if let Some(refresh) = self.garp_refresh_ms {
            let _ = writeln!(out, "garp_refresh = \"{refresh}ms\"");
        }
        for check in &self.checks {
            render_check(&mut out, check);
        }
        for group in &self.groups {
            render_group(&mut out, group);
        }
        out
    }
}

/// `weight N` after a tracked script or interface.
fn weight_override(entry: &Item) -> Option<i32> {
    entry.args().windows(2).find(|w| w[0] == "weight").and_then(|w| w[1].parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_scripts_and_hooks_translate() {
        let text = "vrrp_script chk {\n script \"pidof haproxy\"\n interval 2\n fall 3\n weight -20\n}\n\
            vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 7\n priority 150\n advert_int 0.5\n nopreempt\n\
            virtual_ipaddress {\n 192.0.2.7\n }\n track_script {\n chk weight -50\n }\n notify_master \"/bin/up\"\n smtp_alert\n}\n";
        let import = import(text).unwrap();
        let config: toml::Table = import.toml.parse().unwrap();
        assert_eq!(config["iface"].as_str(), Some("eth0"));
        assert_eq!(config["interval"].as_str(), Some("500ms"));
        let group = &config["group"][0];
        assert_eq!(group["id"].as_integer(), Some(7));
        assert_eq!(group["vips"][0].as_str(), Some("192.0.2.7/32"));
        assert_eq!((group["priority"].as_integer(), group["preempt"].as_bool()), (Some(150), Some(false)));
        assert_eq!(group["notify_active"].as_str(), Some("/bin/up"));
        let check = &config["check"][0];
        assert_eq!(
            (check["exec"].as_str(), check["weight"].as_integer()),
            (Some("pidof haproxy"), Some(-50)),
            "the override wins"
        );
        assert_eq!(group["track"][0].as_str(), check["name"].as_str());
        assert_eq!(
            import.untranslated,
            ["line 20: smtp_alert in vrrp_instance VI_1: no ha-agent equivalent"]
        );
    }
}
