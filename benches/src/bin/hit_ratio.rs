//! Hit ratios of the eviction policies (`pagemap::policy`) against exact
//! LRU and Belady's optimal, over synthetic traces of a 1M-page file, at
//! cache sizes from 1% to 50% of the file. Prints a table, writes it as
//! markdown to `benches/results/hit_ratio.md` and draws one miss-ratio curve
//! chart per trace (`benches/results/miss_ratio_*.svg`); then checks the
//! issue's targets for the default policy.
//!
//! `cargo run --release -p benches --bin hit_ratio` (about a minute on two
//! cores). `HIT_RATIO_LEN=N` changes the trace length (3M accesses).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use benches::policy_sim::{
    loop_trace, opt_hits, scan_trace, zipf_trace, RefLru, Simulator, FILE_PAGES,
};
use pagemap::policy::NAMES;
use plotters::prelude::*;

/// Cache sizes, in percent of the file's pages.
const SIZES: [u32; 7] = [1, 2, 5, 10, 20, 30, 50];
/// The sizes the targets and the long table look at.
const MAIN_SIZES: [u32; 3] = [1, 10, 50];

/// The scan trace: a hot set of 5% of the file, Zipf(0.8) inside; every
/// 200K hot accesses, a sequential scan of 100K cold pages (~10% of the
/// file).
const HOT: u64 = FILE_PAGES / 20;
const HOT_ALPHA: f64 = 0.8;
const SCAN_PERIOD: usize = 200_000;
const SCAN_PAGES: u64 = 100_000;

/// The trace names, in table order.
const TRACES: [&str; 4] = ["zipf-0.99", "zipf-0.7", "loop-1.2x", "scan"];

/// One (trace, size) measurement.
struct Row {
    trace: usize,
    size: u32,
    frames: usize,
    accesses: usize,
    /// Hit ratio of each policy of `NAMES`, in percent.
    policies: Vec<f64>,
    opt: f64,
    refaults: u64,
    secs: f64,
}

fn pct(hits: u64, n: usize) -> f64 {
    100.0 * hits as f64 / n as f64
}

fn lru_index() -> usize {
    NAMES
        .iter()
        .position(|&n| n == "lru")
        .expect("lru is built in")
}

fn main() {
    let len: usize = std::env::var("HIT_RATIO_LEN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000_000);
    let start = Instant::now();
    let shared = [
        zipf_trace(len, 0.99),
        zipf_trace(len, 0.7),
        scan_trace(len, HOT, HOT_ALPHA, SCAN_PERIOD, SCAN_PAGES),
    ];
    println!(
        "{len} accesses per trace over {FILE_PAGES} pages; traces built in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let jobs: Vec<(usize, u32)> = (0..TRACES.len())
        .flat_map(|t| SIZES.iter().map(move |&s| (t, s)))
        .collect();
    let next = AtomicUsize::new(0);
    let rows = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                // Relaxed: a job counter; the scope's join publishes the rows.
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(t, size)) = jobs.get(j) else { break };
                let row = measure(t, size, len, &shared);
                println!("  {:<10} {:>2}%: {:.1} s", TRACES[t], size, row.secs);
                rows.lock().unwrap().push(row);
            });
        }
    });
    let mut rows = rows.into_inner().unwrap();
    rows.sort_by_key(|r| (r.trace, r.size));
    println!("measured in {:.1} s\n", start.elapsed().as_secs_f64());

    let report = report(&rows, len);
    print!("{report}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&dir).expect("results directory");
    std::fs::write(dir.join("hit_ratio.md"), &report).expect("write hit_ratio.md");
    for (t, name) in TRACES.iter().enumerate() {
        let path = dir.join(format!("miss_ratio_{name}.svg"));
        chart(&rows, t, &path).expect("draw chart");
    }
    println!(
        "wrote {}/hit_ratio.md and miss_ratio_*.svg; total {:.1} s",
        dir.display(),
        start.elapsed().as_secs_f64()
    );
}

