//! PNG charts (ROC, CMC, training curves) with plotters. Text uses DejaVu Sans when the system
//! has it; without a font the chart is still drawn, without labels.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{EvalError, Result};

const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn font_available() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, leaked).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// One named line of (x, y) points.
pub struct Series<'a> {
    /// Legend name.
    pub name: &'a str,
    /// Points.
    pub points: Vec<(f64, f64)>,
}

/// Draws line series into a PNG; `log_x` uses a log10 x axis (x must be > 0).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
) -> Result<()> {
    let text = font_available();
    let err = |e: String| EvalError::Invalid(format!("{}: cannot draw chart: {e}", path.display()));
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|p| !log_x || p.0 > 0.0)
        .collect();
    if pts.is_empty() {
        return Err(err("no points to draw".into()));
    }
    let (mut x0, mut x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let pad = (y1 - y0) * 0.05;
    (y0, y1) = (y0 - pad, y1 + pad);
    if log_x {
        x0 = x0.max(1e-6);
    }
    let root = BitMapBackend::new(path, (800, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    // Tableau's ten, then four more: a study overlays a dozen curves that must stay apart.
    let colors = [
        RGBColor(0x4e, 0x79, 0xa7),
        RGBColor(0xf2, 0x8e, 0x2b),
        RGBColor(0xe1, 0x57, 0x59),
        RGBColor(0x76, 0xb7, 0xb2),
        RGBColor(0x59, 0xa1, 0x4f),
        RGBColor(0xed, 0xc9, 0x48),
        RGBColor(0xb0, 0x7a, 0xa1),
        RGBColor(0xff, 0x9d, 0xa7),
        RGBColor(0x9c, 0x75, 0x5f),
        RGBColor(0xba, 0xb0, 0xac),
        RGBColor(0x00, 0x00, 0x00),
        RGBColor(0x1f, 0x3a, 0x93),
        RGBColor(0x80, 0x80, 0x00),
        RGBColor(0xd6, 0x2a, 0xd0),
    ];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            if text {
                chart
                    .configure_mesh()
                    .x_desc(x_label)
                    .y_desc(y_label)
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
            } else {
                chart
                    .configure_mesh()
                    .disable_x_mesh()
                    .disable_y_mesh()
                    .x_labels(0)
                    .y_labels(0)
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
            }
            for (i, s) in series.iter().enumerate() {
                let c = colors[i % colors.len()];
                let line = LineSeries::new(
                    s.points.iter().copied().filter(|p| !log_x || p.0 > 0.0),
                    c.stroke_width(2),
                );
                let drawn = chart.draw_series(line).map_err(|e| err(e.to_string()))?;
                if text {
                    drawn
                        .label(s.name)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
                }
            }
            if text && series.len() > 1 {
                chart
                    .configure_series_labels()
                    // ROC curves leave the upper left empty, falling curves the upper right.
                    .position(if log_x {
                        SeriesLabelPosition::UpperLeft
                    } else {
                        SeriesLabelPosition::UpperRight
                    })
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
            }
        }};
    }
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15);
    if text {
        builder
            .caption(title, ("sans-serif", 24))
            .x_label_area_size(45)
            .y_label_area_size(60);
    }
    if log_x {
        draw!(
            builder
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(|e| err(e.to_string()))?
        );
    } else {
        draw!(
            builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| err(e.to_string()))?
        );
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
