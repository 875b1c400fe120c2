//! Serving a TCP socket like the seed's `socketTextStream`: the pipeline behind `weir serve`.
//!
//! weir listens on an address, reads newline-delimited log lines from each connection in turn
//! (one at a time, in order, as one input), and writes results as windows close. Each read is
//! parsed and pushed at once, so a window's results appear as soon as a later line moves the
//! watermark past it. A socket cannot be rewound: runs from a socket cannot be replayed from a
//! checkpoint.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use weir_io::source::LineReader;

use crate::error::{Error, Result};
use crate::replay::{
    check_paths, job_outputs, job_spec, parse_options, pick_format, Feed, JobOptions, ParseConfig,
    RunSummary, Started,
};

/// Everything `weir serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on, e.g. `127.0.0.1:9999`.
    pub listen: String,
    /// How to read lines.
    pub parse: ParseConfig,
    /// What to compute and where to put it.
    pub job: JobOptions,
    /// End after the first connection closes (fires every window); otherwise serve forever.
    pub once: bool,
}

/// Binds `cfg.listen` and serves connections; `on_listening` is told the bound address (useful
/// with port 0). Returns when a connection closes and `cfg.once` is set.
pub fn serve(cfg: &ServeConfig, on_listening: impl FnOnce(SocketAddr)) -> Result<RunSummary> {
    check_paths(None, &job_outputs(&cfg.job), None)?;
    let listener = TcpListener::bind(&cfg.listen).map_err(|source| Error::Net {
        addr: cfg.listen.clone(),
        what: "cannot listen (is the port in use, or the address not local?)",
        source,
    })?;
    let local = listener.local_addr().map_err(|source| Error::Net {
        addr: cfg.listen.clone(),
        what: "cannot read the bound address",
        source,
    })?;
    on_listening(local);
    let started_at = Instant::now();
    let accept = || {
        listener.accept().map_err(|source| Error::Net {
            addr: local.to_string(),
            what: "cannot accept a connection",
            source,
        })
    };

    // The first connection's first lines decide the format.
    let (conn, peer) = accept()?;
    let mut lines = LineReader::new(conn, peer.to_string(), 1 << 16);
    let first = lines.next_chunk()?.map(<[u8]>::to_vec).unwrap_or_default();
    let format = pick_format(&cfg.parse, &first, std::path::Path::new(&peer.to_string()))?;
    let opts = parse_options(&cfg.parse, format, &cfg.job.keys)?;
    let spec = job_spec(&cfg.job, 1)?;
    let mut started = Started::start_live(&cfg.job, &spec, &opts)?;
    let mut feed = Feed::new(opts, started.job.input().expect("one input"));

    let fed = (|| -> Result<()> {
        feed.chunk(&first, true, None)?;
        loop {
            while let Some(chunk) = lines.next_chunk()? {
                feed.chunk(chunk, true, None)?;
            }
            if cfg.once {
                return Ok(());
            }
            let (conn, peer) = accept()?;
            lines = LineReader::new(conn, peer.to_string(), 1 << 16);
        }
    })();
    let (stats, job) = feed.close(fed, started)?;
    Ok(RunSummary {
        format,
        parse: stats,
        job,
        elapsed: started_at.elapsed().max(Duration::ZERO),
        input_bytes: None,
    })
}
