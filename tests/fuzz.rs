//! Property-based fuzzing of the message handler (issue 12; cargo-fuzz needs
//! nightly, so proptest): random and mutated JSON-RPC messages — valid
//! shapes with wrong types, huge, deep and odd ids, unicode, numbers beyond
//! 2^53 — are sent to a live server over one WebSocket. For every message:
//!
//! - every frame the server sends is valid JSON-RPC 2.0;
//! - at most one response answers it, and exactly one with the id as sent
//!   (byte-identical for integers) when it has a readable id;
//! - the connection stays open;
//! - and every few messages `/health` still answers.
//!
//! Bounded in cases and time so that it runs in CI (FUZZ_CASES overrides the
//! number of cases). The server runs with an allowlist of `echo`, so no
//! random command can touch the host.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// The whole run must stay well inside CI's patience.
const TIME_BUDGET: Duration = Duration::from_secs(50);

/// A JSON document built as text, so that numbers keep every digit.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    /// Digits as written: may be far beyond 2^64.
    Number(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn render(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.render(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    v.render(out);
                }
                out.push('}');
            }
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        self.render(&mut out);
        out
    }
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?[1-9][0-9]{15,45}",
        "-?(0|[1-9][0-9]{0,20})\\.[0-9]{1,40}",
        "-?[1-9][0-9]{0,3}[eE][+-]?[0-9]{1,3}",
        Just("-0".to_string()),
        Just("9007199254740993".to_string()),
        Just("100000000000000000000000000000".to_string()),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 _.-]{0,20}",
        ".{0,30}",
        "[\\u{0}-\\u{1f}\"\\\\\\u{2028}\\u{fffd}\\u{1f4a5}]{0,10}",
        (1usize..70_000).prop_map(|n| "x".repeat(n)),
    ]
}

fn leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Number),
        text().prop_map(Json::Str),
    ]
}

fn json() -> impl Strategy<Value = Json> {
    leaf().prop_recursive(4, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec(("[a-z]{1,8}", inner), 0..6).prop_map(Json::Object),
        ]
    })
}

/// Deep nesting, on both sides of serde_json's recursion limit (128).
fn deep() -> impl Strategy<Value = Json> {
    (1usize..300).prop_map(|depth| {
        let mut v = Json::Null;
        for _ in 0..depth {
            v = Json::Array(vec![v]);
        }
        v
    })
}

fn id() -> impl Strategy<Value = Option<Json>> {
    prop_oneof![
        3 => number().prop_map(|n| Some(Json::Number(n))),
        3 => text().prop_map(|s| Some(Json::Str(s))),
        1 => Just(None),
        1 => Just(Some(Json::Null)),
        1 => json().prop_map(Some),
    ]
}

fn method() -> impl Strategy<Value = Json> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "execute", "control", "server.info", "pong", "hook_status", "EXECUTE", "", "rpc.x",
        ])
        .prop_map(|m| Json::Str(m.into())),
        1 => text().prop_map(Json::Str),
        1 => json(),
    ]
}

/// Params shaped like the real ones, with wrong types mixed in.
fn params() -> impl Strategy<Value = Option<Json>> {
    let command = prop_oneof![
        3 => "[a-z0-9 ]{0,20}".prop_map(|s| Json::Str(format!("echo {s}"))),
        1 => text().prop_map(Json::Str),
        1 => json(),
    ];
    let execute = (
        command,
        prop::option::of(json()),
        prop::option::of(json()),
        prop::option::of(json()),
    )
        .prop_map(|(command, timeout, cwd, env)| {
            let mut members = vec![("command".to_string(), command)];
            for (name, value) in [("timeout", timeout), ("cwd", cwd), ("env", env)] {
                if let Some(v) = value {
                    members.push((name.into(), v));
                }
            }
            Json::Object(members)
        });
    let control = prop_oneof![
        prop::sample::select(vec!["PAUSE", "RESUME", "CANCEL", "cancel", "KILL"])
            .prop_map(|t| Json::Str(t.into())),
        json(),
    ]
    .prop_map(|t| Json::Object(vec![("type".into(), t)]));
    let info = prop::collection::vec(prop_oneof![text().prop_map(Json::Str), json()], 0..20)
        .prop_map(|names| Json::Object(vec![("require".into(), Json::Array(names))]));
    prop_oneof![
        1 => Just(None),
        3 => execute.prop_map(Some),
        2 => control.prop_map(Some),
        1 => info.prop_map(Some),
        1 => json().prop_map(Some),
        1 => deep().prop_map(Some),
    ]
}

