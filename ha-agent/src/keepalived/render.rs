//! Writing the translation out: a `[[check]]` table, a `[[group]]` table, a TOML string.

use std::fmt::Write as _;

use super::{Check, Group};

pub(super) fn render_check(out: &mut String, check: &Check) {
    let _ = writeln!(
        out,
        "\n[[check]]\nname = {}\n{} = {}",
        quote(&check.name),
        check.kind.0,
        quote(&check.kind.1)
    );
    let interval = check.script.interval_ms.unwrap_or(1000);
    let _ = writeln!(out, "interval = \"{interval}ms\"");
    if let Some(timeout) = check.script.timeout_ms {
        // ha-agent ends a probe before the next starts.
        let _ = writeln!(out, "timeout = \"{}ms\"", timeout.min(interval));
    }
    for (key, value) in [("rise", check.script.rise), ("fall", check.script.fall)] {
        if let Some(value) = value.filter(|v| *v > 0) {
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    if check.weight == 0 {
        out.push_str("# no weight: the groups that track it go to FAULT while it fails\n");
    } else {
        let _ = writeln!(out, "weight = {}", check.weight.clamp(-254, 254));
    }
}

pub(super) fn render_group(out: &mut String, group: &Group) {
    let _ = writeln!(
        out,
        "\n# vrrp_instance {} (line {})\n[[group]]\nid = {}",
        group.instance, group.line, group.id
    );
    let vips: Vec<String> = group.vips.iter().map(|v| quote(v)).collect();
    let _ = writeln!(out, "vips = [{}]", vips.join(", "));
    let _ = writeln!(out, "priority = {}", group.priority.unwrap_or(100).clamp(1, 255));
    if !group.preempt {
        out.push_str("preempt = false\n");
    }
    if let Some(delay) = group.preempt_delay_ms {
        let _ = writeln!(out, "preempt_delay = \"{delay}ms\"");
    }
    if !group.track.is_empty() {
        let track: Vec<String> = group.track.iter().map(|t| quote(t)).collect();
        let _ = writeln!(out, "track = [{}]", track.join(", "));
    }
    for (key, command) in &group.hooks {
        let _ = writeln!(out, "{key} = {}", quote(command));
    }
}

/// A TOML string.
pub(super) fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}
