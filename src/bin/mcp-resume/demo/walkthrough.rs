//! What `mcp-resume demo` prints to try it: `examples/walkthrough.sh`, the
//! one copy of the curl commands that call a tool, cut its stream and resume
//! it, pointed at the demo's address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `examples/walkthrough.sh`.
const SCRIPT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/walkthrough.sh"
));

/// The text `mcp-resume demo` prints once it listens on `addr`: what the
/// walkthrough does, and the walkthrough itself as one command to paste into
/// another terminal. Its last line has no line break: printing adds it.
pub fn walkthrough(addr: SocketAddr) -> String {
    format!(
        "\nTry it from another terminal: paste the lines below (examples/walkthrough.sh,\n\
         pointed at this server). They call `countdown`, cut its stream after a few\n\
         events, and resume it with Last-Event-ID.\n\n{}",
        paste_command(&mcp_url(addr))
    )
}

/// The script as one shell command: `sh` reads it from a here-document, with
/// `url` as its first argument.
fn paste_command(url: &str) -> String {
    format!("sh -s -- '{url}' <<'WALKTHROUGH'\n{SCRIPT}WALKTHROUGH")
}

/// The MCP endpoint of a demo listening on `addr`. A wildcard address is not
/// one to connect to: loopback stands in for it.
fn mcp_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/mcp", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::Arc;
    use std::time::Duration;

    use mcp_resume::ResumabilityLayer;
    use mcp_resume::proxy::{DEFAULT_LISTEN_ADDR, ServeOptions, serve};
    use mcp_resume::store::MemoryEventStore;
    use tower::Layer;

    use crate::demo::DemoServer;

    #[test]
    fn the_walkthrough_connects_to_loopback_for_a_wildcard_address() {
        let text = walkthrough("0.0.0.0:9000".parse().unwrap());
        assert!(text.contains("sh -s -- 'http://127.0.0.1:9000/mcp' <<'WALKTHROUGH'\n#!/bin/sh\n"));
        assert!(text.ends_with("\nWALKTHROUGH"));
        assert_eq!(
            mcp_url("[::]:9000".parse().unwrap()),
            "http://[::1]:9000/mcp"
        );
    }

    #[test]
    fn run_alone_the_script_calls_the_demo_at_the_default_address() {
        let default_url = format!("${{MCP_URL:-http://{DEFAULT_LISTEN_ADDR}/mcp}}");
        assert!(SCRIPT.contains(&default_url), "{default_url}");
    }

    /// The `seq` of each `id: <stream>.<seq>` line of `lines`.
    fn seqs<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<u64> {
        lines
            .filter_map(|line| line.strip_prefix("id: "))
            .map(|id| id.rsplit_once('.').unwrap().1.parse().unwrap())
            .collect()
    }

    /// The printed command, run as a user would paste it, against the demo
    /// behind the layer: the stream is cut after three events, and the
    /// resume gets every later one, then the result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_printed_walkthrough_cuts_a_countdown_and_resumes_it() {
        let curl = Command::new("curl").arg("--version").output();
        assert!(
            curl.is_ok_and(|output| output.status.success()),
            "the walkthrough runs curl: install it (e.g. apt-get install curl)"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service =
            ResumabilityLayer::new(Arc::new(MemoryEventStore::new())).layer(DemoServer::new());
        tokio::spawn(serve(
            listener,
            service,
            std::future::pending(),
            ServeOptions::new(),
        ));

        let printed = walkthrough(addr);
        let command = format!("{}\n", &printed[printed.find("sh -s").unwrap()..]);
        let run = tokio::task::spawn_blocking(move || {
            Command::new("sh")
                .arg("-c")
                .arg(command)
                .env_remove("MCP_URL")
                .env_remove("MCP_TOOL")
                .env("MCP_TOOL_ARGUMENTS", r#"{"steps":6,"interval_ms":100}"#)
                .env("CUT_AFTER_EVENTS", "3")
                .env("RESUME_AFTER_SECONDS", "0")
                .output()
                .unwrap()
        });
        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("hang guard: the walkthrough ends within 30 s")
            .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");

        let (call, resume) = stdout
            .split_once("\n# cut after ")
            .unwrap_or_else(|| panic!("no cut in\n{stdout}"));
        // The priming event and two progress notifications, then the cut.
        assert_eq!(seqs(call.lines()), [0, 1, 2], "{stdout}");
        // Primed again at the resume point, then the rest: six steps and the result.
        assert_eq!(seqs(resume.lines()), [2, 3, 4, 5, 6, 7], "{stdout}");
        let result = resume
            .lines()
            .rev()
            .find(|line| line.starts_with("data: "))
            .unwrap();
        assert!(
            result.contains(r#""id":2"#) && result.contains("counted down 6 steps"),
            "{result}"
        );
        assert!(stdout.ends_with("# session ended\n"), "{stdout}");
    }
}
