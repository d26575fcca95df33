//! Convergence curves and their SVG plot, written beside a run's JSON report.
//!
//! A [`Curve`] is a step function from a time to the fraction of what had to arrive that
//! had arrived by then: for a topic workload, deliveries against milliseconds since each
//! message's publish; for a context workload, members holding every transaction against
//! seconds since the last write or heal. [`svg`] draws every curve of a report in its own
//! panel, with axes, ticks and the scenario, seed and trace hash in the title. It is plain
//! SVG 1.1 text: no font, script or external reference.

use std::fmt::Write as _;

use serde::Serialize;

/// Points a curve keeps at most (quantiles of the sample).
pub const CURVE_POINTS: usize = 200;

/// The fraction of what had to arrive that had arrived, over time.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    /// What the curve shows.
    pub title: String,
    /// The x axis' label, with its unit.
    pub x_label: String,
    /// `[x, fraction]` pairs, x ascending, fraction in `[0, 1]`.
    pub points: Vec<[f64; 2]>,
}

impl Curve {
    /// The curve of `times` (one per arrival, any order) out of `expected` arrivals: at
    /// the k-th smallest time, k / `expected` had arrived. At most [`CURVE_POINTS`] points,
    /// always the first and the last arrival.
    pub fn of(title: &str, x_label: &str, mut times: Vec<f64>, expected: u64) -> Self {
        times.sort_by(f64::total_cmp);
        let n = times.len();
        let total = expected.max(n as u64).max(1) as f64;
        let step = n.div_ceil(CURVE_POINTS).max(1);
        let mut points: Vec<[f64; 2]> = (0..n)
            .filter(|i| (i + 1) % step == 0 || i + 1 == n)
            .map(|i| [times[i], (i + 1) as f64 / total])
            .collect();
        points.dedup_by(|b, a| b[0] == a[0] && b[1] == a[1]);
        Self {
            title: title.into(),
            x_label: x_label.into(),
            points,
        }
    }
}

const WIDTH: f64 = 640.0;
const PANEL: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// An SVG document with one panel per curve; `title` heads it.
pub fn svg(title: &str, curves: &[Curve]) -> String {
    let height = TOP + curves.len().max(1) as f64 * PANEL;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for (i, curve) in curves.iter().enumerate() {
        panel(&mut out, TOP + i as f64 * PANEL, curve);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, y0: f64, curve: &Curve) {
    let (x_left, x_right) = (LEFT, WIDTH - RIGHT);
    let (y_top, y_bottom) = (y0 + 20.0, y0 + PANEL - BOTTOM);
    let x_max = nice_max(curve.points.last().map_or(1.0, |p| p[0]));
    let px = |x: f64| x_left + (x / x_max).clamp(0.0, 1.0) * (x_right - x_left);
    let py = |y: f64| y_bottom - y.clamp(0.0, 1.0) * (y_bottom - y_top);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (x_left + x_right) / 2.0,
        y0 + 12.0,
        escape(&curve.title)
    );
    // Axes, grid and ticks.
    for k in 0..=4 {
        let f = f64::from(k) / 4.0;
        let (x, y) = (px(f * x_max), py(f));
        let _ = writeln!(
            out,
            r##"<line x1="{x_left}" y1="{y}" x2="{x_right}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{:.0}%</text>"##,
            x_left - 6.0,
            y + 4.0,
            f * 100.0
        );
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{y_top}" x2="{x}" y2="{y_bottom}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{}</text>"##,
            y_bottom + 16.0,
            tick(f * x_max)
        );
    }
    let _ = writeln!(
        out,
        r##"<polyline fill="none" stroke="#000" points="{x_left},{y_top} {x_left},{y_bottom} {x_right},{y_bottom}"/><text x="{}" y="{}" text-anchor="middle">{}</text>"##,
        (x_left + x_right) / 2.0,
        y_bottom + 36.0,
        escape(&curve.x_label)
    );
    // The step curve: flat until the next arrival, then up.
    let mut path = format!("{},{}", px(0.0), py(0.0));
    let mut last = 0.0;
    for [x, y] in &curve.points {
        let _ = write!(
            path,
            " {:.1},{:.1} {:.1},{:.1}",
            px(*x),
            py(last),
            px(*x),
            py(*y)
        );
        last = *y;
    }
    let _ = write!(path, " {:.1},{:.1}", px(x_max), py(last));
    let _ = writeln!(
        out,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{path}"/>"##
    );
}

/// The smallest 1, 2 or 5 times a power of ten at least `x` (and above 0).
fn nice_max(x: f64) -> f64 {
    if !x.is_finite() || x <= 0.0 {
        return 1.0;
    }
    let base = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * base)
        .find(|&v| v >= x)
        .unwrap_or(10.0 * base)
}

fn tick(v: f64) -> String {
    if v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_curve_counts_arrivals_against_what_was_expected_and_keeps_its_ends() {
        let c = Curve::of("t", "ms", vec![30.0, 10.0, 20.0], 4);
        assert_eq!(c.points, vec![[10.0, 0.25], [20.0, 0.5], [30.0, 0.75]]);
        let many = Curve::of("t", "ms", (0..1000).map(f64::from).collect(), 1000);
        assert!(many.points.len() <= CURVE_POINTS);
        assert_eq!(many.points.last(), Some(&[999.0, 1.0]));
        assert!(many
            .points
            .windows(2)
            .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
    }

    #[test]
    fn the_svg_has_a_panel_per_curve_and_escapes_text() {
        let c = Curve::of("a < b", "s", vec![1.0, 2.0], 2);
        let doc = svg("run & seed", &[c.clone(), c]);
        assert!(doc.starts_with("<svg ") && doc.ends_with("</svg>\n"));
        assert_eq!(doc.matches(r##"stroke="#1f77b4""##).count(), 2);
        assert!(doc.contains("run &amp; seed") && doc.contains("a &lt; b"));
        assert_eq!(nice_max(0.7), 1.0);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(5.0), 5.0);
    }
}
