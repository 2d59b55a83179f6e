//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, server
//! scenarios) run against a server directly and through sluice: the results must be the
//! same, check for check. Failures of the direct run are the server's own and form the
//! expected baseline; sluice may not add or remove any.

use std::path::PathBuf;

use crate::common::{peers, proxy};

fn out_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("conformance")
        .join(name)
}

/// Runs the suite against `server` directly and through sluice with each plugin set.
async fn same_through_sluice(name: &str, server: peers::PeerServer) {
    let (direct, direct_counts) =
        peers::conformance(&server.url, &out_dir(&format!("{name}-direct"))).await;
    assert!(
        direct.lines().count() > 20,
        "the suite ran its scenarios:\n{direct}"
    );
    println!("{name} direct: {direct_counts}");
    for (label, plugins) in [
        ("no-plugin", vec![]),
        ("passthrough", vec![proxy::rust("passthrough", "")]),
    ] {
        let sluice = proxy::start(&server.base(), plugins).await;
        let url = format!("{}{}", sluice.url(), server.path());
        let (proxied, counts) =
            peers::conformance(&url, &out_dir(&format!("{name}-{label}"))).await;
        sluice.stop().await;
        println!("{name} through sluice ({label}): {counts}");
        let diff: Vec<String> = diff_lines(&direct, &proxied)
            .into_iter()
            .filter(|line| !sluice_protects(line, &direct))
            .collect();
        if !diff.is_empty() {
            panic!(
                "conformance through sluice ({label}) differs from direct:\n{}",
                diff.join("\n")
            );
        }
    }
}

/// Whether a difference is sluice's own DNS-rebinding protection (its `Host` check)
/// turning a server's failure into a pass: the one change sluice is meant to make.
fn sluice_protects(diff_line: &str, direct: &str) -> bool {
    let check = diff_line[2..]
        .rsplit_once(' ')
        .map_or("", |(check, _)| check);
    check.starts_with("dns-rebinding-protection/")
        && (diff_line.starts_with("- ") && diff_line.ends_with(" FAILURE")
            || diff_line.starts_with("+ ")
                && diff_line.ends_with(" SUCCESS")
                && direct.contains(&format!("{check} FAILURE")))
}

/// `-` lines only in `a`, `+` lines only in `b`.
fn diff_lines(a: &str, b: &str) -> Vec<String> {
    let only = |x: &str, y: &str, sign: char| -> Vec<String> {
        x.lines()
            .filter(|l| !y.lines().any(|m| m == *l))
            .map(|l| format!("{sign} {l}"))
            .collect()
    };
    let mut out = only(a, b, '-');
    out.extend(only(b, a, '+'));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_server_passes_the_same_checks_through_sluice() {
    let server = peers::conformance_server().await;
    same_through_sluice("reference", server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_gets_the_same_results_through_sluice() {
    let server = peers::everything_server("streamableHttp").await;
    same_through_sluice("everything", server).await;
}
