//! The deploy files (Dockerfile, docker-compose.yml, .dockerignore) read and checked against
//! the workspace: Docker is not needed to run this, so the files stay correct by test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_norway::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ sits in the workspace")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn compose() -> Value {
    serde_norway::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

/// A service's `command`, as words (a list, or a string split on whitespace).
fn command(svc: &Value) -> Vec<String> {
    match svc.get("command") {
        Some(Value::Sequence(words)) => words.iter().map(text).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
        other => panic!("a command is a list or a string, found {other:?}"),
    }
}

/// A service's `environment`, from either the map or the `KEY=value` list form.
fn environment(svc: &Value) -> BTreeMap<String, String> {
    match svc.get("environment") {
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (text(k), text(v))).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                let s = text(i);
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        None => BTreeMap::new(),
        other => panic!("environment is a map or a list, found {other:?}"),
    }
}

/// A service's volume mounts as (source, target), short or long syntax.
fn mounts(svc: &Value) -> Vec<(String, String)> {
    let Some(Value::Sequence(vols)) = svc.get("volumes") else {
        return Vec::new();
    };
    vols.iter()
        .map(|v| match v {
            Value::String(s) => {
                let mut parts = s.split(':');
                let src = parts.next().unwrap_or_default().to_string();
                let dst = parts.next().unwrap_or_default().to_string();
                (src, dst)
            }
            long => (
                text(long.get("source").expect("volume source")),
                text(long.get("target").expect("volume target")),
            ),
        })
        .collect()
}

/// The build context and Dockerfile of a service, relative to the compose file.
fn build(svc: &Value) -> (String, String) {
    match svc.get("build") {
        Some(Value::String(ctx)) => (ctx.clone(), "Dockerfile".into()),
        Some(b @ Value::Mapping(_)) => (
            b.get("context").map_or(".".into(), text),
            b.get("dockerfile").map_or("Dockerfile".into(), text),
        ),
        other => panic!("the service must be built from the Dockerfile, found build: {other:?}"),
    }
}

