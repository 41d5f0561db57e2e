use super::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    let mut e: Env = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    e.entry("HOME".into()).or_insert("/home/u".into());
    e
}

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load(&Overrides::default(), &env(pairs))
}

#[test]
fn defaults_match_the_design() {
    let c = load(&[]).unwrap();
    assert_eq!(c.authority(), "127.0.0.1:8003");
    assert_eq!(c.max_output, 64 * MIB);
    assert_eq!(c.kill_grace, Duration::from_secs(5));
    assert_eq!(c.drain_period, Duration::ZERO);
    assert_eq!(c.state_dir, PathBuf::from("/home/u/.local/state/ccx"));
    assert_eq!(c.ws_max_size, 10 * 1024 * 1024);
}

#[test]
fn malformed_values_name_variable_value_and_expectation() {
    let e = load(&[("CCX_PORT", "abc")]).unwrap_err().to_string();
    assert!(
        e.contains("CCX_PORT") && e.contains("abc") && e.contains("port number"),
        "{e}"
    );
    let e = load(&[("WS_MAX_SIZE", "10MB")]).unwrap_err().to_string();
    assert!(
        e.contains("WS_MAX_SIZE") && e.contains("10MB") && e.contains("MiB"),
        "{e}"
    );
    let e = load(&[("CCX_KILL_GRACE", "soon")]).unwrap_err().to_string();
    assert!(e.contains("CCX_KILL_GRACE") && e.contains("ms"), "{e}");
    let e = load(&[("CCX_DRAIN_PERIOD", "1 min")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("CCX_DRAIN_PERIOD") && e.contains("1 min"), "{e}");
    let c = load(&[("CCX_DRAIN_PERIOD", "25s")]).unwrap();
    assert_eq!(c.drain_period, Duration::from_secs(25));
    let c = load(&[("CCX_DEFAULT_TIMEOUT", "10m"), ("CCX_DRAIN_PERIOD", "1m")]).unwrap();
    assert_eq!(c.default_timeout, Some(Duration::from_secs(600)));
    assert_eq!(c.drain_period, Duration::from_secs(60));
}

#[test]
fn flags_win_over_environment() {
    let o = Overrides {
        port: Some(9),
        ..Default::default()
    };
    let c = Config::load(&o, &env(&[("CCX_PORT", "abc")])).unwrap();
    assert_eq!(c.port, 9);
}

#[test]
fn sizes_and_durations_accept_documented_forms() {
    assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
    assert_eq!(parse_size("10MiB"), Ok(10 * MIB));
    assert_eq!(parse_size("123"), Ok(123));
    assert!(parse_size("10MB").is_err());
    assert!(parse_size("-1").is_err());
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
    assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    assert!(parse_duration("-3").is_err());
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
    for bad in ["", "m", "5x", "5 m", "1h-3m", "inf", "NaN", "5min", "1e12"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
    }
    assert_eq!(parse_optional_duration("none"), Ok(None));
}

#[test]
fn public_bind_without_token_is_refused() {
    let e = load(&[("CCX_HOST", "0.0.0.0")]).unwrap_err();
    assert!(matches!(e, ConfigError::InsecureBind { .. }));
    assert!(load(&[("CCX_HOST", "0.0.0.0"), ("CCX_TOKEN", "s3cret")]).is_ok());
    let o = Overrides {
        host: Some("0.0.0.0".into()),
        insecure_no_auth: true,
        ..Default::default()
    };
    assert!(Config::load(&o, &env(&[])).is_ok());
}

#[test]
fn typos_get_the_nearest_known_name() {
    let u = unknown_vars(&env(&[("CCX_PROT", "9000"), ("CCX_WHATEVER_ELSE", "1")]));
    assert_eq!(u[0], ("CCX_PROT".to_string(), Some("CCX_PORT")));
    assert_eq!(u[1], ("CCX_WHATEVER_ELSE".to_string(), None));
}

#[test]
fn cc_executor_names_are_read_when_the_ccx_name_is_unset() {
    let c = load(&[
        ("DEFAULT_PORT", "9100"),
        ("ALLOWED_COMMANDS", "echo, ls"),
        ("MAX_SESSIONS", "7"),
        ("DEFAULT_EXECUTION_TIMEOUT", "600"),
        ("WEBSOCKET_HEARTBEAT_INTERVAL", "5"),
        ("CC_EXECUTOR_SHELL", "default"),
    ])
    .unwrap();
    assert_eq!(c.port, 9100);
    assert_eq!(c.allowed_commands, Some(vec!["echo".into(), "ls".into()]));
    assert_eq!(c.max_sessions, 7);
    assert_eq!(c.default_timeout, Some(Duration::from_secs(600)));
    assert_eq!(c.heartbeat_interval, Some(Duration::from_secs(5)));
    assert_eq!(c.shell, PathBuf::from("/bin/sh"));
    assert_eq!(c.source_of("port"), Source::Env("DEFAULT_PORT"));
    assert!(c.source_of("port").is_alias());
    assert_eq!(c.source_of("max_output"), Source::Default);
    assert_eq!(
        c.source_of("allowed_commands").to_string(),
        "ALLOWED_COMMANDS (cc_executor's name for CCX_ALLOWED_COMMANDS)"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn the_ccx_name_wins_and_a_different_alias_is_a_warning() {
    let c = load(&[("CCX_PORT", "9000"), ("DEFAULT_PORT", "9100")]).unwrap();
    assert_eq!(c.port, 9000);
    assert_eq!(c.source_of("port"), Source::Env("CCX_PORT"));
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].message.contains("CCX_PORT wins"),
        "{:?}",
        c.warnings
    );
    let c = load(&[("CCX_PORT", "9000"), ("DEFAULT_PORT", "9000")]).unwrap();
    assert!(c.warnings.is_empty());
    let c = Config::load(
        &Overrides {
            port: Some(1),
            ..Default::default()
        },
        &env(&[("DEFAULT_PORT", "9100")]),
    )
    .unwrap();
    assert_eq!((c.port, c.source_of("port")), (1, Source::Flag("--port")));
}

#[test]
fn a_malformed_alias_names_the_alias() {
    let e = load(&[("DEFAULT_PORT", "http")]).unwrap_err().to_string();
    assert!(e.contains("DEFAULT_PORT") && e.contains("http"), "{e}");
    let e = load(&[("MAX_SESSIONS", "0")]).unwrap_err().to_string();
    assert!(e.contains("MAX_SESSIONS"), "{e}");
}

#[test]
fn unsupported_cc_executor_variables_are_warnings_that_name_them() {
    let c = load(&[("SESSION_TIMEOUT", "3600"), ("LOG_LEVEL", "DEBUG")]).unwrap();
    let named: Vec<&str> = c.warnings.iter().map(|w| w.variable.as_str()).collect();
    assert_eq!(named, ["SESSION_TIMEOUT", "LOG_LEVEL"]);
    assert!(
        c.warnings[1].message.contains("RUST_LOG"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn cc_executor_shell_values_resolve_like_cc_executor() {
    let c = load(&[("CC_EXECUTOR_SHELL", "fish")]).unwrap();
    assert_eq!(c.shell, PathBuf::from("/bin/sh"));
    assert_eq!(c.warnings[0].variable, "CC_EXECUTOR_SHELL");
    let c = load(&[("CC_EXECUTOR_SHELL", "bash")]).unwrap();
    let bash = ["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file());
    match bash {
        Some(path) => assert_eq!(c.shell, PathBuf::from(path)),
        None => assert_eq!(c.warnings.len(), 1),
    }
    let c = load(&[("CC_EXECUTOR_SHELL", "bash"), ("CCX_SHELL", "/bin/dash")]).unwrap();
    assert_eq!(c.shell, PathBuf::from("/bin/dash"));
}

#[test]
fn an_empty_allowed_commands_alias_allows_everything_loudly() {
    let c = load(&[("ALLOWED_COMMANDS", "")]).unwrap();
    assert_eq!(c.allowed_commands, None);
    assert_eq!(c.warnings[0].variable, "ALLOWED_COMMANDS");
    assert!(load(&[("CCX_ALLOWED_COMMANDS", "")]).is_err());
}

#[test]
fn a_token_file_is_read_when_ccx_token_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    let path = file.to_str().unwrap();
    let c = load(&[("CCX_TOKEN_FILE", path)]).unwrap();
    assert_eq!(c.token.as_deref(), Some("s3cret"));
    assert_eq!(c.source_of("token").to_string(), "CCX_TOKEN_FILE");
    let c = load(&[("CCX_TOKEN_FILE", path), ("CCX_TOKEN", "env")]).unwrap();
    assert_eq!(c.token.as_deref(), Some("env"));
    let missing = dir.path().join("none");
    let e = load(&[("CCX_TOKEN_FILE", missing.to_str().unwrap())]).unwrap_err();
    assert!(e.to_string().contains("CCX_TOKEN_FILE"), "{e}");
    std::fs::write(&file, "two words").unwrap();
    assert!(load(&[("CCX_TOKEN_FILE", path)]).is_err());
}

#[test]
fn a_launchers_overrides_survive_their_encoding_field_by_field() {
    let all = Overrides {
        host: Some("::1".into()),
        port: Some(0),
        state_dir: Some(PathBuf::from("/tmp/a dir/with \"quotes\"")),
        insecure_no_auth: true,
    };
    for o in [all, Overrides::default()] {
        assert_eq!(Overrides::decode(&o.encode().unwrap()).unwrap(), o);
    }
    assert_eq!(Overrides::default().encode().unwrap(), "{}");
    assert!(Overrides::default().to_args().unwrap().is_empty());
    let e = Overrides::decode(r#"{"prot":1}"#).unwrap_err();
    assert!(e.contains("prot"), "{e}");
}

#[test]
fn a_path_that_was_not_utf8_is_refused_by_its_variables_name() {
    let bad = "/tmp/st\u{FFFD}te";
    for var in [
        "CCX_STATE_DIR",
        "XDG_STATE_HOME",
        "HOME",
        "CCX_SHELL",
        "CCX_TOKEN_FILE",
    ] {
        let mut env: Vec<(&str, &str)> = vec![("HOME", "/home/user"), (var, bad)];
        if var == "HOME" {
            env.remove(0);
        }
        let e = load(&env).unwrap_err();
        assert_eq!(e.variable(), Some(var), "{e}");
        assert!(e.to_string().contains("UTF-8"), "{e}");
    }
}
