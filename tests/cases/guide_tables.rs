//! The guide's templates table (docs/writing-plugins.md, "Templates") against what
//! `plugins/build-all.sh` writes to plugins/dist: each row's component exists, its
//! contract and world are what `wasm-tools component wit` shows, and its size is the
//! stated one within 10% (sizes move a little with toolchain versions; a plugin that
//! doubles, or a row left behind when a plugin changes world, fails here).

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The component a row's template link stands for, in plugins/dist.
fn component_of(link: &str) -> String {
    let link = link.trim_start_matches("../plugins/");
    let dir = link
        .split('/')
        .take_while(|p| !p.contains('.'))
        .collect::<Vec<_>>();
    match dir.as_slice() {
        ["rust", "reference", ..] => "reference-rust".into(),
        ["rust", "passthrough-v2", ..] => "passthrough-v0.2".into(),
        ["rust", crate_name, ..] => (*crate_name).into(),
        [language, ..] => format!("reference-{language}"),
        [] => panic!("no template directory in link {link:?}"),
    }
}

/// The contract column's text for a component's WIT, as `wasm-tools component wit`
/// prints it: `0.2`, or `0.1 (`world`)` with the 0.1 world its exports implement.
fn contract_of(wit: &str) -> String {
    let exports = |name: &str| {
        wit.lines()
            .any(|l| l.trim_start().starts_with(&format!("export {name}")))
    };
    if wit.contains("export sluice:plugin/handler@0.2.0;") {
        return "0.2".into();
    }
    let world = match (exports("init:"), exports("on-events:")) {
        (true, true) => "batch-interceptor",
        (true, false) => "interceptor",
        (false, true) => "batch-filter",
        (false, false) => "filter",
    };
    format!("0.1 (`{world}`)")
}

/// "15 KB", "18.5 MB" in bytes (decimal units, as the table writes them).
fn bytes_of(size: &str) -> f64 {
    let (number, unit) = size
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("size {size:?}"));
    let number: f64 = number.parse().unwrap_or_else(|_| panic!("size {size:?}"));
    number
        * match unit {
            "KB" => 1e3,
            "MB" => 1e6,
            other => panic!("size unit {other:?} in {size:?}"),
        }
}

#[test]
fn the_guides_templates_table_matches_plugins_dist() {
    let guide = std::fs::read_to_string(root().join("docs/writing-plugins.md")).unwrap();
    let section = guide
        .split("\n## Templates\n")
        .nth(1)
        .expect("docs/writing-plugins.md has a `## Templates` section")
        .split("\n## ")
        .next()
        .unwrap();
    let wasm_tools = root().join("plugins/.venv/bin/wasm-tools");
    assert!(
        wasm_tools.exists(),
        "{} missing: run plugins/setup.sh",
        wasm_tools.display()
    );

    let mut rows = 0;
    let mut wrong = Vec::new();
    for line in section
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("](../plugins/"))
    {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let [language, template, contract, size, _notes] = cells[..] else {
            panic!("a templates row has 5 cells: {line}");
        };
        let link = template
            .split("](")
            .nth(1)
            .and_then(|l| l.split(')').next())
            .unwrap();
        let name = component_of(link);
        let path = root().join(format!("plugins/dist/{name}.wasm"));
        assert!(
            path.exists(),
            "{} is missing: run plugins/build-all.sh",
            path.display()
        );
        let output = Command::new(&wasm_tools)
            .args(["component", "wit"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "wasm-tools component wit {}",
            path.display()
        );
        let actual_contract = contract_of(&String::from_utf8_lossy(&output.stdout));
        if actual_contract != contract {
            wrong.push(format!(
                "{language} {name}: contract {contract:?}, the component is {actual_contract:?}"
            ));
        }
        let actual = std::fs::metadata(&path).unwrap().len() as f64;
        let stated = bytes_of(size);
        if (actual - stated).abs() > stated * 0.10 {
            wrong.push(format!(
                "{language} {name}: size {size}, the component is {actual} bytes"
            ));
        }
        rows += 1;
    }
    assert!(rows >= 10, "found only {rows} rows in the templates table");
    assert!(
        wrong.is_empty(),
        "docs/writing-plugins.md, Templates, is stale:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn contract_column_reads_the_exports() {
    assert_eq!(
        contract_of("  export sluice:plugin/handler@0.2.0;\n"),
        "0.2"
    );
    assert_eq!(
        contract_of(
            "  export init: func();\n  export on-events: func();\n  export on-event: func();"
        ),
        "0.1 (`batch-interceptor`)"
    );
    assert_eq!(contract_of("  export on-event: func();"), "0.1 (`filter`)");
    assert_eq!(
        component_of("../plugins/rust/passthrough-v2/src/lib.rs"),
        "passthrough-v0.2"
    );
    assert_eq!(component_of("../plugins/c/README.md"), "reference-c");
    assert_eq!(component_of("../plugins/rust/quota/src/lib.rs"), "quota");
    assert_eq!(bytes_of("18.5 MB"), 18.5e6);
}
