//! The latency chart: one line per workload across the percentiles, on a log scale, since
//! the workloads differ by orders of magnitude.

use std::path::Path;

use anyhow::{anyhow, Context};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::load::PERCENTILES;
use crate::report::Report;

/// Debian's fonts-dejavu-core; `./dev bench` installs it when missing.
const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn register_font() -> anyhow::Result<()> {
    let path = FONT_PATHS
        .iter()
        .find(|path| Path::new(path).exists())
        .context("no DejaVu Sans font found: apt-get install fonts-dejavu-core")?;
    // plotters keeps fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{path} is not a usable font"))
}

pub fn draw(report: &Report, file: &Path) -> anyhow::Result<()> {
    register_font()?;
    let series: Vec<(&str, Vec<f64>)> = report
        .workloads
        .iter()
        .map(|w| {
            (
                w.key,
                PERCENTILES
                    .iter()
                    .map(|p| w.measurement.percentile_ms(*p))
                    .collect(),
            )
        })
        .collect();
    let all = series
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .filter(|v| v.is_finite() && *v > 0.0);
    let (low, high) = all.fold((f64::MAX, f64::MIN), |(low, high), v| {
        (low.min(v), high.max(v))
    });
    let (low, high) = if low <= high {
        (low / 2.0, high * 2.0)
    } else {
        (0.01, 10.0)
    };

    let root = BitMapBackend::new(file, (1100, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let title = if report.context.smoke {
        "aimc latency by percentile (smoke run)"
    } else {
        "aimc latency by percentile"
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        // An empty column on the right holds the legend, clear of a dozen workloads' lines.
        .build_cartesian_2d(
            -0.2f64..(PERCENTILES.len() as f64 + 0.3),
            (low..high).log_scale(),
        )
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_labels(PERCENTILES.len() + 1)
        .x_label_formatter(&|x| {
            let index = x.round() as usize;
            if (x - x.round()).abs() < 0.01 && index < PERCENTILES.len() {
                format!("p{}", PERCENTILES[index])
            } else {
                String::new()
            }
        })
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|y| format!("{y:.2}"))
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (key, values)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite() && **v > 0.0)
            .map(|(x, v)| (x as f64, *v))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))
            .map_err(|e| anyhow!("{e}"))?
            .label(*key)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|point| Circle::new(point, 4, color.filled())),
            )
            .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