/// The host of a `redis://[user:pass@]host[:port][/db]` URL.
fn redis_host(url: &str) -> String {
    let rest = url
        .strip_prefix("redis://")
        .unwrap_or_else(|| panic!("{url:?} is not a redis:// URL"));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    rest.split([':', '/'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The Dockerfile as instructions: continuation lines joined, comments and blanks dropped.
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// The binaries a crate's manifest builds: its `[[bin]]` names, else the package name.
fn binaries(manifest: &str) -> Vec<String> {
    let m: toml::Table = read(manifest).parse().expect("a Cargo.toml is TOML");
    let bins: Vec<String> = m
        .get("bin")
        .and_then(|b| b.as_array())
        .map(|bins| {
            bins.iter()
                .filter_map(|b| b.get("name")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if !bins.is_empty() {
        return bins;
    }
    vec![m["package"]["name"]
        .as_str()
        .expect("package.name")
        .to_string()]
}

fn package(manifest: &str) -> String {
    let m: toml::Table = read(manifest).parse().expect("a Cargo.toml is TOML");
    m["package"]["name"]
        .as_str()
        .expect("package.name")
        .to_string()
}

#[test]
fn compose_has_redis_api_and_worker() {
    let c = compose();
    for name in ["redis", "api", "worker"] {
        service(&c, name);
    }
}

#[test]
fn redis_runs_with_appendonly_and_noeviction_on_a_volume() {
    let c = compose();
    let redis = service(&c, "redis");
    let image = text(redis.get("image").expect("redis image"));
    assert!(image.starts_with("redis:7"), "redis image {image:?}");
    let cmd = command(redis);
    let flag = |name: &str| {
        cmd.iter()
            .position(|w| w == name)
            .and_then(|i| cmd.get(i + 1))
            .cloned()
    };
    assert_eq!(flag("--appendonly").as_deref(), Some("yes"), "{cmd:?}");
    assert_eq!(
        flag("--maxmemory-policy").as_deref(),
        Some("noeviction"),
        "{cmd:?}"
    );
    assert!(
        mounts(redis).iter().any(|(_, dst)| dst == "/data"),
        "redis keeps /data on a volume"
    );
}

#[test]
fn api_and_worker_run_the_image_built_from_the_dockerfile_against_the_redis_service() {
    let c = compose();
    let mut images = Vec::new();
    for (name, bin) in [("api", "taskfleet-api"), ("worker", "taskfleet-worker")] {
        let svc = service(&c, name);
        let (context, file) = build(svc);
        assert!(
            root().join(&context).join(&file) == root().join("Dockerfile"),
            "{name} builds {context}/{file}, not the Dockerfile"
        );
        images.push(svc.get("image").map(text));
        assert_eq!(command(svc).first().map(String::as_str), Some(bin));
        let env = environment(svc);
        let url = env.get("REDIS_URL").expect("REDIS_URL");
        assert_eq!(redis_host(url), "redis", "{name}'s REDIS_URL {url:?}");
        service(&c, &redis_host(url));
    }
    assert_eq!(images[0], images[1], "api and worker share one image");
}

#[test]
fn api_listens_on_8080_with_an_admin_key_and_workers_run_two_replicas() {
    let c = compose();
    let api = service(&c, "api");
    let env = environment(api);
    assert_eq!(
        env.get("TASKFLEET__API__LISTEN").map(String::as_str),
        Some("0.0.0.0:8080")
    );
    assert!(env.contains_key("TASKFLEET__AUTH__ADMIN_KEY"));
    let ports: Vec<String> = api
        .get("ports")
        .and_then(Value::as_sequence)
        .expect("api publishes a port")
        .iter()
        .map(text)
        .collect();
    assert!(ports.iter().any(|p| p.ends_with(":8080")), "{ports:?}");
    let worker = service(&c, "worker");
    let replicas = worker
        .get("deploy")
        .and_then(|d| d.get("replicas"))
        .and_then(Value::as_u64);
    assert_eq!(replicas, Some(2));
}

#[test]
fn api_and_worker_share_the_artifacts_volume_at_the_configured_dir() {
    let c = compose();
    let mut seen = Vec::new();
    for name in ["api", "worker"] {
        let svc = service(&c, name);
        let dir = environment(svc)
            .get("TASKFLEET__ARTIFACTS__DIR")
            .cloned()
            .unwrap_or_else(|| panic!("{name} sets TASKFLEET__ARTIFACTS__DIR"));
        let (src, _) = mounts(svc)
            .into_iter()
            .find(|(_, dst)| *dst == dir)
            .unwrap_or_else(|| panic!("{name} mounts a volume at {dir}"));
        assert!(
            c.get("volumes").and_then(|v| v.get(src.as_str())).is_some(),
            "{src} is a named volume"
        );
        seen.push((src, dir));
    }
    assert_eq!(seen[0], seen[1], "one artifacts volume, one path");
}

#[test]
fn dockerfile_builds_both_binaries_of_the_workspace() {
    let steps = dockerfile();
    let froms: Vec<&str> = steps
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a.as_str())
        .collect();
    assert!(
        froms
            .first()
            .is_some_and(|f| f.starts_with("rust:1-bookworm")),
        "{froms:?}"
    );
    assert_eq!(froms.last(), Some(&"debian:bookworm-slim"), "{froms:?}");
    let build = steps
        .iter()
        .find(|(op, a)| op == "RUN" && a.contains("cargo build"))
        .map(|(_, a)| a.clone())
        .expect("a RUN with cargo build");
    assert!(build.contains("--release"), "{build}");
    let copy = steps
        .iter()
        .filter(|(op, a)| op == "COPY" && a.contains("--from="))
        .map(|(_, a)| a.clone())
        .collect::<Vec<_>>()
        .join(" ");
    for manifest in ["api/Cargo.toml", "worker/Cargo.toml"] {
        let pkg = package(manifest);
        assert!(
            build.contains(&format!("-p {pkg}")) || build.contains("--workspace"),
            "the build builds {pkg}: {build}"
        );
        for bin in binaries(manifest) {
            assert!(
                build.contains(&format!("target/release/{bin}")),
                "{bin} is taken from target/release"
            );
            assert!(
                copy.contains(&bin),
                "{bin} is copied into the runtime image"
            );
        }
    }
}

#[test]
fn runtime_image_has_the_processors_tools_and_runs_as_a_user() {
    let steps = dockerfile();
    let last_from = steps.iter().rposition(|(op, _)| op == "FROM").unwrap();
    let runtime = &steps[last_from..];
    let installs = runtime
        .iter()
        .filter(|(op, a)| op == "RUN" && a.contains("apt-get install"))
        .map(|(_, a)| a.clone())
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = installs.split_whitespace().collect();
    for pkg in [
        "ffmpeg",
        "espeak-ng",
        "fonts-dejavu-core",
        "ca-certificates",
    ] {
        assert!(words.contains(&pkg), "the runtime image installs {pkg}");
    }
    let user = runtime
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, u)| u.as_str())
        .expect("a USER in the runtime stage");
    assert!(user != "root" && user != "0", "runs as {user}");
}

#[test]
fn dockerignore_leaves_out_target_dev_state_and_git() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches('/')
                .trim_end_matches('/')
                .to_string()
        })
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for p in ["target", ".dev", ".git"] {
        assert!(ignored.iter().any(|i| i == p), ".dockerignore lists {p}");
    }
}

