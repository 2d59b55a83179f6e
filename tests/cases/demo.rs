//! `sluice demo` shows a plugin passing, modifying and dropping events.

use std::time::Duration;

#[tokio::test]
async fn the_demo_passes_modifies_and_drops() {
    let mut out = Vec::new();
    let (running, report) =
        sluice::demo::run("127.0.0.1:0".parse().unwrap(), Duration::ZERO, &mut out)
            .await
            .unwrap();
    running.stop().await;
    let printed = String::from_utf8(out).unwrap();
    let received: Vec<&str> = report.received.iter().map(|e| e.data_str()).collect();
    assert_eq!(received.len(), 3, "{printed}");
    assert!(
        received
            .iter()
            .all(|d| !d.contains("notifications/progress")),
        "{printed}"
    );
    assert!(
        received.iter().all(|d| !d.contains("sk-live-4f9a8b7c2d")),
        "{printed}"
    );
    let masked = format!("sk-{}", "*".repeat("live-4f9a8b7c2d".len()));
    assert!(
        received[2].contains(&masked) && received[2].contains("\"id\":1"),
        "{printed}"
    );
    assert_eq!(
        (
            report.plugin.passed,
            report.plugin.modified,
            report.plugin.dropped
        ),
        (2, 2, 2),
        "the request and one log message passed"
    );
    assert!(printed.contains("2 modified, 2 dropped"), "{printed}");
}