/// A message: a request-shaped object (sometimes with a wrong `jsonrpc`),
/// rendered to text, then possibly mutated character by character.
fn envelope() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            8 => Just(Some(Json::Str("2.0".into()))),
            1 => Just(None),
            1 => leaf().prop_map(Some),
        ],
        id(),
        method(),
        params(),
    )
        .prop_map(|(jsonrpc, id, method, params)| {
            let mut members = Vec::new();
            for (name, value) in [
                ("jsonrpc", jsonrpc),
                ("id", id),
                ("method", Some(method)),
                ("params", params),
            ] {
                if let Some(v) = value {
                    members.push((name.to_string(), v));
                }
            }
            Json::Object(members).text()
        })
}

fn message() -> impl Strategy<Value = String> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<char>()), 0..3);
    prop_oneof![
        3 => envelope(),
        1 => (envelope(), edits).prop_map(|(text, edits)| mutate(text, &edits)),
        1 => json().prop_map(|j| j.text()),
    ]
}

/// Deletes, inserts, replaces or truncates at the given places; the result
/// stays valid UTF-8 (it is sent as a text frame).
fn mutate(text: String, edits: &[(prop::sample::Index, u8, char)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for (at, kind, c) in edits {
        if chars.is_empty() {
            break;
        }
        let i = at.index(chars.len());
        match kind {
            0 => {
                chars.remove(i);
            }
            1 => chars.insert(i, *c),
            2 => chars[i] = *c,
            _ => chars.truncate(i),
        }
    }
    chars.into_iter().collect()
}

/// What must answer a message.
enum Answer {
    /// Exactly one response with this raw id.
    Id(String),
    /// No response, or one error with id null (no id, or one that cannot be read).
    NullOrNothing,
    /// Exactly one response, whatever its id (duplicate `id` members).
    One,
}

fn expected_answer(text: &str) -> Answer {
    #[derive(Deserialize)]
    struct WithId<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    let value = match serde_json::from_str::<Value>(text) {
        Ok(value) => value,
        Err(e) if e.to_string().starts_with("number out of range") => {
            return answer_with_numbers_out_of_range(text)
        }
        Err(_) => return Answer::NullOrNothing,
    };
    let Some(id) = value.as_object().and_then(|o| o.get("id")) else {
        return Answer::NullOrNothing;
    };
    if !(id.is_string() || id.is_number()) {
        return Answer::NullOrNothing;
    }
    match serde_json::from_str::<WithId>(text) {
        Ok(WithId { id: Some(raw) }) => Answer::Id(raw.get().to_string()),
        _ => Answer::One,
    }
}

/// The answer to valid JSON holding a number no f64 holds (`1e400`): read
/// member by member, such a number is a fine id (echoed as written); any
/// other fault in a member is a parse error (id null).
fn answer_with_numbers_out_of_range(text: &str) -> Answer {
    let Ok(members) = serde_json::from_str::<BTreeMap<String, &RawValue>>(text) else {
        return Answer::NullOrNothing;
    };
    let mut id = None;
    for (name, raw) in members {
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(value) if name == "id" => {
                if value.is_string() || value.is_number() {
                    id = Some(raw.get().to_string());
                }
            }
            Ok(_) => {}
            Err(e) if !e.to_string().starts_with("number out of range") => {
                return Answer::NullOrNothing
            }
            Err(_) if name == "id" => {
                if raw
                    .get()
                    .starts_with(|c: char| c == '-' || c.is_ascii_digit())
                {
                    id = Some(raw.get().to_string());
                }
            }
            Err(_) => {}
        }
    }
    id.map_or(Answer::NullOrNothing, Answer::Id)
}

/// Whether two raw ids are the same: byte-identical for integers and
/// strings, numerically equal for other numbers.
fn same_id(sent: &str, got: &str) -> bool {
    if sent == got {
        return true;
    }
    let integer = |s: &str| {
        s.trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
    };
    if integer(sent) || sent.starts_with('"') {
        return false;
    }
    match (sent.parse::<f64>(), got.parse::<f64>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Checks one frame the server sent; returns its raw id when it is a response.
fn check_frame(text: &str) -> Result<Option<String>, String> {
    #[derive(Deserialize)]
    struct WithId<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    // An id may be a number no f64 holds (1e400, echoed as the client
    // wrote it): the frame is then read member by member.
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let invalid = || format!("invalid JSON from the server ({e}): {text}");
            let members: BTreeMap<String, &RawValue> =
                serde_json::from_str(text).map_err(|_| invalid())?;
            let mut object = serde_json::Map::new();
            for (name, raw) in members {
                let member = match serde_json::from_str(raw.get()) {
                    Ok(member) => member,
                    Err(_) if name == "id" => Value::Null,
                    Err(_) => return Err(invalid()),
                };
                object.insert(name, member);
            }
            Value::Object(object)
        }
    };
    let obj = v.as_object().ok_or(format!("not an object: {text}"))?;
    if obj.get("jsonrpc") != Some(&Value::from("2.0")) {
        return Err(format!("no \"jsonrpc\":\"2.0\": {text}"));
    }
    if let Some(method) = obj.get("method") {
        if !method.is_string() || obj.contains_key("id") {
            return Err(format!(
                "a notification must have a method and no id: {text}"
            ));
        }
        return Ok(None);
    }
    let Some(id) = obj.get("id") else {
        return Err(format!("a response without an id: {text}"));
    };
    if !(id.is_string() || id.is_number() || id.is_null()) {
        return Err(format!("an id of the wrong type: {text}"));
    }
    match (obj.get("result"), obj.get("error")) {
        (Some(_), None) => {}
        (None, Some(e)) => {
            if !e["code"].is_i64() || !e["message"].is_string() {
                return Err(format!("a malformed error: {text}"));
            }
        }
        _ => {
            return Err(format!(
                "a response needs exactly one of result and error: {text}"
            ))
        }
    }
    let raw = serde_json::from_str::<WithId>(text)
        .ok()
        .and_then(|w| w.id.map(|r| r.get().to_string()))
        .unwrap_or_else(|| "null".into());
    Ok(Some(raw))
}

