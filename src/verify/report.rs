//! The comparison of expected and found counts, and the report it makes.

use super::*;

/// A kind of difference between the expected and the found output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Expected, not found.
    Missing,
    /// Found more than once.
    Duplicated,
    /// Found once with another count.
    Wrong,
    /// Found, not expected.
    Unexpected,
}

impl Kind {
    /// `missing`, `duplicated`, `wrong` or `unexpected`.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Duplicated => "duplicated",
            Kind::Wrong => "wrong",
            Kind::Unexpected => "unexpected",
        }
    }

    const ALL: [Kind; 4] = [
        Kind::Missing,
        Kind::Duplicated,
        Kind::Wrong,
        Kind::Unexpected,
    ];
}

/// One (window, client) whose output differs from the input's count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    /// What is wrong.
    pub kind: Kind,
    /// The window's start, epoch milliseconds.
    pub window_start: i64,
    /// The client.
    pub client: String,
    /// The count the input gives (`None`: the input has no such row).
    pub expected: Option<u64>,
    /// The counts of every row found for it, in the order read (empty: none found).
    pub found: Vec<u64>,
}

/// What `weir verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// The input, as given.
    pub input: String,
    /// The output, as given.
    pub output: String,
    /// The window size in milliseconds.
    pub window_ms: i64,
    /// The input's log format (`None`: the input had no lines).
    pub format: Option<LogFormat>,
    /// Input lines read.
    pub lines: u64,
    /// Well-formed input lines (each counted in one expected row).
    pub counted: u64,
    /// Malformed input lines (skipped).
    pub malformed: u64,
    /// The first malformed input lines, with where they are.
    pub malformed_examples: Vec<String>,
    /// Expected rows: distinct (window, client) of the input.
    pub expected_rows: u64,
    /// Expected windows.
    pub expected_windows: u64,
    /// Sum of the expected counts (= `counted`).
    pub expected_requests: u64,
    /// Output rows read and kept (duplicates included).
    pub found_rows: u64,
    /// Sum of the counts of the rows kept.
    pub found_requests: u64,
    /// Output rows or records that are not result rows.
    pub unreadable: u64,
    /// The first unreadable rows, with where they are and why.
    pub unreadable_examples: Vec<String>,
    /// (window, client) expected and not found.
    pub missing: u64,
    /// (window, client) found more than once.
    pub duplicated: u64,
    /// (window, client) found once with another count.
    pub wrong: u64,
    /// (window, client) found and not expected.
    pub unexpected: u64,
    /// Up to `examples_limit` differences of each kind, by kind, window and client.
    pub examples: Vec<Discrepancy>,
    /// How many examples of each kind were kept.
    pub examples_limit: usize,
    /// Remarks worth knowing when reading the result (an unfinished job, …).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// Whether the output holds exactly the expected rows, once each, with the right counts.
    pub fn is_clean(&self) -> bool {
        self.missing + self.duplicated + self.wrong + self.unexpected + self.unreadable == 0
    }

    /// The number of differences of `kind`.
    pub fn count(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Missing => self.missing,
            Kind::Duplicated => self.duplicated,
            Kind::Wrong => self.wrong,
            Kind::Unexpected => self.unexpected,
        }
    }
}

