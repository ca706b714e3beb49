//! `initret bench --plot FILE.svg`: lookups/s against queries per call,
//! log-log, one line per strategy and backend, the memcpy reference dashed,
//! one panel per table shape (words per row and rows), and with
//! `--scaling` a panel of lookups/s against threads per shape. Drawn with plotters' SVG backend only: text is left to the
//! SVG viewer, so no font files or system font libraries are needed.

use std::collections::BTreeSet;

use plotters::prelude::*;

use crate::bench::{BenchRow, Shape};
use crate::error::CliError;

/// Panels per row of the figure.
const COLUMNS: usize = 3;
/// Size of one panel in pixels.
const PANEL: (u32, u32) = (560, 420);
/// Width of the legend strip on the right, and height of the title.
const LEGEND_WIDTH: u32 = 380;
const TITLE_HEIGHT: u32 = 40;
/// Line colours (Tableau 10 without its pale yellow); memcpy is black.
const COLORS: [RGBColor; 9] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0xE1, 0x57, 0x59),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xBA, 0xB0, 0xAC),
];

/// One line of the figure: a strategy on a backend, in the same colour in
/// every panel.
struct Line {
    strategy: String,
    backend: String,
    color: RGBColor,
}

impl Line {
    fn is_reference(&self) -> bool {
        self.strategy == "memcpy"
    }

    fn is_initret(&self) -> bool {
        rank(&self.strategy) == 0
    }

    fn style(&self) -> ShapeStyle {
        self.color
            .stroke_width(if self.is_initret() { 3 } else { 2 })
    }

    fn label(&self) -> String {
        if self.backend == "cpu" {
            self.strategy.clone()
        } else {
            format!("{} ({})", self.strategy, self.backend)
        }
    }
}

