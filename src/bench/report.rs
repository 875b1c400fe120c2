//! The suite's report as a Markdown table (what README's benchmark table is pasted from), as
//! JSON (serde), and as an SVG line chart of lines/s against parallelism, drawn by hand.

use std::fmt::Write as _;

use super::{BenchReport, KafkaOutcome, Row};

/// `12345678.9` → `12.3M`, `123456` → `123k`.
fn rate(r: f64) -> String {
    match r {
        r if r >= 1e9 => format!("{:.2}G", r / 1e9),
        r if r >= 1e6 => format!("{:.1}M", r / 1e6),
        r if r >= 1e3 => format!("{:.0}k", r / 1e3),
        r => format!("{r:.0}"),
    }
}

/// The report as a Markdown table with a header saying where and how it was measured, the
/// notes and the warnings after it.
pub fn table(r: &BenchReport) -> String {
    let mut s = String::new();
    let load = |l: &[f64]| {
        l.first()
            .map_or_else(|| "unknown".to_owned(), |x| format!("{x:.2}"))
    };
    let _ = writeln!(
        s,
        "weir bench: weir {}, {} cores, load average {} → {}; log: {} lines, {:.1} MB (combined, \
         {} clients, seed 7); {} round(s), medians",
        r.version,
        r.cores,
        load(&r.load_average_start),
        load(&r.load_average_end),
        crate::units::thousands(r.lines),
        r.bytes as f64 / 1e6,
        crate::units::thousands(r.clients),
        r.rounds,
    );
    s.push('\n');
    s.push_str("| measurement | -p | lines/s | MB/s | × baseline | median s | note |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---|\n");
    for row in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} | {:.3} | {} |",
            row.name,
            row.parallelism.map_or("".into(), |p| p.to_string()),
            rate(row.lines_per_sec),
            row.mb_per_sec.map_or("".into(), |m| format!("{m:.0}")),
            row.vs_baseline,
            row.seconds,
            row.note,
        );
    }
    if let KafkaOutcome::Skipped { reason } = &r.kafka {
        let _ = writeln!(s, "| Kafka → Kafka | | | | | | skipped: {reason} |");
    }
    s.push('\n');
    s.push_str(
        "lines/s of the engine rows are rows/s of pre-built batches; × baseline = this rate over \
         the baseline's (replay rows: the median of per-round paired ratios).\n",
    );
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

/// Escapes text for SVG.
fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round step for an axis from 0 to `max` with about five ticks.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// An SVG line chart of the replay's lines/s against parallelism, with the baseline (dashed)
/// and linear scaling from `-p 1` (dotted) for reference.
pub fn svg(r: &BenchReport) -> String {
    let (w, h) = (640.0, 400.0);
    let (left, right, top, bottom) = (80.0, 20.0, 40.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let replay: Vec<&Row> = r.rows.iter().filter(|x| x.group == "replay").collect();
    let base = r
        .rows
        .iter()
        .find(|x| x.group == "baseline")
        .map_or(0.0, |b| b.lines_per_sec);
    let maxp = replay
        .iter()
        .filter_map(|x| x.parallelism)
        .max()
        .unwrap_or(1);
    let p1 = replay.first().map_or(0.0, |x| x.lines_per_sec);
    let ideal = p1 * maxp as f64;
    let top_rate = replay
        .iter()
        .map(|x| x.lines_per_sec)
        .fold(base.max(ideal), f64::max)
        .max(1.0);
    let step = nice_step(top_rate);
    let ymax = (top_rate / step).ceil() * step;
    // x: parallelism 1..maxp, half a step of margin each side.
    let x = |p: f64| left + (p - 0.5) / maxp as f64 * pw;
    let y = |v: f64| top + ph - v / ymax * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        esc(&format!(
            "weir replay: lines/s by parallelism ({} lines, {} cores)",
            crate::units::thousands(r.lines),
            r.cores
        ))
    );
    // Axes, ticks and grid.
    let _ = writeln!(
        s,
        r#"<g stroke="black"><line x1="{left}" y1="{}" x2="{}" y2="{}"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}"/></g>"#,
        top + ph,
        left + pw,
        top + ph,
        top + ph
    );
    let mut v = 0.0;
    while v <= ymax + step / 2.0 {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 6.0,
            yy + 4.0,
            rate(v)
        );
        v += step;
    }
    for p in 1..=maxp {
        let xx = x(p as f64);
        let _ = writeln!(
            s,
            r#"<line x1="{xx:.1}" y1="{}" x2="{xx:.1}" y2="{}" stroke="black"/><text x="{xx:.1}" y="{}" text-anchor="middle">{p}</text>"#,
            top + ph,
            top + ph + 5.0,
            top + ph + 20.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">parallelism (-p and --parse-threads)</text>"#,
        left + pw / 2.0,
        h - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">lines/s</text>"#,
        top + ph / 2.0
    );
    // Reference lines.
    if base > 0.0 {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#888" stroke-dasharray="6 4"/>"##,
            y(base),
            left + pw
        );
    }
    if maxp > 1 {
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#4a90d9" stroke-dasharray="2 3"/>"##,
            x(1.0),
            y(p1),
            x(maxp as f64),
            y(ideal)
        );
    }
    // The measured series.
    let points: Vec<String> = replay
        .iter()
        .filter_map(|r| {
            let p = r.parallelism? as f64;
            Some(format!("{:.1},{:.1}", x(p), y(r.lines_per_sec)))
        })
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#1f5fa8" stroke-width="2"/>"##,
        points.join(" ")
    );
    for r in &replay {
        if let Some(p) = r.parallelism {
            let _ = writeln!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#1f5fa8"><title>{}</title></circle>"##,
                x(p as f64),
                y(r.lines_per_sec),
                esc(&format!(
                    "-p {p}: {} lines/s, {:.2}× baseline",
                    rate(r.lines_per_sec),
                    r.vs_baseline
                ))
            );
        }
    }
    // Legend.
    let lx = left + 12.0;
    let legend = [
        ("#1f5fa8", "", "weir replay, end to end (median)"),
        ("#4a90d9", "2 3", "linear scaling from -p 1"),
        ("#888", "6 4", "baseline: one thread, memchr + HashMap"),
    ];
    for (i, (color, dash, label)) in legend.iter().enumerate() {
        let ly = top + 14.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            esc(label)
        );
    }
    s.push_str("</svg>\n");
    s
}