#[test]
fn redis_url_hosts_are_read_with_or_without_credentials() {
    assert_eq!(redis_host("redis://redis:6379"), "redis");
    assert_eq!(redis_host("redis://:pw@redis:6379/0"), "redis");
    assert_eq!(redis_host("redis://redis"), "redis");
}

fn cluster_compose() -> Value {
    let mut v: Value = serde_norway::from_str(&read("docker-compose.cluster.yml"))
        .expect("docker-compose.cluster.yml is YAML");
    // The nodes and the binaries share their settings through YAML anchors and merge keys.
    v.apply_merge().expect("merge keys resolve");
    v
}

#[test]
fn the_cluster_compose_runs_three_cluster_nodes_and_names_them_as_seed_nodes() {
    let c = cluster_compose();
    let nodes = ["redis-1", "redis-2", "redis-3"];
    for name in nodes {
        let cmd = command(service(&c, name));
        let flag = |f: &str| {
            cmd.iter()
                .position(|w| w == f)
                .and_then(|i| cmd.get(i + 1))
                .cloned()
        };
        assert_eq!(flag("--cluster-enabled").as_deref(), Some("yes"), "{name}");
        assert_eq!(flag("--appendonly").as_deref(), Some("yes"), "{name}");
        assert_eq!(
            flag("--maxmemory-policy").as_deref(),
            Some("noeviction"),
            "{name}"
        );
    }
    for name in ["api", "worker"] {
        let svc = service(&c, name);
        let env = environment(svc);
        let seeds: Vec<String> = env["TASKFLEET__REDIS__CLUSTER_NODES"]
            .split(',')
            .map(|n| n.split(':').next().unwrap().to_string())
            .collect();
        assert_eq!(seeds, nodes, "{name} names every node as a seed");
        assert!(
            !env.contains_key("REDIS_URL"),
            "{name}: a cluster is not a URL"
        );
        assert_eq!(build(svc), (".".to_string(), "Dockerfile".to_string()));
        let waits = svc
            .get("depends_on")
            .and_then(|d| d.get("cluster-init"))
            .and_then(|i| i.get("condition"))
            .map(text);
        assert_eq!(
            waits.as_deref(),
            Some("service_completed_successfully"),
            "{name} starts once the cluster is formed"
        );
    }
    let init = command(service(&c, "cluster-init")).join(" ");
    assert!(init.contains("--cluster create"), "{init}");
}
