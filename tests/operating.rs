//! Operating weir (issue 15): `weir bench`, the defaults, the package.
//!
//! - `weir bench --quick` runs every measurement (Kafka skipped without `--kafka`), prints the
//!   table, writes JSON with the expected keys and positive rates, and an SVG that is well-formed
//!   XML with the chart's parts;
//! - `weir --version` names the commit (or says `unknown` outside a checkout);
//! - `--help` states the `-p` and `--parse-threads` defaults, and a replay's summary says what
//!   it used;
//! - LICENSE is the license Cargo.toml declares.

mod common;

use common::*;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn bench_quick_writes_the_table_json_and_svg() {
    let dir = tempdir();
    let json = dir.path().join("bench.json");
    let svg = dir.path().join("scaling.svg");
    let out = run_ok(&[
        "bench",
        "--quick",
        "-q",
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    for part in [
        "| measurement |",
        "baseline",
        "parse alone",
        "engine alone",
        "replay end to end",
        "--checkpoint-dir",
        "skipped: no --kafka",
    ] {
        assert!(table.contains(part), "the table has {part:?}: {table}");
    }

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for key in [
        "version",
        "cores",
        "load_average_start",
        "load_average_end",
        "lines",
        "bytes",
        "rounds",
        "rows",
        "checkpoint",
        "kafka",
        "warnings",
    ] {
        assert!(v.get(key).is_some(), "JSON has {key}: {v}");
    }
    assert_eq!(v["cores"].as_u64(), Some(cores() as u64));
    assert_eq!(v["kafka"]["status"], "skipped");
    assert!(v["checkpoint"]["slowdown"].as_f64().unwrap() > 0.0);
    let rows = v["rows"].as_array().unwrap();
    let groups: Vec<&str> = rows.iter().map(|r| r["group"].as_str().unwrap()).collect();
    for g in ["baseline", "parse", "engine", "replay", "checkpoint"] {
        assert!(groups.contains(&g), "a {g} row: {groups:?}");
    }
    // Replay at every parallelism from 1 to the number of cores.
    let replay_ps: Vec<u64> = rows
        .iter()
        .filter(|r| r["group"] == "replay")
        .map(|r| r["parallelism"].as_u64().unwrap())
        .collect();
    assert_eq!(replay_ps, (1..=cores() as u64).collect::<Vec<_>>());
    for r in rows {
        for key in ["lines_per_sec", "vs_baseline", "seconds"] {
            let x = r[key].as_f64().unwrap_or(0.0);
            assert!(x > 0.0 && x.is_finite(), "{key} positive: {r}");
        }
        assert!(!r["runs"].as_array().unwrap().is_empty(), "{r}");
    }

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert_well_formed(&svg);
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    for part in ["<polyline", "<circle", "parallelism", "lines/s", "baseline"] {
        assert!(svg.contains(part), "the chart has {part:?}");
    }
    assert_eq!(
        svg.matches("<circle").count(),
        cores(),
        "a point per parallelism"
    );
}

/// A small XML check: every tag closes in order, attributes are quoted, text has no bare `<`
/// or `&`.
fn assert_well_formed(xml: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = xml.trim();
    assert!(rest.starts_with('<'), "starts with a tag");
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('<') {
            let end = after.find('>').expect("tag closes");
            let tag = &after[..end];
            rest = &after[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(name.trim()),
                    "closing </{name}>"
                );
            } else {
                let self_closing = tag.ends_with('/');
                let body = tag.trim_end_matches('/');
                let name = body.split_whitespace().next().expect("a tag name");
                assert!(
                    name.chars().all(|c| c.is_ascii_alphanumeric() || c == ':'),
                    "tag name {name:?}"
                );
                // Attributes: name="value" pairs, quotes balanced.
                assert_eq!(body.matches('"').count() % 2, 0, "quotes in <{body}>");
                if !self_closing {
                    stack.push(name.to_owned());
                }
            }
            if stack.is_empty() {
                assert!(rest.trim().is_empty(), "one root element: {rest:?}");
                return;
            }
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            let text = &rest[..end];
            for (i, _) in text.match_indices('&') {
                let entity = &text[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;"]
                        .iter()
                        .any(|e| entity.starts_with(e)),
                    "bare & in {text:?}"
                );
            }
            rest = &rest[end..];
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn version_names_the_commit() {
    let out = run_ok(&["--version"]);
    let v = String::from_utf8_lossy(&out.stdout);
    let v = v.trim();
    let inner = v
        .strip_prefix(concat!("weir ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("`weir {} (COMMIT)`: {v:?}", env!("CARGO_PKG_VERSION")));
    let hash = inner.strip_suffix("-dirty").unwrap_or(inner);
    assert!(
        hash == "unknown" || (hash.len() >= 7 && hash.chars().all(|c| c.is_ascii_hexdigit())),
        "a commit hash or unknown: {v:?}"
    );
}

#[test]
fn help_and_summary_state_the_parallelism_defaults() {
    let help = String::from_utf8_lossy(&run_ok(&["replay", "--help"]).stdout).into_owned();
    let default = format!("[default: the number of cores, {} here]", cores());
    // clap wraps long help lines: compare with whitespace collapsed.
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        flat.matches(&default).count(),
        2,
        "-p and --parse-threads: {help}"
    );

    let dir = tempdir();
    let log = dir.path().join("a.log");
    std::fs::write(
        &log,
        "10.0.0.1 - - [12/May/2024:00:00:01 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"x\"\n",
    )
    .unwrap();
    let out = run_ok(&["replay", log.to_str().unwrap(), "-o", "/dev/null"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("parallelism {} (", cores())),
        "the summary says the workers used: {err}"
    );
    // One chunk: one parser thread, whatever the default.
    assert!(
        err.contains(&format!("1 parser thread (--parse-threads {})", cores())),
        "the summary says the parser threads used: {err}"
    );
}

#[test]
fn license_file_matches_cargo_toml() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("license = \"Apache-2.0\""),
        "Cargo.toml declares Apache-2.0"
    );
    assert!(
        !manifest.contains("example.invalid"),
        "no placeholder metadata in Cargo.toml"
    );
    let license = std::fs::read_to_string(root.join("LICENSE")).unwrap();
    assert!(
        license.contains("Apache License"),
        "LICENSE is the Apache License"
    );
    assert!(license.contains("Version 2.0, January 2004"));
    assert!(license.contains("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION"));
    assert!(
        license.contains("END OF TERMS AND CONDITIONS"),
        "the whole text"
    );
}