/// The rows as an SVG document: one panel per table shape, a shared legend
/// on the right.
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
    // With several thread counts (`--scaling`), the queries panels show the
    // largest, and each shape measured at more than one gets a scaling panel.
    let max_threads = rows.iter().filter_map(|r| r.threads).max();
    let scaling = scaling_panels(&rows);
    let all_rows = rows;
    let rows: Vec<&BenchRow> = all_rows
        .iter()
        .copied()
        .filter(|r| r.threads.is_none() || r.threads == max_threads)
        .collect();
    // Panels in the order the sweep ran them.
    let mut panels: Vec<(usize, usize)> = Vec::new();
    for r in &rows {
        if !panels.contains(&(r.rows, r.words_per_row)) {
            panels.push((r.rows, r.words_per_row));
        }
    }
    // initret's own lines first (they get the first colours and the top
    // of the legend), then the references, then the baselines.
    let mut next_color = COLORS.iter().cycle();
    let lines: Vec<Line> = rows
        .iter()
        .map(|r| (rank(&r.strategy), r.strategy.clone(), r.backend.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|(_, strategy, backend)| {
            let color = if strategy == "memcpy" {
                BLACK
            } else {
                next_color.next().copied().unwrap_or(BLACK)
            };
            Line {
                strategy,
                backend,
                color,
            }
        })
        .collect();
    let panel_count = panels.len() + scaling.len();
    let columns = panel_count.min(COLUMNS);
    let grid_rows = panel_count.div_ceil(COLUMNS);
    let grid_width = PANEL.0 * columns as u32;
    let size = (
        grid_width + LEGEND_WIDTH,
        PANEL.1 * grid_rows as u32 + TITLE_HEIGHT,
    );

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let root = root
            .titled(
                "initret bench: lookups/s against queries per call (log-log); dashed: memcpy of the same bytes",
                ("sans-serif", 20),
            )
            .map_err(plot_error)?;
        let (grid, legend) = root.split_horizontally(grid_width);
        let areas = grid.split_evenly((grid_rows, columns));
        for (panel, area) in panels.iter().zip(&areas) {
            let in_panel: Vec<&BenchRow> = rows
                .iter()
                .copied()
                .filter(|r| (r.rows, r.words_per_row) == *panel)
                .collect();
            draw_panel(area, *panel, &in_panel, &lines)?;
        }
        for (shape, area) in scaling.iter().zip(areas.iter().skip(panels.len())) {
            let in_panel: Vec<&BenchRow> = all_rows
                .iter()
                .copied()
                .filter(|r| r.threads.is_some() && r.shape() == *shape)
                .collect();
            draw_scaling_panel(area, *shape, &in_panel, &lines)?;
        }
        draw_legend(&legend, &lines)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    (rows, words): (usize, usize),
    in_panel: &[&BenchRow],
    lines: &[Line],
) -> Result<(), CliError> {
    let (x_min, x_max) = bounds(in_panel.iter().map(|r| r.queries as f64));
    let (y_min, y_max) = bounds(in_panel.iter().map(|r| r.lookups_per_s));
    let caption = format!(
        "{words} word{}/row, {} rows",
        if words == 1 { "" } else { "s" },
        power_of_two(rows as f64)
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
    for line in lines {
        let points: Vec<(f64, f64)> = in_panel
            .iter()
            .filter(|r| r.strategy == line.strategy && r.backend == line.backend)
            .map(|r| (r.queries as f64, r.lookups_per_s))
            .collect();
        draw_line(&mut chart, line, points)?;
    }
    Ok(())
}

/// One line of a panel through `points` (sorted here): dashed for the
/// reference, solid otherwise.
fn draw_line<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    line: &Line,
    mut points: Vec<(f64, f64)>,
) -> Result<(), CliError>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let style = line.style();
    if line.is_reference() {
        chart
            .draw_series(DashedLineSeries::new(points, 6, 4, style))
            .map_err(plot_error)?;
    } else {
        chart
            .draw_series(LineSeries::new(points, style))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// The shapes measured at more than one thread count, in sweep order.
fn scaling_panels(rows: &[&BenchRow]) -> Vec<Shape> {
    let mut shapes: Vec<Shape> = Vec::new();
    for r in rows {
        let shape = r.shape();
        if shapes.contains(&shape) {
            continue;
        }
        let threads: BTreeSet<usize> = rows
            .iter()
            .filter(|o| o.shape() == shape)
            .filter_map(|o| o.threads)
            .collect();
        if threads.len() > 1 {
            shapes.push(shape);
        }
    }
    shapes
}

/// Lookups/s against CPU threads for one shape (log y).
fn draw_scaling_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    shape: Shape,
    in_panel: &[&BenchRow],
    lines: &[Line],
) -> Result<(), CliError> {
    let max_threads = in_panel.iter().filter_map(|r| r.threads).max().unwrap_or(1);
    let (y_min, y_max) = bounds(in_panel.iter().map(|r| r.lookups_per_s));
    let caption = format!(
        "scaling: {} queries, {} rows × {}",
        power_of_two(shape.queries as f64),
        power_of_two(shape.rows as f64),
        shape.words_per_row
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(
            0.5f64..max_threads as f64 + 0.5,
            (y_min / 2.0..y_max * 2.0).log_scale(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("CPU threads")
        .y_desc("lookups/s")
        .x_labels(max_threads.min(16))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0e}"))
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(plot_error)?;
    for line in lines {
        let points: Vec<(f64, f64)> = in_panel
            .iter()
            .filter(|r| r.strategy == line.strategy && r.backend == line.backend)
            .filter_map(|r| r.threads.map(|t| (t as f64, r.lookups_per_s)))
            .collect();
        if points.is_empty() {
            continue;
        }
        draw_line(&mut chart, line, points)?;
    }
    Ok(())
}

/// The legend strip: a sample of each line and its label.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    lines: &[Line],
) -> Result<(), CliError> {
    for (i, line) in lines.iter().enumerate() {
        let y = 40 + 24 * i as i32;
        let style = line.style();
        let segments: Vec<(i32, i32)> = if line.is_reference() {
            vec![(10, 16), (22, 28), (34, 40)]
        } else {
            vec![(10, 40)]
        };
        for (x0, x1) in segments {
            area.draw(&PathElement::new(vec![(x0, y), (x1, y)], style))
                .map_err(plot_error)?;
        }
        area.draw(&Text::new(
            line.label(),
            (48, y - 7),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(plot_error)?;
    }
    Ok(())
}

/// 0 for initret's own strategies, 1 for the references, 2 for the rest.
fn rank(strategy: &str) -> u8 {
    match strategy {
        s if s.starts_with("initret") || s.starts_with("gpu-") => 0,
        "memcpy" | "naive-rayon" => 1,
        _ => 2,
    }
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