fn measure(t: usize, size: u32, len: usize, shared: &[Vec<u64>; 3]) -> Row {
    let start = Instant::now();
    let frames = (FILE_PAGES as usize * size as usize / 100).max(1);
    let looped;
    let trace: &[u64] = match TRACES[t] {
        "zipf-0.99" => &shared[0],
        "zipf-0.7" => &shared[1],
        "scan" => &shared[2],
        "loop-1.2x" => {
            looped = loop_trace(len, (frames as u64 * 6 / 5).min(FILE_PAGES));
            &looped
        }
        other => unreachable!("{other}"),
    };
    let mut refaults = 0;
    let policies = NAMES
        .iter()
        .map(|&name| {
            let mut sim = Simulator::new(name, frames);
            let hits = sim.run(trace);
            refaults += sim.refaults();
            pct(hits, trace.len())
        })
        .collect::<Vec<_>>();
    // Cross-check of the Lru policy at 10%: it must match a plain LRU.
    if size == 10 {
        let mut reference = RefLru::new(frames);
        let hits = trace.iter().filter(|&&k| reference.access(k)).count() as u64;
        assert_eq!(
            pct(hits, trace.len()),
            policies[lru_index()],
            "{}: Lru policy differs from the reference LRU",
            TRACES[t]
        );
    }
    let opt = pct(opt_hits(trace, frames), trace.len());
    Row {
        trace: t,
        size,
        frames,
        accesses: trace.len(),
        policies,
        opt,
        refaults,
        secs: start.elapsed().as_secs_f64(),
    }
}

/// Checks of one policy against the targets: (passed, lines).
fn targets(rows: &[Row], p: usize) -> (bool, Vec<String>) {
    let lru = lru_index();
    let mut ok = true;
    let mut lines = Vec::new();
    for (t, trace) in TRACES.iter().enumerate() {
        let worst = rows
            .iter()
            .filter(|r| r.trace == t && MAIN_SIZES.contains(&r.size))
            .map(|r| (r.policies[p] - r.policies[lru], r.size))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .expect("rows");
        let pass = worst.0 >= 0.0;
        ok &= pass;
        lines.push(format!(
            "{}: {} >= LRU on {trace} at 1/10/50% (worst {:+.2} points at {}%)",
            if pass { "PASS" } else { "MISS" },
            NAMES[p],
            worst.0,
            worst.1
        ));
    }
    let scan = TRACES
        .iter()
        .position(|&t| t == "scan")
        .expect("scan trace");
    let r = rows
        .iter()
        .find(|r| r.trace == scan && r.size == 10)
        .expect("scan at 10%");
    let gain = r.policies[p] - r.policies[lru];
    let pass = gain >= 10.0;
    ok &= pass;
    lines.push(format!(
        "{}: {} >= 10 points above LRU on scan at 10% ({gain:+.2})",
        if pass { "PASS" } else { "MISS" },
        NAMES[p]
    ));
    (ok, lines)
}