struct Session {
    ws: Ws,
    sync: u64,
}

impl Session {
    async fn open(url: &str) -> Session {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        // `connected`
        let _ = timeout(ANSWER_WITHIN, ws.next()).await;
        Session { ws, sync: 0 }
    }

    /// Sends `text`, then a sentinel request; returns the ids of the
    /// responses that came before the sentinel's answer.
    async fn exchange(&mut self, text: &str) -> Result<Vec<String>, String> {
        self.sync += 1;
        let sentinel = format!("\"sync-{}\"", self.sync);
        timeout(ANSWER_WITHIN, self.ws.send(Message::text(text.to_string())))
            .await
            .map_err(|_| "send timed out".to_string())?
            .map_err(|e| format!("send: {e}"))?;
        let probe = format!(r#"{{"jsonrpc":"2.0","id":{sentinel},"method":"sync"}}"#);
        timeout(ANSWER_WITHIN, self.ws.send(Message::text(probe)))
            .await
            .map_err(|_| "send timed out".to_string())?
            .map_err(|e| format!("send: {e}"))?;
        let mut ids = Vec::new();
        loop {
            let message = timeout(ANSWER_WITHIN, self.ws.next())
                .await
                .map_err(|_| format!("no answer within {ANSWER_WITHIN:?}"))?;
            match message {
                Some(Ok(Message::Text(t))) => {
                    if let Some(id) = check_frame(&t)? {
                        if id == sentinel {
                            return Ok(ids);
                        }
                        ids.push(id);
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    return Err(format!("the server closed the connection: {f:?}"))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("the connection failed: {e}")),
                None => return Err("the connection ended".into()),
            }
        }
    }
}

async fn health(port: u16) -> Result<(), String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    timeout(ANSWER_WITHIN, tcp.read_to_end(&mut response))
        .await
        .map_err(|_| "/health did not answer".to_string())?
        .map_err(|e| e.to_string())?;
    if response.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("/health: {}", String::from_utf8_lossy(&response)))
    }
}

#[test]
fn random_messages_get_valid_answers_and_the_session_lives() {
    let server = TestServer::start_with(&[("CCX_ALLOWED_COMMANDS", "echo")], &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let session = Mutex::new(rt.block_on(Session::open(&server.url)));
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let count = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&message(), |text| {
        let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if started.elapsed() > TIME_BUDGET {
            return Ok(()); // the budget is spent: the remaining cases pass untried
        }
        let mut session = session.lock().unwrap();
        let outcome = rt.block_on(async {
            let ids = session.exchange(&text).await?;
            match (expected_answer(&text), ids.as_slice()) {
                (Answer::Id(sent), [got]) if same_id(&sent, got) => {}
                (Answer::Id(sent), got) => {
                    return Err(format!(
                        "expected one response with id {sent}, got ids {got:?}"
                    ))
                }
                (Answer::NullOrNothing, []) => {}
                (Answer::NullOrNothing, [got]) if got == "null" => {}
                (Answer::NullOrNothing, got) => {
                    return Err(format!(
                        "expected nothing or one response with id null, got ids {got:?}"
                    ))
                }
                (Answer::One, [_]) => {}
                (Answer::One, got) => {
                    return Err(format!("expected one response, got ids {got:?}"))
                }
            }
            if n.is_multiple_of(25) {
                health(server.port).await?;
            }
            Ok::<(), String>(())
        });
        if let Err(e) = outcome {
            // Later cases (and shrinking) need a live session.
            *session = rt.block_on(Session::open(&server.url));
            return Err(TestCaseError::fail(format!(
                "{e}\nmessage: {}",
                clip(&text)
            )));
        }
        Ok(())
    });
    let tried = count.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "fuzz: {tried} messages in {:?} ({cases} cases asked)",
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(health(server.port))
        .expect("/health after the run");
}

fn clip(text: &str) -> String {
    if text.len() <= 400 {
        return text.to_string();
    }
    let mut end = 400;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}
