//! The demo's two pictures, drawn with plotters' SVG backend: the inferred topology (the
//! VMs on a circle, an edge per communicating pair, its width by intensity) and the
//! workload's throughput over time with the adaptation marked.

use super::procs::{Result, Stop};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use vnet_demo::{Deployment, Summary};

/// Writes both pictures into `out` (created) and records their paths in the summary.
pub fn draw(out: &Path, d: &Deployment, summary: &mut Summary) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let (topology, throughput) = super::picture_paths(out);
    if !summary.topology.is_empty() {
        write(&topology, &topology_svg(d, summary)?)?;
        summary.picture = Some(topology.display().to_string());
    }
    write(&throughput, &throughput_svg(summary)?)?;
    summary.throughput_picture = Some(throughput.display().to_string());
    Ok(())
}

fn write(path: &Path, svg: &str) -> Result<()> {
    std::fs::write(path, svg).map_err(|e| Stop::Failed(format!("{}: {e}", path.display())))
}

fn drawing<E: std::fmt::Display>(e: E) -> Stop {
    Stop::Failed(format!("cannot draw a picture: {e}"))
}

/// The VMs on a circle, labelled with the host each ends on; an undirected edge per
/// communicating pair, as wide as its larger direction's intensity.
pub fn topology_svg(d: &Deployment, summary: &Summary) -> Result<String> {
    let (w, h) = (640i32, 640i32);
    let (cx, cy, r) = (w / 2, h / 2 + 10, 230.0);
    let names: Vec<&str> = d.vms.iter().map(|v| v.name.as_str()).collect();
    let at = |i: usize| {
        let a = std::f64::consts::TAU * i as f64 / names.len().max(1) as f64;
        (cx + (r * a.sin()) as i32, cy - (r * a.cos()) as i32)
    };
    let mut edges: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for p in &summary.topology {
        let (Some(a), Some(b)) = (
            names.iter().position(|n| *n == p.src),
            names.iter().position(|n| *n == p.dst),
        ) else {
            continue;
        };
        let e = edges.entry((a.min(b), a.max(b))).or_default();
        *e = e.max(p.intensity);
    }
    let mut host: BTreeMap<&str, String> = d
        .vms
        .iter()
        .map(|v| (v.name.as_str(), v.host.clone()))
        .collect();
    for m in &summary.migrations {
        host.insert(m.vm.as_str(), m.to.clone());
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w as u32, h as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let title = format!(
            "Inferred topology: {} pairs (edge width = intensity)",
            summary.topology.len()
        );
        root.draw(&Text::new(title, (20, 20), ("sans-serif", 18).into_font()))
            .map_err(drawing)?;
        for (&(a, b), &intensity) in &edges {
            let style = ShapeStyle {
                color: RGBColor(40, 90, 160).mix(0.35 + 0.5 * intensity),
                filled: false,
                stroke_width: 1 + (intensity.clamp(0.0, 1.0) * 9.0) as u32,
            };
            root.draw(&PathElement::new(vec![at(a), at(b)], style))
                .map_err(drawing)?;
        }
        for (i, name) in names.iter().enumerate() {
            let (x, y) = at(i);
            root.draw(&Circle::new((x, y), 22, RGBColor(250, 160, 40).filled()))
                .map_err(drawing)?;
            let label = format!("{name} @ {}", host.get(name).map_or("?", String::as_str));
            root.draw(&Text::new(
                label,
                (x - 30, y + 26),
                ("sans-serif", 15).into_font(),
            ))
            .map_err(drawing)?;
        }
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

/// Rank 0's supersteps per second over time, the adaptation as a shaded band, and the
/// before and after rates as dashed levels.
pub fn throughput_svg(summary: &Summary) -> Result<String> {
    let points: Vec<(f64, f64)> = summary
        .samples
        .iter()
        .map(|p| (p.t, p.supersteps_per_second))
        .collect();
    let xmax = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let ymax = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let caption = match summary.speedup {
            Some(s) => format!("Patterns throughput: {s:.2}x after adaptation"),
            None => "Patterns throughput".to_string(),
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("supersteps/s")
            .draw()
            .map_err(drawing)?;
        if let Some((a, b)) = summary.adapted_at {
            let band = Rectangle::new(
                [(a, 0.0), (b, ymax)],
                RGBColor(250, 200, 60).mix(0.35).filled(),
            );
            chart
                .draw_series(std::iter::once(band))
                .map_err(drawing)?
                .label("adaptation (measure, infer, adapt --apply)")
                .legend(|(x, y)| {
                    Rectangle::new(
                        [(x, y - 5), (x + 15, y + 5)],
                        RGBColor(250, 200, 60).filled(),
                    )
                });
        }
        chart
            .draw_series(LineSeries::new(
                points,
                RGBColor(40, 90, 160).stroke_width(2),
            ))
            .map_err(drawing)?
            .label("rank 0, per 0.5 s")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RGBColor(40, 90, 160)));
        let levels = [(Some(summary.before), "before"), (summary.after, "after")];
        for (level, name) in levels {
            let Some(v) = level else { continue };
            let line = LineSeries::new(vec![(0.0, v), (xmax, v)], BLACK.mix(0.4));
            chart
                .draw_series(line)
                .map_err(drawing)?
                .label(format!("{name}: {v:.1} supersteps/s"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK.mix(0.4)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(drawing)?;
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}
