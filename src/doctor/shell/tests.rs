//! Unit tests of the shell line analysis.

use super::*;

fn names(line: &str) -> Vec<String> {
    program_names(line).unwrap()
}

#[test]
fn builtins_and_assignments_are_not_programs() {
    assert_eq!(
        names("cd /srv/app && python -m uvicorn main:app"),
        ["python"]
    );
    assert_eq!(names("FOO=1 BAR='a b' exec python3 -m x"), ["python3"]);
    assert_eq!(names("export A=1; . ./env.sh; exec ./run.sh"), ["./run.sh"]);
    assert_eq!(names("true"), Vec::<String>::new());
}

#[test]
fn compound_commands_pipes_and_subshells_are_followed() {
    assert_eq!(
        names("(cd sub && make) || { echo no; exit 1; }; grep x f | sort -u"),
        ["make", "grep", "sort"]
    );
    assert_eq!(
        names("if test -x ./a; then ./a; else b --flag; fi"),
        ["./a", "b"]
    );
}

#[test]
fn wrappers_lead_to_the_program_they_start() {
    let a = analyze("env -i PATH=/opt/bin nohup timeout -s KILL 10 uvicorn app").unwrap();
    let found: Vec<(&str, Option<&str>)> = a
        .programs
        .iter()
        .map(|p| (p.name.as_str(), p.via.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            ("env", None),
            ("nohup", Some("env")),
            ("timeout", Some("nohup")),
            ("uvicorn", Some("timeout"))
        ]
    );
    assert_eq!(a.programs[3].path.as_deref(), Some("/opt/bin"));
    assert_eq!(names("sh -c 'cd /x && exec python3 -V'"), ["sh", "python3"]);
}

#[test]
fn cd_and_path_changes_are_tracked() {
    let a = analyze("cd /srv/app && . .venv/bin/activate && PYTHONPATH=. python -m x").unwrap();
    assert_eq!(
        a.programs.last().map(|p| p.env.clone()),
        Some(vec![("PYTHONPATH".to_string(), ".".to_string())])
    );
    let p = &a.programs[0];
    assert_eq!(p.name, "python");
    assert_eq!(p.cwd.as_deref(), Some("/srv/app"));
    assert_eq!(p.path.as_deref(), Some("/srv/app/.venv/bin:$PATH"));
    assert_eq!(a.directories, [(None, "/srv/app".to_string())]);
    let a = analyze("export PATH=\"/opt/x/bin:$PATH\"; tool").unwrap();
    assert_eq!(a.programs[0].path.as_deref(), Some("/opt/x/bin:$PATH"));
}

#[test]
fn run_time_expansions_are_notes_not_guesses() {
    let a = analyze("$PYTHON -m app; eval \"$CMD\"").unwrap();
    assert!(a.programs.is_empty(), "{a:?}");
    assert_eq!(a.notes.len(), 2, "{a:?}");
    assert!(analyze("echo 'unterminated").is_err());
}
