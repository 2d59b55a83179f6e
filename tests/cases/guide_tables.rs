//! The tables of plugins in the docs against what `plugins/build-all.sh` writes to
//! plugins/dist: the guide's templates table (docs/writing-plugins.md, "Templates") and
//! the examples table of plugins/README.md. Each row's component must exist, its
//! contract and world be what `wasm-tools component wit` shows, and its size the stated
//! one within 10% (sizes move a little with toolchain versions; a plugin that grows by
//! a tenth, or a row left behind when a plugin changes world, fails here).

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

/// The world a component's WIT (as `wasm-tools component wit` prints it) implements:
/// `plugin` (0.2), or the 0.1 world its exports make up.
fn world_of(wit: &str) -> &'static str {
    let exports = |name: &str| {
        wit.lines()
            .any(|l| l.trim_start().starts_with(&format!("export {name}")))
    };
    if wit.contains("export sluice:plugin/handler@0.2.0;") {
        return "plugin";
    }
    match (exports("init:"), exports("on-events:")) {
        (true, true) => "batch-interceptor",
        (true, false) => "interceptor",
        (false, true) => "batch-filter",
        (false, false) => "filter",
    }
}

/// The guide's contract column for a component's WIT: `0.2`, or `0.1 (`world`)`.
fn contract_of(wit: &str) -> String {
    match world_of(wit) {
        "plugin" => "0.2".into(),
        world => format!("0.1 (`{world}`)"),
    }
}

/// The WIT of plugins/dist/NAME.wasm (which must exist) and its size in bytes.
fn built(name: &str) -> (String, u64) {
    let path = root().join(format!("plugins/dist/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run plugins/build-all.sh",
        path.display()
    );
    let wasm_tools = root().join("plugins/.venv/bin/wasm-tools");
    assert!(
        wasm_tools.exists(),
        "{} missing: run plugins/setup.sh",
        wasm_tools.display()
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
    let size = std::fs::metadata(&path).unwrap().len();
    (String::from_utf8_lossy(&output.stdout).into_owned(), size)
}

/// None when `bytes` is the table's `size` within 10%; else what is wrong.
fn size_wrong(row: &str, size: &str, bytes: u64) -> Option<String> {
    let stated = bytes_of(size);
    ((bytes as f64 - stated).abs() > stated * 0.10)
        .then(|| format!("{row}: size {size}, the component is {bytes} bytes"))
}

/// The cells of the rows that link into `link_prefix` of the first table after the
/// line `heading` in `text`.
fn rows<'a>(text: &'a str, heading: &str, link_prefix: &str) -> Vec<Vec<&'a str>> {
    let mut lines = text.lines().skip_while(|l| *l != heading);
    assert!(lines.next().is_some(), "no {heading:?} section");
    lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| l.contains(link_prefix))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect()
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
    let rows = rows(&guide, "## Templates", "](../plugins/");
    assert!(
        rows.len() >= 10,
        "found only {} rows in the templates table",
        rows.len()
    );
    let mut wrong = Vec::new();
    for cells in &rows {
        let [language, template, contract, size, _notes] = cells[..] else {
            panic!("a templates row has 5 cells: {cells:?}");
        };
        let link = template
            .split("](")
            .nth(1)
            .and_then(|l| l.split(')').next())
            .unwrap();
        let name = component_of(link);
        let (wit, bytes) = built(&name);
        let actual = contract_of(&wit);
        if actual != contract {
            wrong.push(format!(
                "{language} {name}: contract {contract:?}, the component is {actual:?}"
            ));
        }
        wrong.extend(size_wrong(&format!("{language} {name}"), size, bytes));
    }
    assert!(
        wrong.is_empty(),
        "docs/writing-plugins.md, Templates, is stale:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn the_examples_table_of_plugins_readme_matches_plugins_dist() {
    let readme = std::fs::read_to_string(root().join("plugins/README.md")).unwrap();
    let rows = rows(&readme, "# Example plugins", "](rust/");
    assert!(
        rows.len() >= 10,
        "found only {} rows in the examples table",
        rows.len()
    );
    let mut wrong = Vec::new();
    for cells in &rows {
        let [plugin, world, _what, size] = cells[..] else {
            panic!("an examples row has 4 cells: {cells:?}");
        };
        let link = plugin
            .split("](")
            .nth(1)
            .and_then(|l| l.split(')').next())
            .unwrap();
        // A row for a family of plugins (the cookbook) links elsewhere and gives a range.
        if !link.starts_with("rust/") {
            continue;
        }
        let name = component_of(link);
        let (wit, bytes) = built(&name);
        // The world is the first `name` in the cell ("`plugin` (0.2)", "`filter`").
        let stated = world.split('`').nth(1).unwrap_or(world);
        let actual = world_of(&wit);
        if stated != actual {
            wrong.push(format!(
                "{name}: world {stated:?}, the component is {actual:?}"
            ));
        }
        wrong.extend(size_wrong(&name, size, bytes));
    }
    assert!(
        wrong.is_empty(),
        "plugins/README.md, the examples table, is stale:\n  {}",
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
    assert_eq!(component_of("rust/reference/src/lib.rs"), "reference-rust");
    assert_eq!(bytes_of("18.5 MB"), 18.5e6);
}
