//! deploy/kubernetes/ validated offline: every manifest against the
//! Kubernetes OpenAPI schemas shipped inside the `kubernetes-validate`
//! package (strict: unknown fields fail), for the oldest and newest
//! Kubernetes versions we state; the kustomization lists exactly the files
//! there and, where a kustomize is installed (`kustomize` or `kubectl
//! kustomize`), its build is the same documents and validates too; and the
//! Deployment holds the promises the docs make (security context, token,
//! probes, drain arithmetic).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::python::{require_venv, Venv};
use serde_json::Value;

/// The Kubernetes versions the manifests are validated against.
const VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
const VALIDATOR: &str = "kubernetes-validate==1.37.0";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// The manifests (every YAML file but the kustomization), sorted.
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/kubernetes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    files
}

fn venv() -> Venv {
    require_venv("k8s", &[VALIDATOR])
}

/// `kubernetes-validate --strict -k VERSION FILES…`: (success, output).
fn validate(venv: &Venv, version: &str, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(venv.bin("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", version])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every YAML document of `files`, as JSON (PyYAML comes with the validator).
fn documents(venv: &Venv, files: &[PathBuf]) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d is not None]\n\
                  print(json.dumps(docs))";
    let out = Command::new(venv.python())
        .arg("-c")
        .arg(script)
        .args(files)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

fn sorted_by_kind_and_name(mut docs: Vec<Value>) -> Vec<Value> {
    docs.sort_by_key(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]));
    docs
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schemas_offline() {
    let venv = venv();
    let files = manifests();
    for version in VERSIONS {
        let (ok, output) = validate(&venv, version, &files);
        assert!(ok, "Kubernetes {version}:\n{output}");
        for file in &files {
            let name = file.file_name().unwrap().to_string_lossy();
            assert!(
                output
                    .lines()
                    .any(|l| l.contains(&*name) && l.contains("passed")),
                "{name} was not validated against {version}:\n{output}"
            );
        }
    }
}

#[test]
fn the_validator_rejects_a_broken_manifest() {
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(deploy_dir().join("deployment.yaml")).unwrap();
    for (what, broken) in [
        (
            "privilegedd",
            original.replace(
                "allowPrivilegeEscalation: false",
                "allowPrivilegeEscalation: false\n            privilegedd: false",
            ),
        ),
        ("replicas", original.replace("replicas: 2", "replicas: two")),
    ] {
        assert_ne!(broken, original, "{what}: the edit did not apply");
        let file = dir.path().join("broken.yaml");
        std::fs::write(&file, broken).unwrap();
        let (ok, output) = validate(&venv, VERSIONS[0], &[file]);
        assert!(!ok, "{what}: a broken manifest passed:\n{output}");
        assert!(output.contains(what), "{what}:\n{output}");
    }
}

#[test]
fn the_kustomization_lists_every_manifest_and_builds_to_the_same_documents() {
    let venv = venv();
    let files = manifests();
    let kustomization = &documents(&venv, &[deploy_dir().join("kustomization.yaml")])[0];
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let present: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, present, "kustomization.yaml resources vs files");
    let keys: Vec<&String> = kustomization.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["apiVersion", "kind", "resources"],
        "keep the kustomization trivial: per-file validation must equal the build's"
    );

    let build = [("kustomize", vec!["build"]), ("kubectl", vec!["kustomize"])]
        .into_iter()
        .find_map(|(program, args)| {
            let out = Command::new(program)
                .args(&args)
                .arg(deploy_dir())
                .output()
                .ok()?;
            out.status.success().then_some((program, out.stdout))
        });
    let Some((program, built)) = build else {
        eprintln!("no kustomize here (kustomize, kubectl kustomize): validated each file only");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("built.yaml");
    std::fs::write(&output, built).unwrap();
    for version in VERSIONS {
        let (ok, text) = validate(&venv, version, std::slice::from_ref(&output));
        assert!(ok, "{program} output against {version}:\n{text}");
    }
    assert_eq!(
        sorted_by_kind_and_name(documents(&venv, &[output])),
        sorted_by_kind_and_name(documents(&venv, &files)),
        "{program}'s build differs from the files"
    );
}

/// Seconds of a duration written as ccx parses it ("50s", "50").
fn seconds(raw: &str) -> u64 {
    ccx::config::parse_duration(raw)
        .unwrap_or_else(|e| panic!("{raw}: {e}"))
        .as_secs()
}

#[test]
fn the_deployment_keeps_the_promises_of_the_docs() {
    let venv = venv();
    let docs = documents(&venv, &manifests());
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let deployment = find("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = |name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in the container's env"))
    };

    // A public bind, and the token that makes ccx accept it, from the Secret.
    assert_eq!(env("CCX_HOST")["value"], "0.0.0.0");
    let secret_ref = &env("CCX_TOKEN")["valueFrom"]["secretKeyRef"];
    let secret = find("Secret");
    assert_eq!(secret_ref["name"], secret["metadata"]["name"]);
    assert!(secret["stringData"]
        .get(secret_ref["key"].as_str().unwrap())
        .is_some());

    // The security context the Docker test applies with docker run flags.
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["runAsGroup"], 65532);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);

    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");

    // The drain arithmetic: preStop + CCX_DRAIN_PERIOD + the shutdown's kill
    // grace (at most 1 s) + closing sessions (0.7 s) fits the grace period,
    // with at least a second to spare.
    let pre_stop = container["lifecycle"]["preStop"]["exec"]["command"][2]
        .as_str()
        .and_then(|c| c.strip_prefix("sleep "))
        .map(seconds)
        .expect("preStop: sleep N");
    let drain = seconds(env("CCX_DRAIN_PERIOD")["value"].as_str().unwrap());
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let (kill_grace, close, spare) = (1, 1, 1);
    assert!(
        pre_stop + drain + kill_grace + close + spare <= grace,
        "preStop {pre_stop} s + drain {drain} s + 3 s > terminationGracePeriodSeconds {grace}"
    );

    // Sessions are WebSocket connections: no affinity to keep.
    let service = find("Service");
    assert_eq!(service["spec"]["sessionAffinity"], "None");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let policy = find("NetworkPolicy");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let from = &policy["spec"]["ingress"][0]["from"][0];
    assert!(from["namespaceSelector"].is_object() && from["podSelector"].is_object());
    let pdb = find("PodDisruptionBudget");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

/// `ccx stress` over a fleet, as over the pods behind a Service: ten real
/// servers give ten rows and a total that adds up.
#[test]
fn stress_across_ten_servers_prints_a_row_each_and_a_total() {
    let servers: Vec<common::TestServer> = (0..10).map(|_| common::TestServer::start()).collect();
    let mut args = vec![
        "stress",
        "--clients",
        "2",
        "--requests",
        "10",
        "--color",
        "never",
    ];
    for server in &servers {
        args.extend(["--url", &server.url]);
    }
    let out = common::ccx_command().args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    eprintln!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    for server in &servers {
        let row: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with(&server.url))
            .collect();
        assert_eq!(row.len(), 1, "{text}");
        assert!(row[0].contains("✓ 100.0 %"), "{text}");
    }
    let total = lines
        .iter()
        .find(|l| l.starts_with("total (10 targets, in turn)"))
        .expect("a total row");
    assert!(
        total.contains(" 200 ") && total.contains("✓ 100.0 %"),
        "{total}"
    );
}
