//! `initret bench --plot FILE.svg`: lookups/s against queries per call,
//! log-log, one line per strategy and backend, the memcpy reference dashed,
//! one panel per table shape (words per row, and rows when the sweep
//! varies them). Drawn with plotters' SVG backend only: text is left to the
//! SVG viewer, so no font files or system font libraries are needed.

use std::collections::BTreeSet;

use plotters::prelude::*;

use crate::bench::BenchRow;
use crate::error::CliError;

/// Panels per row of the figure.
const COLUMNS: usize = 3;
/// Size of one panel in pixels.
const PANEL: (u32, u32) = (560, 420);

/// The rows as an SVG document.
///
/// ```
/// use initret_cli::bench::{BenchRow, Shape};
///
/// let row = |strategy: &str, queries: usize, seconds: f64| {
///     BenchRow::new(strategy, "cpu", "-", Shape { queries, rows: 1 << 16, words_per_row: 1 }, seconds)
/// };
/// let rows = [row("memcpy", 1024, 1e-6), row("memcpy", 4096, 3e-6), row("initret-cpu", 1024, 2e-6)];
/// let svg = initret_cli::plot::render_svg(&rows)?;
/// assert!(svg.starts_with("<svg") && svg.contains("initret-cpu") && svg.contains("1 word/row"));
/// assert!(initret_cli::plot::render_svg(&[]).is_err());
/// # Ok::<(), initret_cli::error::CliError>(())
/// ```
pub fn render_svg(rows: &[BenchRow]) -> Result<String, CliError> {
    let rows: Vec<&BenchRow> = rows
        .iter()
        .filter(|r| r.lookups_per_s.is_finite() && r.lookups_per_s > 0.0 && r.queries > 0)
        .collect();
    if rows.is_empty() {
        return Err(CliError::Plot("no measured rows to plot".into()));
    }
    // Panels: seed-sized rows first, as the sweep runs them.
    let panels: Vec<(usize, usize)> = {
        let mut seen = Vec::new();
        for r in &rows {
            if !seen.contains(&(r.rows, r.words_per_row)) {
                seen.push((r.rows, r.words_per_row));
            }
        }
        seen
    };
    // Every line keeps its colour in every panel.
    let lines: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.strategy.clone(), r.backend.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let columns = panels.len().min(COLUMNS);
    let grid_rows = panels.len().div_ceil(COLUMNS);
    let size = (PANEL.0 * columns as u32, PANEL.1 * grid_rows as u32);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let areas = root.split_evenly((grid_rows, columns));
        for (panel, area) in panels.iter().zip(&areas) {
            let in_panel: Vec<&&BenchRow> = rows
                .iter()
                .filter(|r| (r.rows, r.words_per_row) == *panel)
                .collect();
            draw_panel(area, *panel, &in_panel, &lines, panels.len() > 1)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    (rows, words): (usize, usize),
    in_panel: &[&&BenchRow],
    lines: &[(String, String)],
    name_rows: bool,
) -> Result<(), CliError> {
    let (x_min, x_max) = bounds(in_panel.iter().map(|r| r.queries as f64));
    let (y_min, y_max) = bounds(in_panel.iter().map(|r| r.lookups_per_s));
    let caption = format!(
        "{words} word{}/row{}",
        if words == 1 { "" } else { "s" },
        if name_rows {
            format!(", {} rows", power_of_two(rows as f64))
        } else {
            String::new()
        }
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (x_min / 1.5..x_max * 1.5).log_scale(),
            (y_min / 2.0..y_max * 2.0).log_scale(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("queries per call")
        .y_desc("lookups/s")
        .x_label_formatter(&|x| power_of_two(*x))
        .y_label_formatter(&|y| format!("{y:.0e}"))
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(plot_error)?;
    for (index, (strategy, backend)) in lines.iter().enumerate() {
        let mut points: Vec<(f64, f64)> = in_panel
            .iter()
            .filter(|r| &r.strategy == strategy && &r.backend == backend)
            .map(|r| (r.queries as f64, r.lookups_per_s))
            .collect();
        if points.is_empty() {
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = Palette99::pick(index).to_rgba();
        let style = color.stroke_width(2);
        let label = if backend == "cpu" {
            strategy.clone()
        } else {
            format!("{strategy} ({backend})")
        };
        let annotation = if strategy == "memcpy" {
            chart
                .draw_series(DashedLineSeries::new(points, 6, 4, style))
                .map_err(plot_error)?
        } else {
            chart
                .draw_series(LineSeries::new(points, style))
                .map_err(plot_error)?
        };
        annotation
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 10))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(plot_error)
}

/// Smallest and largest of `values` (all positive and finite here).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// `2^k` when `x` is a power of two, otherwise `x` in short scientific form.
fn power_of_two(x: f64) -> String {
    let k = x.log2().round();
    if (x - k.exp2()).abs() <= 1e-9 * x {
        format!("2^{k}")
    } else {
        format!("{x:.0e}")
    }
}

fn plot_error(e: impl std::fmt::Display) -> CliError {
    CliError::Plot(e.to_string())
}
