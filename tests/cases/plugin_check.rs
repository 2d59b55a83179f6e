//! `sluice plugin check`: the typed report for good and bad components, the binary's
//! exit code, and the compile cache seen through `Plugin::load` (with timings).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sluice::check::{
    self, CheckError, ExportRole, ImportStatus, Options, Problem, Refusal, Report, Trial,
};
use sluice::plugin::{
    CacheStatus, Capabilities, CompileCache, Plugin, PluginLimits, PluginSource, PluginSpec,
    Runtime, World, builtin,
};

use crate::common::proxy::rust_plugin;

fn options(config: Option<&str>) -> Options {
    Options {
        config: config.map(str::to_string),
        ..Options::default()
    }
}

fn report(name: &str, bytes: &[u8], config: Option<&str>) -> Report {
    check::check_bytes(Path::new(name), bytes, &options(config))
        .unwrap_or_else(|e| panic!("{name}: analysis failed: {e}"))
}

fn component(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("fixture WAT")
}

/// A component whose root exports are plain functions `() -> ()` with the given names
/// (the type is wrong for the contract, which only the trial instance finds out), and
/// whose imports are empty instances with the given names.
fn shaped(imports: &[&str], exports: &[&str]) -> Vec<u8> {
    let imports: String = imports
        .iter()
        .map(|name| format!("(import \"{name}\" (instance))\n"))
        .collect();
    let exports: String = exports
        .iter()
        .map(|name| format!("(func (export \"{name}\") (canon lift (core func $i \"f\")))\n"))
        .collect();
    component(&format!(
        "(component
           {imports}
           (core module $m (func (export \"f\")))
           (core instance $i (instantiate $m))
           {exports})"
    ))
}

fn temp_path(label: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "sluice-check-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

#[test]
fn the_builtin_pass_plugin_is_a_filter() {
    let r = report("pass.wasm", builtin::PASS, None);
    assert!(r.passed(), "{r}");
    assert_eq!(r.world, Some(World::Filter));
    assert_eq!(r.trial, Trial::Passed);
    assert_eq!(r.size, builtin::PASS.len());
    assert!(r.compile_time > Duration::ZERO);
    assert!(r.imports.iter().all(|i| i.status == ImportStatus::Provided));
    let exports: Vec<(&str, ExportRole)> = r
        .exports
        .iter()
        .map(|e| (e.name.as_str(), e.role))
        .collect();
    assert_eq!(exports, vec![("on-event", ExportRole::OnEvent)]);
    let text = r.to_string();
    assert!(
        text.contains("contract:  sluice:plugin@0.1.0\nworld:     filter"),
        "{text}"
    );
    assert!(text.contains("result:    OK"), "{text}");
}

#[test]
fn the_builtin_demo_plugin_is_an_interceptor_importing_only_the_host() {
    let r = report("demo.wasm", builtin::DEMO, None);
    assert!(r.passed(), "{r}");
    assert_eq!(r.world, Some(World::Interceptor));
    assert_eq!(r.trial, Trial::Passed);
    let host = r
        .imports
        .iter()
        .find(|i| i.name == "sluice:plugin/host@0.1.0")
        .unwrap_or_else(|| panic!("imports the host interface: {r}"));
    assert_eq!(host.status, ImportStatus::Provided);
    assert_eq!(host.kind, "instance");
    assert!(host.items.iter().any(|i| i == "log"), "{r}");
    let mut names: Vec<&str> = r.exports.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec!["init", "on-event", "on-stream-end", "on-stream-start"]
    );
    let text = r.to_string();
    assert!(
        text.lines()
            .any(|l| l.contains("sluice:plugin/host@0.1.0") && l.contains(" provided ")),
        "{text}"
    );
}

#[test]
fn the_rust_redact_plugin_needs_a_config_and_accepts_a_good_one() {
    let path = rust_plugin("redact");
    let r = check::check(&path, &options(None)).unwrap();
    assert_eq!(r.world, Some(World::Interceptor));
    assert!(
        r.passed(),
        "an init refusal without --config is a note: {r}"
    );
    match &r.trial {
        Trial::NeedsConfig(reason) => assert!(reason.contains("no config given"), "{reason}"),
        other => panic!("expected a note about the configuration, got {other:?}"),
    }
    assert!(r.to_string().contains("note:"), "{r}");

    let good = check::check(&path, &options(Some(r#"{"patterns":["sk-[a-z]+"]}"#))).unwrap();
    assert!(good.passed(), "{good}");
    assert_eq!(good.trial, Trial::Passed);

    let bad = check::check(&path, &options(Some(r#"{"patterns":[]}"#))).unwrap();
    assert!(!bad.passed(), "a refused --config is a problem: {bad}");
    assert!(matches!(bad.trial, Trial::Failed(_)), "{bad}");
    assert!(matches!(&bad.problems[..], [Problem::Trial(reason)] if reason.contains("empty")));
}

#[test]
fn an_init_that_refuses_everything_is_a_note_without_config_and_a_problem_with_it() {
    let r = report("badinit.wasm", builtin::BADINIT, None);
    assert!(r.passed(), "{r}");
    assert!(matches!(r.trial, Trial::NeedsConfig(_)), "{r}");
    let r = report("badinit.wasm", builtin::BADINIT, Some("{}"));
    assert!(!r.passed(), "{r}");
    assert!(matches!(&r.problems[..], [Problem::Trial(_)]), "{r}");
}

#[test]
fn a_core_module_is_told_to_be_wrapped() {
    let err =
        check::check_bytes(Path::new("core.wasm"), b"\0asm\x01\0\0\0", &options(None)).unwrap_err();
    assert!(matches!(err, CheckError::CoreModule { .. }), "{err}");
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");
    assert!(
        err.to_string().contains("wasm-tools component new"),
        "{err}"
    );
}

#[test]
fn garbage_is_not_webassembly() {
    let err = check::check_bytes(Path::new("x.wasm"), b"#!/bin/sh\necho hi\n", &options(None))
        .unwrap_err();
    assert!(matches!(err, CheckError::NotWasm { .. }), "{err}");
    let err = check::check_bytes(Path::new("x.wasm"), b"", &options(None)).unwrap_err();
    assert!(matches!(err, CheckError::NotWasm { .. }), "{err}");
    // The component header and nothing else that makes sense.
    let err = check::check_bytes(
        Path::new("x.wasm"),
        b"\0asm\x0d\0\x01\0\xff\xff",
        &options(None),
    )
    .unwrap_err();
    assert!(matches!(err, CheckError::Invalid { .. }), "{err}");
    let err = check::check(Path::new("/nonexistent/x.wasm"), &options(None)).unwrap_err();
    assert!(matches!(err, CheckError::Read { .. }), "{err}");
}

#[test]
fn a_component_built_against_another_package_version_is_refused_with_both_versions() {
    let bytes = shaped(
        &["sluice:plugin/types@0.3.0", "sluice:plugin/host@0.3.0"],
        &["on-event"],
    );
    let r = report("v3.wasm", &bytes, None);
    assert!(!r.passed());
    assert_eq!(
        r.problems,
        vec![Problem::WrongVersion {
            found: "0.3.0".into()
        }],
        "one problem for the version, not one per import: {r}"
    );
    assert_eq!(r.trial, Trial::Skipped);
    let text = r.to_string();
    assert!(
        text.contains("built against sluice:plugin@0.3.0, this host implements 0.1.0 and 0.2.0"),
        "{text}"
    );

    let old = report(
        "old.wasm",
        &shaped(&["sluice:plugin/host@0.0.1"], &["on-event"]),
        None,
    );
    assert_eq!(
        old.problems,
        vec![Problem::WrongVersion {
            found: "0.0.1".into()
        }]
    );
}

#[test]
fn a_wasi_import_is_refused() {
    let bytes = shaped(
        &["sluice:plugin/host@0.1.0", "wasi:cli/stdout@0.2.0"],
        &["on-event"],
    );
    let r = report("wasi.wasm", &bytes, None);
    assert!(!r.passed());
    assert_eq!(
        r.problems,
        vec![Problem::RefusedImport {
            name: "wasi:cli/stdout@0.2.0".into(),
            refusal: Refusal::Wasi,
        }]
    );
    let statuses: Vec<(&str, &ImportStatus)> = r
        .imports
        .iter()
        .map(|i| (i.name.as_str(), &i.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("sluice:plugin/host@0.1.0", &ImportStatus::Provided),
            (
                "wasi:cli/stdout@0.2.0",
                &ImportStatus::Refused(Refusal::Wasi)
            ),
        ]
    );
    assert!(
        r.to_string()
            .contains("REFUSED (the host grants no WASI unless"),
        "{r}"
    );

    // With a grant, as `capabilities = { stdio = true }` would load it: WASI is linked,
    // and only the (deliberately wrong) type of `on-event` is left to complain about.
    let granted = check::check_bytes(
        Path::new("wasi.wasm"),
        &bytes,
        &Options {
            capabilities: Capabilities {
                stdio: true,
                ..Capabilities::default()
            },
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(
        granted.imports[1].status,
        ImportStatus::Granted,
        "{granted}"
    );
    assert!(
        matches!(&granted.problems[..], [Problem::Trial(_)]),
        "{granted}"
    );
}

#[test]
fn missing_or_partial_exports_are_refused() {
    let none = report("empty.wasm", &component("(component)"), None);
    assert_eq!(none.world, None);
    assert_eq!(none.problems, vec![Problem::MissingOnEvent]);

    let partial = report("partial.wasm", &shaped(&[], &["on-event", "init"]), None);
    assert_eq!(partial.world, None);
    assert_eq!(
        partial.problems,
        vec![Problem::PartialInterceptor {
            missing: vec!["on-stream-start", "on-stream-end"]
        }]
    );
    assert!(
        partial
            .to_string()
            .contains("on-stream-start, on-stream-end")
    );
}

#[test]
fn an_export_of_the_wrong_type_fails_the_trial_and_a_compatible_patch_version_links() {
    // `on-event: func()` instead of `func(event: sse-event) -> verdict`, importing the
    // host at 0.1.1: the linker matches 0.1.1 to the host's 0.1.0 (semver), so the only
    // problem is the export's type, found by the trial instance.
    let bytes = shaped(&["sluice:plugin/host@0.1.1"], &["on-event", "extra"]);
    let r = report("wrongtype.wasm", &bytes, None);
    assert_eq!(r.world, Some(World::Filter));
    assert_eq!(r.imports[0].status, ImportStatus::Provided);
    assert_eq!(r.exports[1].role, ExportRole::Ignored);
    assert!(matches!(r.trial, Trial::Failed(_)), "{r}");
    assert!(
        matches!(&r.problems[..], [Problem::Trial(reason)] if reason.contains("on-event") || reason.contains("does not match")),
        "{r}"
    );
}

#[test]
fn the_binary_reports_the_world_and_fails_on_a_core_module() {
    let redact = rust_plugin("redact");
    // No RUST_LOG: the report is the output; the logs (on stderr) stay quiet.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plugin", "check"])
        .arg(&redact)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "no log lines beside the report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("world:     interceptor"), "{stdout}");
    assert!(stdout.contains("compile:"), "{stdout}");

    let core = temp_path("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plugin", "check"])
        .arg(&core)
        .output()
        .unwrap();
    std::fs::remove_file(&core).unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("core WebAssembly module"), "{stderr}");

    let v3 = temp_path("v3.wasm");
    std::fs::write(&v3, shaped(&["sluice:plugin/host@0.3.0"], &["on-event"])).unwrap();
    // A refusal is a plain report and exit 1: no error line, no backtrace, even with
    // RUST_BACKTRACE set (as many Rust developers have it).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plugin", "check"])
        .arg(&v3)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    std::fs::remove_file(&v3).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("result:    REFUSED"), "{stdout}");
    assert!(
        stdout.contains("this host implements 0.1.0 and 0.2.0"),
        "{stdout}"
    );
}

/// Loads redact and the demo plugin twice through a fresh cache directory (each time
/// with a fresh `Runtime`, like a restart) and prints both times. Run with
/// `cargo test --test integration compile_cache -- --nocapture` to see them.
#[test]
fn compile_cache_miss_then_hit_across_restarts() {
    let dir = temp_path("cache");
    let redact = rust_plugin("redact");
    let specs = [
        PluginSpec {
            powers: Default::default(),
            name: "redact".into(),
            source: PluginSource::File(redact),
            config: r#"{"patterns":["sk-[a-z]+"]}"#.into(),
            limits: PluginLimits::default(),
            capabilities: Default::default(),
        },
        PluginSpec {
            powers: Default::default(),
            name: "demo".into(),
            source: PluginSource::Bytes(builtin::DEMO),
            config: String::new(),
            limits: PluginLimits::default(),
            capabilities: Default::default(),
        },
    ];
    for spec in specs {
        let load = || {
            let runtime = Runtime::with_cache(Some(CompileCache::new(&dir).unwrap())).unwrap();
            let plugin = Plugin::load(&runtime, spec.clone()).unwrap();
            (plugin.cache_status(), plugin.compile_time())
        };
        let (cold_status, cold) = load();
        let (warm_status, warm) = load();
        println!(
            "compile cache, {}: cold {:.1} ms ({}), cached {:.2} ms ({})",
            spec.name,
            cold.as_secs_f64() * 1e3,
            cold_status.as_str(),
            warm.as_secs_f64() * 1e3,
            warm_status.as_str()
        );
        assert_eq!(cold_status, CacheStatus::Miss);
        assert_eq!(warm_status, CacheStatus::Hit);
    }
    let uncached = Plugin::load(
        &Runtime::new().unwrap(),
        crate::common::proxy::wat("pass", builtin::PASS),
    )
    .unwrap();
    assert_eq!(uncached.cache_status(), CacheStatus::Off);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `sluice wit` prints the contract a plugin outside a checkout builds against: each
/// published version exactly as in `wit/`.
#[test]
fn sluice_wit_prints_each_published_contract() {
    let wit = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("wit")
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
    let file = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    assert_eq!(wit(&[]), (Some(0), file("plugin.wit")));
    assert_eq!(
        wit(&["--version", "0.1.0"]),
        (Some(0), file("0.1.0/plugin.wit"))
    );
    assert_eq!(
        wit(&["--version", "0.1.0-revised"]),
        (Some(0), file("0.1.0-revised/plugin.wit"))
    );
    assert_eq!(wit(&["--version", "0.3.0"]), (Some(1), String::new()));
}

/// `plugin check` compiles through the proxy's compile cache: the first check of a
/// component stores it (the cache directory gains its file), the second is a hit;
/// `--no-cache` neither reads nor writes it.
#[test]
fn a_second_check_of_the_same_component_is_a_cache_hit() {
    let plugin = rust_plugin("passthrough");
    let dir = temp_path("cache");
    let check = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["plugin", "check"])
            .arg(&plugin)
            .args(extra)
            .env("SLUICE_CACHE_DIR", &dir)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}");
        stdout
    };
    let entries = || -> Vec<PathBuf> {
        std::fs::read_dir(&dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    let cache_dir = dir.to_str().unwrap();

    let cold = check(&["--no-cache"]);
    assert!(cold.contains("(cold, no cache)"), "{cold}");
    assert!(entries().is_empty(), "--no-cache writes nothing");

    let first = check(&["--cache-dir", cache_dir]);
    assert!(
        first.contains(&format!("(cache miss: compiled, stored in {cache_dir})")),
        "{first}"
    );
    let stored = entries();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].extension().is_some_and(|e| e == "cwasm"));

    let second = check(&["--cache-dir", cache_dir]);
    assert!(
        second.contains(&format!("(cache hit: read from {cache_dir})")),
        "{second}"
    );
    assert!(second.contains("result:    OK"), "{second}");
    assert_eq!(entries(), stored, "a hit stores nothing new");

    // Without the flag, the proxy's default directory ($SLUICE_CACHE_DIR first).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plugin", "check"])
        .arg(&plugin)
        .env("SLUICE_CACHE_DIR", &dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(cache hit: read from"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}
