//! The benchmark's PNG chart: every trial's outage per scenario and system, with the median.

use std::path::Path;

use anyhow::{anyhow, Context as _};
use plotters::prelude::*;

use crate::{Report, System};

/// Fonts tried in order for the chart's text (Debian's fonts-dejavu-core has the first).
const FONT_PATHS: [&str; 2] =
    ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"];

fn register_font() -> anyhow::Result<()> {
    let path = FONT_PATHS.iter().find(|p| Path::new(p).exists()).ok_or_else(|| {
        anyhow!("no DejaVuSans.ttf for the chart's text (apt-get install fonts-dejavu-core)")
    })?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{path} is not a usable font"))
}

fn color(system: System) -> RGBColor {
    match system {
        System::HaAgent => RGBColor(0x1f, 0x77, 0xb4),
        System::Keepalived => RGBColor(0xd6, 0x27, 0x28),
    }
}

/// Draws the outage rows of `report` into a PNG at `path`.
pub fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    register_font()?;
    let rows: Vec<_> = report.rows.iter().filter(|r| r.scenario.is_outage()).collect();
    let y_max = rows
        .iter()
        .flat_map(|r| r.results.iter().filter_map(|(_, s)| s.as_ref().map(|s| s.max)))
        .fold(10.0_f64, f64::max)
        * 1.15;
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let title = format!(
        "Outage the client saw, {} trials, interval {} ms (dots: trials, bars: median)",
        report.options.trials,
        report.options.interval.as_millis()
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(rows.len() as f64 - 0.5), 0f64..y_max)
        .map_err(|e| anyhow!("{e}"))?;
    let names: Vec<&str> =
        rows.iter().map(|r| r.scenario.title().split(':').next().unwrap_or_default()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).map_or(String::new(), ToString::to_string)
            } else {
                String::new()
            }
        })
        .y_desc("ms")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;

    let systems = &report.options.systems;
    for (k, &system) in systems.iter().enumerate() {
        let offset = if systems.len() > 1 { (k as f64 - 0.5) * 0.3 } else { 0.0 };
        let style = color(system);
        let mut points = Vec::new();
        let mut medians = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if let Some(summary) = row.of(system) {
                let x = i as f64 + offset;
                let n = summary.samples.len().max(1) as f64;
                points.extend(
                    summary.samples.iter().enumerate().map(|(j, &v)| (x - 0.08 + 0.16 * j as f64 / n, v)),
                );
                medians.push((x, summary.median));
            }
        }
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, style.mix(0.6).filled())))
            .map_err(|e| anyhow!("{e}"))?
            .label(system.name())
            .legend(move |(x, y)| Circle::new((x, y), 4, style.filled()));
        chart
            .draw_series(
                medians.iter().map(|&(x, m)| {
                    PathElement::new(vec![(x - 0.12, m), (x + 0.12, m)], style.stroke_width(3))
                }),
            )
            .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
