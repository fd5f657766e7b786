//! A fault-injecting TCP proxy for the interop tests (`tests/interop/run.sh`).
//!
//! It sits between an MCP client and `mcp-resume proxy` and cuts the client's connection in the
//! middle of server-sent event streams, the way a flaky network or an impatient load balancer
//! would, so the official SDK clients have to resume with `Last-Event-ID`.
//!
//! ```text
//! cargo run --example fault_proxy -- --target 127.0.0.1:8080 --seed 7 --log faults.jsonl
//! fault_proxy listening on 127.0.0.1:40123      <- the one line on stdout
//! ```
//!
//! A command line over the test kit's proxy, `mcp_resume_testkit::proxy::http` (in `support/`),
//! which says which responses are cut, where, and what the `--log` records.
//! `tests/interop/check.py` reads that log.

use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;

use mcp_resume_testkit::cli;
use mcp_resume_testkit::proxy::Proxy;
use mcp_resume_testkit::proxy::http::{CutOptions, HttpFaults};

const USAGE: &str = "usage: fault_proxy --target HOST:PORT [--listen 127.0.0.1:0] [--seed N] \
[--min-bytes N] [--max-bytes N] [--cut-probability P] [--max-cuts K] [--log FILE]";

#[derive(Debug, Clone)]
struct Config {
    target: SocketAddr,
    listen: SocketAddr,
    cuts: CutOptions,
    log: Option<String>,
}

fn parse_args() -> Result<Config, String> {
    let mut listen = "127.0.0.1:0".parse().expect("a valid address");
    let mut cuts = CutOptions::default();
    let mut log = None;
    let mut target = None;
    for (flag, value) in cli::flag_values(USAGE)? {
        match flag.as_str() {
            "--target" => target = Some(cli::parse(&flag, &value)?),
            "--listen" => listen = cli::parse(&flag, &value)?,
            "--seed" => cuts.seed = cli::parse(&flag, &value)?,
            "--min-bytes" => cuts.min_bytes = cli::parse(&flag, &value)?,
            "--max-bytes" => cuts.max_bytes = cli::parse(&flag, &value)?,
            "--cut-probability" => cuts.cut_probability = cli::parse(&flag, &value)?,
            "--max-cuts" => cuts.max_cuts = cli::parse(&flag, &value)?,
            "--log" => log = Some(value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let target = target.ok_or("--target is required")?;
    cuts.validate()?;
    Ok(Config {
        target,
        listen,
        cuts,
        log,
    })
}

fn fail(message: String) -> ! {
    eprintln!("fault_proxy: {message}");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let config = parse_args().unwrap_or_else(|message| fail(format!("{message}\n{USAGE}")));
    let log = config.log.as_ref().map(|path| {
        File::create(path).unwrap_or_else(|e| fail(format!("cannot create {path}: {e}")))
    });
    let cuts = config.cuts.clone();
    let proxy = Proxy::start(
        config.listen,
        config.target,
        HttpFaults::new(cuts.clone(), log),
    )
    .await
    .unwrap_or_else(|e| fail(format!("cannot listen on {}: {e}", config.listen)));
    let addr = proxy.addr();
    println!("fault_proxy listening on {addr}");
    let _ = std::io::stdout().flush();
    eprintln!(
        "fault_proxy: {addr} -> {}, seed {}, cut p={} after {}..={} body bytes, at most {} cuts per stream",
        config.target,
        cuts.seed,
        cuts.cut_probability,
        cuts.min_bytes,
        cuts.max_bytes,
        cuts.max_cuts
    );
    // The proxy runs until the process is stopped.
    std::future::pending::<()>().await;
}
