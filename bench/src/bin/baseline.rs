//! The baseline weir must beat, on its own: a single-threaded `memchr` + `HashMap` loop over a
//! file, writing the same CSV as `weir replay --output-format csv` (unsorted). The loop is
//! `weir::bench::baseline`; `weir bench` runs it for its "× baseline" column.
//!
//! ```text
//! cargo run --release -p weir-bench --bin baseline -- FILE [WINDOW_MS] > /dev/null
//! ```

use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().expect("usage: baseline FILE [WINDOW_MS]");
    let window: i64 = args.get(1).map_or(5_000, |w| w.parse().expect("WINDOW_MS"));
    let start = Instant::now();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let c = weir::bench::baseline::count_file(path.as_ref(), window, &mut out).expect(path);
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "baseline: {} lines, {} malformed, {} results in {secs:.2} s: {:.0} lines/s",
        c.lines,
        c.malformed,
        c.results,
        c.lines as f64 / secs
    );
}
