//! The safety/utility picture: every configuration as a point with error bars across seeds,
//! the Pareto front as a step line, colours by a chosen parameter. SVG through plotters.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::front::FrontReport;
use crate::pareto::Direction;

/// A plot that could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Plots show two objectives.
    #[error("--plot draws two objectives, got {0}; pass exactly two --objective flags")]
    Objectives(usize),
    /// Nothing to draw.
    #[error("--plot: no configuration has both objectives")]
    Empty,
    /// The drawing backend failed (e.g. the file cannot be written).
    #[error("cannot draw {0}: {1}")]
    Draw(String, String),
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws the report's configurations into an SVG string.
pub fn plot_svg(report: &FrontReport, color_by: Option<&str>) -> Result<String, PlotError> {
    if report.objectives.len() != 2 {
        return Err(PlotError::Objectives(report.objectives.len()));
    }
    if report.ranked.is_empty() {
        return Err(PlotError::Empty);
    }
    let (ox, oy) = (&report.objectives[0], &report.objectives[1]);
    let points: Vec<(f64, f64, f64, f64, usize, String)> = report
        .ranked
        .iter()
        .map(|r| {
            let (sx, sy) = (r.config.stats[&ox.metric], r.config.stats[&oy.metric]);
            let group = color_by
                .and_then(|p| r.config.params.get(p))
                .map(|v| v.to_string())
                .unwrap_or_default();
            (sx.mean, sy.mean, sx.std, sy.std, r.rank, group)
        })
        .collect();
    let x_range = padded_range(points.iter().map(|p| (p.0, p.2)));
    let y_range = padded_range(points.iter().map(|p| (p.1, p.3)));
    let label = |o: &crate::pareto::Objective| {
        format!(
            "{} ({} is better)",
            o.metric,
            if o.direction == Direction::Min {
                "lower"
            } else {
                "higher"
            }
        )
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 560)).into_drawing_area();
        let draw = |e: &dyn std::fmt::Display| PlotError::Draw("the SVG".into(), e.to_string());
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(20)
            .caption("Configurations and their Pareto front", ("sans-serif", 20))
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range, y_range)
            .map_err(|e| draw(&e))?;
        chart
            .configure_mesh()
            .x_desc(label(ox))
            .y_desc(label(oy))
            .draw()
            .map_err(|e| draw(&e))?;

        let groups: BTreeMap<&str, usize> = points
            .iter()
            .map(|p| p.5.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, g)| (g, i))
            .collect();
        for (group, index) in &groups {
            let color = PALETTE[index % PALETTE.len()];
            let members: Vec<_> = points.iter().filter(|p| p.5 == *group).collect();
            chart
                .draw_series(members.iter().map(|p| {
                    ErrorBar::new_vertical(p.0, p.1 - p.3, p.1, p.1 + p.3, color.mix(0.6), 6)
                }))
                .map_err(|e| draw(&e))?;
            chart
                .draw_series(members.iter().map(|p| {
                    ErrorBar::new_horizontal(p.1, p.0 - p.2, p.0, p.0 + p.2, color.mix(0.6), 6)
                }))
                .map_err(|e| draw(&e))?;
            let series = chart
                .draw_series(members.iter().map(|p| {
                    let style = if p.4 == 1 {
                        color.filled()
                    } else {
                        color.stroke_width(2)
                    };
                    Circle::new((p.0, p.1), 5, style)
                }))
                .map_err(|e| draw(&e))?;
            if let Some(param) = color_by {
                series
                    .label(format!("{param} = {group}"))
                    .legend(move |(x, y)| Circle::new((x, y), 5, color.filled()));
            }
        }
        // The front as a step line, in the order of the first objective.
        let mut front: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.4 == 1)
            .map(|p| (p.0, p.1))
            .collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut steps = Vec::with_capacity(front.len() * 2);
        for (i, p) in front.iter().enumerate() {
            if i > 0 {
                steps.push((p.0, front[i - 1].1));
            }
            steps.push(*p);
        }
        chart
            .draw_series(LineSeries::new(steps, BLACK.stroke_width(2)))
            .map_err(|e| draw(&e))?
            .label("Pareto front (filled points)")
            .legend(|(x, y)| {
                PathElement::new(vec![(x - 10, y), (x + 10, y)], BLACK.stroke_width(2))
            });
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| draw(&e))?;
        root.present().map_err(|e| draw(&e))?;
    }
    Ok(svg)
}

/// The span of `mean ± std` over all points, padded by 8% on each side.
fn padded_range(values: impl Iterator<Item = (f64, f64)>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold(
        (f64::INFINITY, f64::NEG_INFINITY),
        |(lo, hi), (mean, std)| (lo.min(mean - std), hi.max(mean + std)),
    );
    let pad = ((hi - lo) * 0.08).max(1e-9);
    (lo - pad)..(hi + pad)
}

/// Writes the SVG to `path`.
pub fn write_svg(
    report: &FrontReport,
    color_by: Option<&str>,
    path: &Path,
) -> Result<(), PlotError> {
    let svg = plot_svg(report, color_by)?;
    std::fs::write(path, svg)
        .map_err(|e| PlotError::Draw(path.display().to_string(), e.to_string()))
}