fn report(rows: &[Row], len: usize) -> String {
    let lru = lru_index();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Eviction policies: hit ratios\n\n\
         `cargo run --release -p benches --bin hit_ratio`: {len} accesses per trace over a \
         file of {FILE_PAGES} pages, the real `pagemap::policy` objects in a simulated pool \
         (batch 1, nothing busy). Traces: Zipf 0.99 and 0.7 over the whole file; a loop over \
         1.2x the cache size; `scan`: a hot set of {HOT} pages (Zipf {HOT_ALPHA} inside) and, \
         every {SCAN_PERIOD} hot accesses, a sequential scan of {SCAN_PAGES} cold pages. \
         OPT is Belady's (demand paging, farthest next use). Points are percentage points of \
         hit ratio.\n"
    );
    let _ = writeln!(s, "## At 1%, 10% and 50% of the file\n");
    let _ = writeln!(
        s,
        "| policy | trace | size | hit % | to OPT (points) | vs LRU (points) |\n| --- | --- | ---: | ---: | ---: | ---: |"
    );
    for r in rows.iter().filter(|r| MAIN_SIZES.contains(&r.size)) {
        for (p, name) in NAMES.iter().enumerate() {
            let h = r.policies[p];
            let _ = writeln!(
                s,
                "| {name} | {} | {}% | {h:.2} | {:.2} | {:+.2} |",
                TRACES[r.trace],
                r.size,
                r.opt - h,
                h - r.policies[lru]
            );
        }
        let _ = writeln!(
            s,
            "| OPT | {} | {}% | {:.2} | 0.00 | {:+.2} |",
            TRACES[r.trace],
            r.size,
            r.opt,
            r.opt - r.policies[lru]
        );
    }
    let _ = writeln!(s, "\n## Every size (hit %)\n");
    let mut head = String::from("| trace | size | frames |");
    let mut rule = String::from("| --- | ---: | ---: |");
    for name in NAMES.iter().chain(&["OPT"]) {
        let _ = write!(head, " {name} |");
        rule.push_str(" ---: |");
    }
    let _ = writeln!(
        s,
        "{head} s3fifo refaults | time (s) |\n{rule} ---: | ---: |"
    );
    let s3 = NAMES.iter().position(|&n| n == "s3fifo");
    for r in rows {
        let _ = write!(s, "| {} | {}% | {} |", TRACES[r.trace], r.size, r.frames);
        for h in &r.policies {
            let _ = write!(s, " {h:.2} |");
        }
        let _ = writeln!(
            s,
            " {:.2} | {} | {:.1} |",
            r.opt,
            s3.map_or(0, |_| r.refaults),
            r.secs
        );
        debug_assert_eq!(r.accesses, len);
    }
    let _ = writeln!(s, "\n## Targets\n");
    let mut best: Option<(usize, f64)> = None;
    for (p, name) in NAMES.iter().enumerate() {
        let (ok, lines) = targets(rows, p);
        for l in lines {
            let _ = writeln!(s, "- {l}");
        }
        let mean = rows.iter().map(|r| r.policies[p]).sum::<f64>() / rows.len() as f64;
        let _ = writeln!(s, "- {name}: mean hit ratio {mean:.2}%");
        if ok && best.is_none_or(|(_, m)| mean > m) {
            best = Some((p, mean));
        }
    }
    let _ = writeln!(
        s,
        "\nRecommended default (passes every target, best mean hit ratio): {}\n",
        best.map_or("none passes", |(p, _)| NAMES[p])
    );
    s
}

/// A chart line: its label, colour and (size %, miss ratio) points.
type Curve = (String, RGBColor, Vec<(f64, f64)>);

fn chart(rows: &[Row], t: usize, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (760, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Miss ratio vs cache size: {}", TRACES[t]),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..(*SIZES.last().unwrap() as f64), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("cache size (% of the file's pages)")
        .y_desc("miss ratio")
        .label_style(("sans-serif", 14))
        .draw()?;
    let ours: Vec<&Row> = rows.iter().filter(|r| r.trace == t).collect();
    let colours = [RED, BLUE, GREEN, MAGENTA, CYAN];
    let mut series: Vec<Curve> = NAMES
        .iter()
        .enumerate()
        .map(|(p, &name)| {
            let pts = ours
                .iter()
                .map(|r| (r.size as f64, 1.0 - r.policies[p] / 100.0))
                .collect();
            (name.to_string(), colours[p % colours.len()], pts)
        })
        .collect();
    series.push((
        "OPT".into(),
        BLACK,
        ours.iter()
            .map(|r| (r.size as f64, 1.0 - r.opt / 100.0))
            .collect(),
    ));
    for (name, colour, pts) in series {
        chart
            .draw_series(LineSeries::new(pts, colour.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
