//! What a command sees on each side of `--compare`, compared: two probe
//! reports ([`Environment`]) and, when both sides are ccx, their settings,
//! into [`Difference`]s ordered most likely culprits first (a module that
//! imports on one side only, a missing program or interpreter, the Python
//! version, distributions, then where things resolve, shell, PATH,
//! sys.path, ccx settings, limits, identity, variable names, platform).
//! Pure data in, data out.

use std::collections::BTreeSet;

use crate::doctor::differences::{
    is_noise, list, push_if_different, settings_differences, Difference,
};
use crate::doctor::fingerprint::{Environment, Import, Python};
use crate::protocol::ServerInfo;

/// Most distributions listed one by one; the rest are summed up in one
/// difference.
const MAX_DISTRIBUTIONS: usize = 15;

fn shown(p: &Option<String>) -> String {
    p.clone().unwrap_or_else(|| "not found".into())
}

/// The interpreter a side's Python facts come from: `python3`, or
/// `python` where there is no `python3`.
fn main_python(e: &Environment) -> (&'static str, &Python) {
    if e.python3.path.is_none() && e.python.path.is_some() {
        ("python", &e.python)
    } else {
        ("python3", &e.python3)
    }
}

fn version(p: &Python) -> String {
    match (&p.version, &p.error) {
        (Some(v), _) => v.clone(),
        (None, Some(e)) => e.clone(),
        (None, None) => "not found".into(),
    }
}

