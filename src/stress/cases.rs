//! Loads a stress cases file in cc_executor's format into [`Case`]s.
//!
//! Accepted shapes (cc_executor's `tests/stress/configs/*.json`):
//! `{"timeout"?, "tests": [TEST…]}` and
//! `{"timeout"?, "categories": {NAME: {"timeout"?, "tests": [TEST…]}}}`, where
//! TEST is `{"id", "command", "name"?, "expected_patterns"?, "timeout"?,
//! "expect_non_zero_exit"?}`. Every other member (`description`,
//! `task_list_id`, …) is ignored. The older task-list shape (`tasks` with a
//! `command_template`) is refused with an explanation: it holds prompts for
//! `claude`, not commands.
//!
//! Knows files and JSON, nothing of servers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

/// One test of a cases file.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub id: String,
    pub name: String,
    /// `category/` prefix for files with categories, empty otherwise.
    pub category: Option<String>,
    pub command: String,
    /// Each must appear in stdout+stderr (case-insensitive substring, as
    /// cc_executor's runners check).
    pub expected_patterns: Vec<String>,
    /// The test's own timeout, else its category's, else the file's.
    pub timeout: Option<Duration>,
    /// The command is expected to fail (exit status not 0).
    pub expect_non_zero_exit: bool,
}

/// Why a cases file cannot be used.
#[derive(Debug, Error)]
pub enum CasesError {
    #[error("cannot read the cases file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: malformed cases file: {message}", .path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {message}", .path.display())]
    Shape { path: PathBuf, message: String },
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    tests: Option<Vec<RawTest>>,
    #[serde(default)]
    categories: Option<BTreeMap<String, RawCategory>>,
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    tasks: Option<Value>,
}

#[derive(Deserialize)]
struct RawCategory {
    #[serde(default)]
    tests: Option<Vec<RawTest>>,
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    tasks: Option<Value>,
}

#[derive(Deserialize)]
struct RawTest {
    id: String,
    #[serde(default)]
    name: Option<String>,
    command: String,
    #[serde(default)]
    expected_patterns: Vec<String>,
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    expect_non_zero_exit: bool,
}

const TASKS_SHAPE: &str =
    "uses \"tasks\" (cc_executor's task-list shape, with prompts and a command_template), \
     which ccx does not run: write {\"tests\": [{\"id\", \"command\", \"expected_patterns\"}]}";

/// Reads and validates a cases file.
pub fn load(path: &Path) -> Result<Vec<Case>, CasesError> {
    let text = std::fs::read_to_string(path).map_err(|source| CasesError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses the text of a cases file (`path` only names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<Vec<Case>, CasesError> {
    let shape = |message: String| CasesError::Shape {
        path: path.to_path_buf(),
        message,
    };
    let file: RawFile = serde_json::from_str(text).map_err(|e| CasesError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let file_timeout = seconds(file.timeout, "the file's \"timeout\"").map_err(shape)?;
    let mut cases = Vec::new();
    match (file.tests, file.categories) {
        (Some(tests), None) => {
            for test in tests {
                cases.push(case(test, None, file_timeout).map_err(shape)?);
            }
        }
        (None, Some(categories)) => {
            for (name, category) in categories {
                let Some(tests) = category.tests else {
                    return Err(shape(if category.tasks.is_some() {
                        format!("category {name:?} {TASKS_SHAPE}")
                    } else {
                        format!("category {name:?} has no \"tests\" list")
                    }));
                };
                let timeout = seconds(category.timeout, &format!("category {name:?}'s \"timeout\""))
                    .map_err(shape)?
                    .or(file_timeout);
                for test in tests {
                    cases.push(case(test, Some(&name), timeout).map_err(shape)?);
                }
            }
        }
        (Some(_), Some(_)) => {
            return Err(shape(
                "has both \"tests\" and \"categories\": use one of them".into(),
            ))
        }
        (None, None) if file.tasks.is_some() => return Err(shape(format!("the file {TASKS_SHAPE}"))),
        (None, None) => {
            return Err(shape(
                "has neither \"tests\" nor \"categories\": expected {\"tests\": [{\"id\", \"command\", \"expected_patterns\"}]}".into(),
            ))
        }
    }
    if cases.is_empty() {
        return Err(shape("holds no test".into()));
    }
    Ok(cases)
}

fn case(
    test: RawTest,
    category: Option<&str>,
    inherited: Option<Duration>,
) -> Result<Case, String> {
    if test.command.trim().is_empty() {
        return Err(format!("test {:?} has an empty \"command\"", test.id));
    }
    let timeout =
        seconds(test.timeout, &format!("test {:?}'s \"timeout\"", test.id))?.or(inherited);
    Ok(Case {
        name: test.name.unwrap_or_else(|| test.id.clone()),
        id: test.id,
        category: category.map(String::from),
        command: test.command,
        expected_patterns: test.expected_patterns,
        timeout,
        expect_non_zero_exit: test.expect_non_zero_exit,
    })
}

fn seconds(value: Option<f64>, what: &str) -> Result<Option<Duration>, String> {
    match value {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s <= 1e6 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(format!("{what} is {s}: expected seconds greater than zero")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<Case>, CasesError> {
        parse(Path::new("cases.json"), text)
    }

    #[test]
    fn reads_the_flat_shape_with_file_timeout_and_ignores_extra_fields() {
        let cases = p(r#"{"task_list_id":"X","timeout":120,"tests":[
            {"id":"echo_test","name":"Echo","command":"echo hi","expected_patterns":["hi"],"description":"d"},
            {"id":"t2","command":"date","timeout":5}]}"#)
        .unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].name, "Echo");
        assert_eq!(cases[0].timeout, Some(Duration::from_secs(120)));
        assert_eq!(cases[1].name, "t2");
        assert_eq!(cases[1].timeout, Some(Duration::from_secs(5)));
        assert!(cases[1].expected_patterns.is_empty());
    }

    #[test]
    fn reads_categories_with_their_timeouts() {
        let cases = p(
            r#"{"categories":{"simple":{"timeout":7,"tests":[{"id":"a","command":"true"}]},
            "edge":{"tests":[{"id":"b","command":"false","expect_non_zero_exit":true}]}}}"#,
        )
        .unwrap();
        let b = cases.iter().find(|c| c.id == "b").unwrap();
        assert!(b.expect_non_zero_exit);
        assert_eq!(b.category.as_deref(), Some("edge"));
        let a = cases.iter().find(|c| c.id == "a").unwrap();
        assert_eq!(a.timeout, Some(Duration::from_secs(7)));
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = p("{\n  \"tests\": [\n    {\"id\": \"a\",,}\n]}").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("cases.json:3:"), "{text}");
    }

    #[test]
    fn refuses_the_task_list_shape_and_missing_commands() {
        let err = p(r#"{"categories":{"simple":{"tasks":[]}}}"#).unwrap_err();
        assert!(err.to_string().contains("task-list"), "{err}");
        let err = p(r#"{"tests":[{"id":"a"}]}"#).unwrap_err();
        assert!(err.to_string().contains("command"), "{err}");
        assert!(p(r#"{"tests":[]}"#).is_err());
    }
}
