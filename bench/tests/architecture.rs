//! The architecture, held by test: the API depends on the library and the catalog only (no
//! worker crate, no image or font crate, no reqwest: the one URL it fetches, a JWKS, goes
//! through hyper's own client; no aws-lc: TLS is rustls with ring), the catalog on nothing of
//! ours, and no code outside the library crate speaks Redis (no Redis command built, no client
//! opened, no key spelled): every change of the key layout has one place to go.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ sits in the workspace")
        .to_path_buf()
}

/// `cargo metadata`: every package and the resolved graph of normal dependencies.
fn metadata() -> Value {
    // Resolved for this machine only: the other platforms' crates need not be downloaded.
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc names its host");
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host,
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata is JSON")
}

/// The names of every package `package` depends on through normal dependencies (its own
/// default features, as `cargo tree -p <package>` shows).
fn dependencies_of(package: &str) -> BTreeSet<String> {
    let m = metadata();
    let name_of: HashMap<&str, &str> = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> = m["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let start = name_of
        .iter()
        .find(|(_, n)| **n == package)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("no package {package}"));
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    while let Some(id) = todo.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let pkg = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(name_of[pkg].to_string()) {
                todo.push(pkg);
            }
        }
    }
    seen
}

#[test]
fn the_api_depends_on_the_library_and_the_catalog_not_on_the_worker() {
    let deps = dependencies_of("taskfleet-api");
    assert!(deps.contains("taskfleet") && deps.contains("taskfleet-catalog"));
    for banned in [
        "taskfleet-worker",
        "png",
        "ab_glyph",
        "reqwest",
        "aws-lc-sys",
    ] {
        assert!(!deps.contains(banned), "the API links {banned}");
    }
}

#[test]
fn the_catalog_depends_on_nothing_of_ours() {
    let deps = dependencies_of("taskfleet-catalog");
    let ours: Vec<&String> = deps.iter().filter(|d| d.starts_with("taskfleet")).collect();
    assert!(ours.is_empty(), "the catalog depends on {ours:?}");
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_code_outside_the_library_speaks_redis() {
    // What building a command, opening a client or spelling a key looks like.
    let patterns = [
        "redis::cmd",
        "redis::pipe",
        "redis::Cmd",
        "redis::Client",
        "redis::Pipeline",
        "redis::Script",
        "\"tf:",
        ":{video}",
    ];
    let mut files = Vec::new();
    for crate_dir in ["api", "worker", "bench", "catalog"] {
        sources(&root().join(crate_dir), &mut files);
    }
    let this = Path::new(file!()).file_name().unwrap();
    let mut found = Vec::new();
    for f in files.iter().filter(|f| f.file_name() != Some(this)) {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for p in patterns {
                if code.contains(p) {
                    found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "Redis spoken outside the library:\n{}",
        found.join("\n")
    );
}
