//! The results of one run: rows with figure, baseline, ratio and target,
//! written as `BENCHMARKS.md`, and the scaling runs drawn as an SVG chart.

use std::fmt::Write as _;
use std::path::Path;

/// The command that reproduces every row (the Rust part alone: `cargo bench --bench e2e`).
pub const COMMAND: &str = "bash benches/run.sh";

/// What a row's checked value must be.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(limit) => value >= limit,
            Target::AtMost(limit) => value <= limit,
        }
    }
}

/// One measured row.
pub struct Row {
    /// The numbered section of `BENCHMARKS.md` it goes in, e.g. "2. Raw SSE".
    pub section: &'static str,
    pub what: String,
    pub figure: String,
    pub baseline: String,
    pub ratio: Option<f64>,
    /// The target as written in the table, and the check on `checked`.
    pub target: Option<(String, Target, f64)>,
    /// A short name for the row in the summary, if the summary lists it.
    pub headline: Option<String>,
}

impl Row {
    pub fn new(section: &'static str, what: impl Into<String>, figure: impl Into<String>) -> Self {
        Row {
            section,
            what: what.into(),
            figure: figure.into(),
            baseline: "-".into(),
            ratio: None,
            target: None,
            headline: None,
        }
    }

    /// Lists the row in the summary, under the short name `name`.
    pub fn headline(mut self, name: impl Into<String>) -> Self {
        self.headline = Some(name.into());
        self
    }

    /// The baseline it is compared with, and the ratio figure / baseline.
    pub fn against(mut self, baseline: impl Into<String>, ratio: f64) -> Self {
        self.baseline = baseline.into();
        self.ratio = Some(ratio);
        self
    }

    /// A target on the ratio.
    pub fn ratio_target(mut self, target: Target) -> Self {
        let ratio = self.ratio.expect("a ratio to check");
        let text = match target {
            Target::AtLeast(limit) => format!("ratio >= {limit}"),
            Target::AtMost(limit) => format!("ratio <= {limit}"),
        };
        self.target = Some((text, target, ratio));
        self
    }

    /// A target on a value of the row other than the ratio.
    pub fn value_target(mut self, text: impl Into<String>, target: Target, value: f64) -> Self {
        self.target = Some((text.into(), target, value));
        self
    }

    pub fn met(&self) -> Option<bool> {
        self.target
            .as_ref()
            .map(|(_, target, value)| target.met(*value))
    }

    /// The target and whether it was met, as the tables write it.
    fn verdict(&self) -> Option<String> {
        let (text, _, _) = self.target.as_ref()?;
        Some(match self.met() {
            Some(true) => format!("{text}: met"),
            _ => format!("{text}: **MISSED**"),
        })
    }
}

/// A line of the chart: a label and (x, y) points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel of the chart, log-scaled on x.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub log_y: bool,
}

/// The heading of the summary [`Report::markdown`] writes: the README links
/// to it (`BENCHMARKS.md#summary`) and may quote what lies between
/// [`SUMMARY_START`] and [`SUMMARY_END`].
pub const SUMMARY_HEADING: &str = "## Summary";
/// The comment that opens the summary's text.
pub const SUMMARY_START: &str = "<!-- summary: start (written by `bash benches/run.sh`) -->";
/// The comment that closes the summary's text.
pub const SUMMARY_END: &str = "<!-- summary: end -->";

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub panels: Vec<Panel>,
    pub machine: String,
    /// The UTC date of the run, `YYYY-MM-DD`.
    pub date: String,
    /// The commit measured, as `git` names it.
    pub commit: String,
    pub seconds: f64,
}

impl Report {
    pub fn push(&mut self, row: Row) {
        let verdict = match row.met() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        println!(
            "[e2e] {:<14} {:<58} {:>24}  vs {:<28} {:>8} {}",
            row.section,
            row.what,
            row.figure,
            row.baseline,
            row.ratio.map_or(String::new(), |r| format!("{r:.3}")),
            verdict
        );
        self.rows.push(row);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("[e2e] note: {note}");
        self.notes.push(note);
    }