pub(super) fn compare(expected: &Counts, found: &FoundCounts, r: &mut VerifyReport) {
    // Every difference as borrowed parts; only the examples kept are copied.
    type Diff<'a> = (Kind, i64, &'a str, Option<u64>, &'a [u64]);
    let mut diffs: Vec<Diff<'_>> = Vec::new();
    for (&w, clients) in expected {
        r.expected_windows += 1;
        let got = found.get(&w);
        for (client, &n) in clients {
            r.expected_rows += 1;
            r.expected_requests += n;
            let kind = match got.and_then(|g| g.get(client)) {
                None => Kind::Missing,
                Some(f) if f.len() > 1 => Kind::Duplicated,
                Some(f) if f[0] != n => Kind::Wrong,
                Some(_) => continue,
            };
            let f = got
                .and_then(|g| g.get(client))
                .map_or(&[][..], Vec::as_slice);
            diffs.push((kind, w, client, Some(n), f));
        }
    }
    for (&w, clients) in found {
        let exp = expected.get(&w);
        for (client, f) in clients {
            if exp.is_none_or(|e| !e.contains_key(client)) {
                diffs.push((Kind::Unexpected, w, client, None, f));
            }
        }
    }
    for d in &diffs {
        match d.0 {
            Kind::Missing => r.missing += 1,
            Kind::Duplicated => r.duplicated += 1,
            Kind::Wrong => r.wrong += 1,
            Kind::Unexpected => r.unexpected += 1,
        }
    }
    diffs.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    let mut shown: HashMap<Kind, usize> = HashMap::new();
    for (kind, w, client, expected, found) in diffs {
        let n = shown.entry(kind).or_default();
        if *n < r.examples_limit {
            *n += 1;
            r.examples.push(Discrepancy {
                kind,
                window_start: w,
                client: client.to_owned(),
                expected,
                found: found.to_vec(),
            });
        }
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "weir verify: {} -> {}, {} windows by client",
            self.input,
            self.output,
            human_ms(self.window_ms)
        )?;
        writeln!(
            f,
            "input:      {} lines ({}): {} counted, {} malformed (skipped)",
            thousands(self.lines),
            self.format.map_or("empty", |f| f.name()),
            thousands(self.counted),
            thousands(self.malformed)
        )?;
        writeln!(
            f,
            "expected:   {} rows in {} windows, {} requests",
            thousands(self.expected_rows),
            thousands(self.expected_windows),
            thousands(self.expected_requests)
        )?;
        write!(
            f,
            "found:      {} rows, {} requests",
            thousands(self.found_rows),
            thousands(self.found_requests)
        )?;
        writeln!(f)?;
        if self.is_clean() {
            writeln!(
                f,
                "result:     clean: every expected row found once with the right count, \
                 nothing else"
            )?;
        } else {
            writeln!(
                f,
                "result:     NOT CLEAN: {} missing, {} duplicated, {} wrong, {} unexpected, {} \
                 unreadable",
                thousands(self.missing),
                thousands(self.duplicated),
                thousands(self.wrong),
                thousands(self.unexpected),
                thousands(self.unreadable)
            )?;
        }
        for kind in Kind::ALL {
            let n = self.count(kind);
            if n == 0 {
                continue;
            }
            let what = match kind {
                Kind::Missing => "expected, not found",
                Kind::Duplicated => "found more than once",
                Kind::Wrong => "found once with another count",
                Kind::Unexpected => "found, not expected",
            };
            writeln!(f, "{} rows ({what}): {}", kind.name(), thousands(n))?;
            let shown: Vec<&Discrepancy> =
                self.examples.iter().filter(|d| d.kind == kind).collect();
            for d in &shown {
                let expected = d.expected.map_or("none".to_owned(), |e| e.to_string());
                let found = match d.found.len() {
                    0 => "none".to_owned(),
                    1 => d.found[0].to_string(),
                    k => {
                        let all: Vec<String> = d.found.iter().map(u64::to_string).collect();
                        format!("{k} times ({})", all.join(", "))
                    }
                };
                writeln!(
                    f,
                    "  window {} ({})  client {}  expected {expected}, found {found}",
                    utc(d.window_start),
                    d.window_start,
                    d.client
                )?;
            }
            if (shown.len() as u64) < n {
                writeln!(f, "  … and {} more", thousands(n - shown.len() as u64))?;
            }
        }
        if self.unreadable > 0 {
            writeln!(f, "unreadable output rows: {}", thousands(self.unreadable))?;
            for e in &self.unreadable_examples {
                writeln!(f, "  {e}")?;
            }
        }
        if !self.malformed_examples.is_empty() {
            writeln!(f, "first malformed input lines:")?;
            for e in &self.malformed_examples {
                writeln!(f, "  {e}")?;
            }
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

/// `2024-05-12T00:00:05Z` (with milliseconds when there are any).
pub(super) fn utc(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, frac) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    if frac == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:03}Z")
    }
}

/// `5 s`, `250 ms`, `1 min`.
pub(super) fn human_ms(ms: i64) -> String {
    if ms != 0 && ms % 60_000 == 0 {
        format!("{} min", ms / 60_000)
    } else if ms != 0 && ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_kinds() {
        let mut exp = Counts::new();
        let mut found = FoundCounts::new();
        for (c, n) in [("a", 1), ("b", 2), ("c", 3), ("d", 4)] {
            exp.entry(0).or_default().insert(c.into(), n);
        }
        found.entry(0).or_default().insert("a".into(), vec![1]);
        found.entry(0).or_default().insert("b".into(), vec![2, 2]);
        found.entry(0).or_default().insert("c".into(), vec![30]);
        found.entry(5000).or_default().insert("a".into(), vec![1]);
        let mut r = VerifyReport {
            examples_limit: 10,
            ..VerifyReport::default()
        };
        compare(&exp, &found, &mut r);
        assert_eq!(
            (r.missing, r.duplicated, r.wrong, r.unexpected),
            (1, 1, 1, 1)
        );
        assert_eq!(
            (r.expected_rows, r.expected_requests, r.expected_windows),
            (4, 10, 1)
        );
        assert!(!r.is_clean());
        let kinds: Vec<Kind> = r.examples.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, Kind::ALL);
        let text = r.to_string();
        assert!(
            text.contains("NOT CLEAN: 1 missing, 1 duplicated, 1 wrong, 1 unexpected"),
            "{text}"
        );
        assert!(
            text.contains("client b  expected 2, found 2 times (2, 2)"),
            "{text}"
        );
        assert!(
            text.contains("window 1970-01-01T00:00:05Z (5000)  client a  expected none, found 1"),
            "{text}"
        );
    }

    #[test]
    fn times() {
        assert_eq!(utc(1_715_472_005_000), "2024-05-12T00:00:05Z");
        assert_eq!(utc(-500), "1969-12-31T23:59:59.500Z");
        assert_eq!(human_ms(5000), "5 s");
        assert_eq!(human_ms(60_000), "1 min");
        assert_eq!(human_ms(250), "250 ms");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