/// Every difference between two sides' environments (and, when both are
/// ccx, their `server.info` settings) that could matter, most likely
/// culprits first: a module that imports on one side only, a program or an
/// interpreter missing, the Python version, installed distributions, where
/// things resolve, shell, PATH, sys.path, ccx settings, limits, identity,
/// variable names, platform.
pub fn differences(
    a: &Environment,
    b: &Environment,
    settings: Option<(&ServerInfo, &ServerInfo)>,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |field: &str, va: String, vb: String, why: &str| {
        push_if_different(&mut out, field, va, vb, why)
    };
    let ((name_a, pa), (name_b, pb)) = (main_python(a), main_python(b));
    let both_run = pa.version.is_some() && pb.version.is_some();
    let with = if name_a == name_b {
        name_a.to_string()
    } else {
        format!("{name_a} on A, {name_b} on B")
    };
    let modules: BTreeSet<&String> = pa.modules.keys().chain(pb.modules.keys()).collect();
    let import = |p: &Python, name: &String| {
        p.modules
            .get(name)
            .map_or("not checked".to_string(), Import::to_string)
    };
    if both_run {
        for name in &modules {
            let (ia, ib) = (pa.modules.get(*name), pb.modules.get(*name));
            if matches!(ia, Some(Import::From(_))) != matches!(ib, Some(Import::From(_))) {
                push(
                    &format!("modules.{name}"),
                    import(pa, name),
                    import(pb, name),
                    &format!("the module imports ({with}) on one side only: a server that imports it fails to start on the other (a src-layout package not installed, a PYTHONPATH or cwd that differs, a missing dependency)"),
                );
            }
        }
    }
    let programs: BTreeSet<&String> = a.binaries.keys().chain(b.binaries.keys()).collect();
    for name in &programs {
        let (fa, fb) = (
            a.binaries.get(*name).cloned().flatten(),
            b.binaries.get(*name).cloned().flatten(),
        );
        if fa.is_none() != fb.is_none() {
            push(
                &format!("binaries.{name}"),
                shown(&fa),
                shown(&fb),
                "a required program is missing on one side: commands that use it fail there",
            );
        }
    }
    // `python` beside `python3` in the same directory with the same version
    // (a venv, most distributions) would only repeat python3's differences.
    let twin = |e: &Environment| {
        let dir = |p: &Python| {
            p.path
                .as_deref()
                .map(|p| p.rsplit_once('/').map_or("", |(d, _)| d).to_string())
        };
        e.python3.path.is_some()
            && dir(&e.python) == dir(&e.python3)
            && e.python.version == e.python3.version
    };
    let pythons: &[(&str, &Python, &Python)] = if twin(a) && twin(b) {
        &[("python3", &a.python3, &b.python3)]
    } else {
        &[
            ("python3", &a.python3, &b.python3),
            ("python", &a.python, &b.python),
        ]
    };
    for &(field, ea, eb) in pythons {
        if ea.path.is_none() != eb.path.is_none() {
            push(
                field,
                shown(&ea.path),
                shown(&eb.path),
                "the interpreter is not on PATH on one side: a server or command started with it fails there",
            );
        } else if ea.path.is_some() {
            push(
                &format!("{field}.version"),
                version(ea),
                version(eb),
                "another Python version: syntax, the standard library and compiled packages differ",
            );
        }
    }
    if both_run {
        distribution_differences(pa, pb, &with, &mut push);
    }
    for name in programs
        .iter()
        .filter(|n| a.binaries.contains_key(**n) && b.binaries.contains_key(**n))
    {
        let (fa, fb) = (a.binaries[*name].clone(), b.binaries[*name].clone());
        if fa.is_some() && fb.is_some() {
            push(
                &format!("binaries.{name}"),
                shown(&fa),
                shown(&fb),
                "the same name resolves to different programs (another version, or a venv vs the system)",
            );
        }
    }
    for &(field, ea, eb) in pythons {
        if ea.path.is_some() && eb.path.is_some() {
            push(
                &format!("{field}.path"),
                shown(&ea.path),
                shown(&eb.path),
                "the interpreter on PATH is another one (a venv on one side, the system's on the other)",
            );
        }
    }
    if both_run {
        for name in modules.iter().filter(|n| {
            matches!(pa.modules.get(**n), Some(Import::From(_)))
                && matches!(pb.modules.get(**n), Some(Import::From(_)))
        }) {
            push(
                &format!("modules.{name}"),
                import(pa, name),
                import(pb, name),
                "the module imports from different places: another copy (installed vs a source tree) may be another version",
            );
        }
    }
    let shell = |e: &Environment| format!("{} → {}", e.shell, shown(&e.shell_resolved));
    push("shell", shell(a), shell(b),
        "commands run under a different shell: syntax (bash vs dash), builtins and startup files differ");
    push(
        "path",
        a.path.join(":"),
        b.path.join(":"),
        "programs are looked up in different places: one side may find another version, or none",
    );
    if both_run {
        push(&format!("{name_a}.sys_path"), pa.sys_path.join(":"), pb.sys_path.join(":"),
            "Python looks for modules in different places (PYTHONPATH, the cwd, a venv): imports may find other code, or none");
    }
    if let Some((ia, ib)) = settings {
        for d in settings_differences(ia, ib) {
            push(&d.field, d.a, d.b, &d.why);
        }
    }
    push(
        "rlimits.open_files",
        a.open_files.clone(),
        b.open_files.clone(),
        "fewer file descriptors: busy servers fail with 'too many open files'",
    );
    push(
        "uid",
        a.uid.clone(),
        b.uid.clone(),
        "a different user: file permissions, HOME and credentials (e.g. claude's login) differ",
    );
    push(
        "cwd",
        a.cwd.clone(),
        b.cwd.clone(),
        "relative paths in commands point elsewhere",
    );
    let only = |x: &Environment, y: &Environment| -> Vec<String> {
        x.env_names
            .iter()
            .filter(|n| !is_noise(n) && !y.env_names.contains(n))
            .cloned()
            .collect()
    };
    let (only_a, only_b) = (only(a, b), only(b, a));
    if !only_a.is_empty() || !only_b.is_empty() {
        push(
            "env_names",
            format!("only here: {}", list(&only_a)),
            format!("only here: {}", list(&only_b)),
            "variables set on one side only (API keys, VIRTUAL_ENV, PYTHONPATH, proxies …) change what commands do",
        );
    }
    push(
        "arch",
        a.arch.clone(),
        b.arch.clone(),
        "another CPU architecture: binaries built for one do not run on the other",
    );
    push("os", a.os.clone(), b.os.clone(), "another operating system");
    let container = |e: &Environment| match e.container.as_slice() {
        [] => "no".to_string(),
        signs => format!("yes ({})", signs.join(", ")),
    };
    push(
        "in_container",
        container(a),
        container(b),
        "one side runs in a container: its filesystem, users and PATH are the image's",
    );
    out
}