    pub fn markdown(&self, chart: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Benchmarks\n\nWritten by `{COMMAND}` (the Rust part alone: `cargo bench --bench e2e`) \
             on {}; the Rust part took {:.0} s. Every ratio compares two figures measured in this \
             same run on this same machine; absolute figures drift on shared machines, ratios less. \
             Throughput figures are medians of interleaved rounds. What each row does is described \
             in `benches/e2e/main.rs`.\n",
            self.machine, self.seconds
        );
        self.summary(&mut out);
        // Sections are numbered; some rows are measured with another
        // section's (the resume runs give row 7 its replay points).
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by_key(|row| row.section);
        let mut section = "";
        for row in rows {
            if row.section != section {
                section = row.section;
                let _ = writeln!(
                    out,
                    "\n## {section}\n\n| what | figure | baseline (same run) | ratio | target |\n|---|---|---|---|---|"
                );
            }
            let target = row.verdict().unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                row.what,
                row.figure,
                row.baseline,
                row.ratio.map_or("-".into(), |r| format!("{r:.2}")),
                target
            );
        }
        if !self.panels.is_empty() {
            let _ = writeln!(out, "\n## Scaling chart\n\n![scaling]({chart})");
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\n## Notes\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }

    /// The summary: where and when the run was made, the targets met, and
    /// the headline rows, one line each.
    fn summary(&self, out: &mut String) {
        let missed = self.rows.iter().filter(|r| r.met() == Some(false)).count();
        let checked = self.rows.iter().filter(|r| r.met().is_some()).count();
        let _ = writeln!(
            out,
            "{SUMMARY_HEADING}\n\n{SUMMARY_START}\nMeasured on {} at commit {} on {}. Targets: {} of \
             {checked} met{}.\n",
            self.date,
            self.commit,
            self.machine,
            checked - missed,
            if missed > 0 { " (see MISSED)" } else { "" }
        );
        for row in &self.rows {
            let Some(name) = &row.headline else { continue };
            let _ = write!(out, "- {name}: {}", row.figure);
            if let Some(ratio) = row.ratio {
                let _ = write!(out, "; {ratio:.2} x {}", row.baseline);
            }
            if let Some(verdict) = row.verdict() {
                let _ = write!(out, " (target {verdict})");
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "\n{SUMMARY_END}\n");
    }

    pub fn write(&self, markdown: &Path, chart: &Path) {
        let relative = chart
            .strip_prefix(markdown.parent().unwrap_or(Path::new(".")))
            .unwrap_or(chart);
        std::fs::write(markdown, self.markdown(&relative.display().to_string()))
            .expect("BENCHMARKS.md written");
        if !self.panels.is_empty() {
            std::fs::write(chart, svg(&self.panels)).expect("the chart written");
        }
        println!("[e2e] wrote {} and {}", markdown.display(), chart.display());
    }
}

const COLOURS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

/// The panels side by side, each with log-scaled x (and y if asked), as one SVG.
pub fn svg(panels: &[Panel]) -> String {
    const W: f64 = 520.0;
    const H: f64 = 380.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 110.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        W * panels.len() as f64
    );
    for (index, panel) in panels.iter().enumerate() {
        let x0 = index as f64 * W;
        let points = panel.series.iter().flat_map(|s| s.points.iter());
        let (mut min_x, mut max_x, mut min_y, mut max_y) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points {
            min_x = min_x.min(x);
            max_x = max_x.max(x);
            min_y = min_y.min(y);
            max_y = max_y.max(y);
        }
        if min_x > max_x {
            continue;
        }
        let (lx0, lx1) = (min_x.log10(), max_x.log10().max(min_x.log10() + 1.0));
        let (ly0, ly1) = if panel.log_y {
            (
                min_y.log10().floor(),
                max_y.log10().ceil().max(min_y.log10().floor() + 1.0),
            )
        } else {
            (0.0, max_y * 1.1)
        };
        let plot_w = W - LEFT - RIGHT;
        let plot_h = H - TOP - BOTTOM;
        let px = |x: f64| x0 + LEFT + (x.log10() - lx0) / (lx1 - lx0) * plot_w;
        let py = |y: f64| {
            let v = if panel.log_y { y.log10() } else { y };
            TOP + plot_h - (v - ly0) / (ly1 - ly0) * plot_h
        };
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"22\" font-size=\"14\" font-weight=\"bold\">{}</text>",
            x0 + LEFT,
            escape(&panel.title)
        );
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#888\"/>",
            x0 + LEFT
        );
        // x ticks at the measured x values.
        let mut xs: Vec<f64> = panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        for x in xs {
            let _ = writeln!(
                out,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{1}\" stroke=\"#eee\"/><text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\">{3}</text>",
                px(x),
                TOP + plot_h,
                TOP + plot_h + 16.0,
                short(x)
            );
        }
        for step in 0..=4 {
            let v = ly0 + (ly1 - ly0) * step as f64 / 4.0;
            let y = TOP + plot_h - step as f64 / 4.0 * plot_h;
            let value = if panel.log_y { 10f64.powf(v) } else { v };
            let _ = writeln!(
                out,
                "<line x1=\"{0}\" x2=\"{1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
                x0 + LEFT,
                x0 + LEFT + plot_w,
                x0 + LEFT - 6.0,
                y + 4.0,
                short(value)
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x0 + LEFT + plot_w / 2.0,
            TOP + plot_h + 34.0,
            escape(&panel.x_label)
        );
        let _ = writeln!(
            out,
            "<text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            x0 + 16.0,
            TOP + plot_h / 2.0,
            escape(&panel.y_label)
        );
        for (n, series) in panel.series.iter().enumerate() {
            let colour = COLOURS[n % COLOURS.len()];
            let path: Vec<String> = series
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                out,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
                path.join(" ")
            );
            for &(x, y) in &series.points {
                let _ = writeln!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>",
                    px(x),
                    py(y)
                );
            }
            let ly = TOP + plot_h + 52.0 + 14.0 * n as f64;
            let _ = writeln!(
                out,
                "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"{colour}\" stroke-width=\"2\"/><text x=\"{3}\" y=\"{4}\">{5}</text>",
                x0 + LEFT,
                x0 + LEFT + 20.0,
                ly - 4.0,
                x0 + LEFT + 26.0,
                ly,
                escape(&series.label)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// 1500 -> "1.5k", 2000000 -> "2M", 0.25 -> "0.25".
fn short(value: f64) -> String {
    let (scaled, suffix) = if value >= 1e6 {
        (value / 1e6, "M")
    } else if value >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = if scaled >= 100.0 || scaled.fract().abs() < 0.05 {
        format!("{scaled:.0}")
    } else if scaled >= 10.0 {
        format!("{scaled:.1}")
    } else {
        format!("{scaled:.2}")
    };
    format!("{text}{suffix}")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
