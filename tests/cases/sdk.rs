//! The Rust SDK crate (`plugins/rust/sluice-plugin`): publishable on its own, so it
//! carries the WIT it is built against, which must stay the repository's contract.

use std::path::Path;

#[test]
fn the_sdk_carries_the_published_contract_unchanged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let contract = std::fs::read_to_string(root.join("wit/plugin.wit")).unwrap();
    let copy =
        std::fs::read_to_string(root.join("plugins/rust/sluice-plugin/wit/plugin.wit")).unwrap();
    assert!(
        copy == contract,
        "plugins/rust/sluice-plugin/wit/plugin.wit differs from wit/plugin.wit: \
         copy the contract into the SDK (a published contract never changes, so this \
         means wit/plugin.wit was edited)"
    );
    let version = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("package "))
            .map(String::from)
    };
    assert_eq!(
        version(&copy).as_deref(),
        Some("package sluice:plugin@0.2.0;")
    );
}