/// Distributions installed on one side only, or in other versions: one
/// difference each (those missing on one side first), at most
/// [`MAX_DISTRIBUTIONS`], then one that names the rest.
fn distribution_differences(
    pa: &Python,
    pb: &Python,
    with: &str,
    push: &mut impl FnMut(&str, String, String, &str),
) {
    let names: BTreeSet<&String> = pa
        .distributions
        .keys()
        .chain(pb.distributions.keys())
        .collect();
    let (mut missing, mut other): (Vec<&String>, Vec<&String>) = names
        .into_iter()
        .filter(|n| pa.distributions.get(*n) != pb.distributions.get(*n))
        .partition(|n| !pa.distributions.contains_key(*n) || !pb.distributions.contains_key(*n));
    missing.append(&mut other);
    let installed = |p: &Python, n: &String| {
        p.distributions
            .get(n)
            .cloned()
            .unwrap_or_else(|| "not installed".into())
    };
    for name in missing.iter().take(MAX_DISTRIBUTIONS) {
        push(
            &format!("distributions.{name}"),
            installed(pa, name),
            installed(pb, name),
            &format!("installed ({with}) on one side only, or in another version: code that imports it fails or behaves differently"),
        );
    }
    if missing.len() > MAX_DISTRIBUTIONS {
        let rest: Vec<String> = missing[MAX_DISTRIBUTIONS..]
            .iter()
            .map(|n| format!("{n} {}", installed(pa, n)))
            .collect();
        let rest_b: Vec<String> = missing[MAX_DISTRIBUTIONS..]
            .iter()
            .map(|n| format!("{n} {}", installed(pb, n)))
            .collect();
        push(
            "distributions.more",
            rest.join(", "),
            rest_b.join(", "),
            "more distributions differ (one venv against another, or none)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        let python = Python {
            path: Some("/usr/bin/python3".into()),
            version: Some("3.11.2".into()),
            executable: Some("/usr/bin/python3".into()),
            sys_path: vec!["".into(), "/usr/lib/python311.zip".into()],
            modules: [("app".to_string(), Import::From("/srv/src/app".into()))].into(),
            distributions: [("fastapi".to_string(), "0.115.0".to_string())].into(),
            error: None,
        };
        Environment {
            os: "Linux".into(),
            arch: "x86_64".into(),
            uid: "1000".into(),
            cwd: "/srv".into(),
            shell: "/bin/sh".into(),
            shell_resolved: Some("/usr/bin/dash".into()),
            path: vec!["/usr/bin".into(), "/bin".into()],
            env_names: vec!["HOME".into(), "PATH".into()],
            open_files: "1024".into(),
            binaries: [("sh".to_string(), Some("/usr/bin/sh".to_string()))].into(),
            python3: python,
            ..Environment::default()
        }
    }

    #[test]
    fn identical_environments_have_no_differences_whatever_pid_and_noise() {
        let a = env();
        let mut b = a.clone();
        b.env_names
            .extend(["PWD".to_string(), "CCX_PORT".to_string()]);
        assert_eq!(differences(&a, &b, None), vec![]);
    }

    #[test]
    fn a_module_importing_on_one_side_only_comes_first_then_versions_and_distributions() {
        let b = env();
        let mut a = b.clone();
        a.python3.modules.insert(
            "app".into(),
            Import::Fails("ModuleNotFoundError: No module named 'app'".into()),
        );
        a.python3.version = Some("3.12.3".into());
        a.python3.distributions.clear();
        a.binaries.insert("sh".into(), None);
        a.shell = "/bin/bash".into();
        a.path = vec!["/opt/bin".into()];
        let d = differences(&a, &b, None);
        let fields: Vec<&str> = d.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "modules.app",
                "binaries.sh",
                "python3.version",
                "distributions.fastapi",
                "shell",
                "path"
            ]
        );
        assert_eq!(d[0].a, "ModuleNotFoundError: No module named 'app'");
        assert_eq!(d[0].b, "imports from /srv/src/app");
        assert_eq!(
            (d[3].a.as_str(), d[3].b.as_str()),
            ("not installed", "0.115.0")
        );
    }

    #[test]
    fn a_missing_python_is_one_difference_not_a_cascade() {
        let b = env();
        let mut a = b.clone();
        a.python3 = Python::default();
        let fields: Vec<String> = differences(&a, &b, None)
            .into_iter()
            .map(|d| d.field)
            .collect();
        assert_eq!(fields, ["python3"]);
    }

    #[test]
    fn many_distributions_are_summed_up_after_the_first_ones() {
        let a = env();
        let mut b = a.clone();
        for n in 0..20 {
            b.python3
                .distributions
                .insert(format!("pkg{n:02}"), "1.0".into());
        }
        let d = differences(&a, &b, None);
        assert_eq!(d.len(), MAX_DISTRIBUTIONS + 1);
        assert_eq!(d[MAX_DISTRIBUTIONS].field, "distributions.more");
        assert!(
            d[MAX_DISTRIBUTIONS].b.starts_with("pkg15 1.0, "),
            "{:?}",
            d[MAX_DISTRIBUTIONS]
        );
    }
}
