//! A small typed client of QEMU's Machine Protocol over a Unix socket: the greeting,
//! `qmp_capabilities`, and the few commands a live migration needs. The message parsing is
//! pure (`parse_greeting`, `parse_message`), so malformed input is tested without QEMU; the
//! [`Qmp`] connection only adds the socket, line framing and timeouts.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// QMP replies to our commands are small; a longer line means the peer is not QMP.
const MAX_LINE: u64 = 1 << 20;

#[derive(Debug)]
pub enum QmpError {
    /// The peer sent something that is not the QMP message expected here.
    Malformed { what: String, line: String },
    /// QEMU refused a command.
    Command {
        command: String,
        class: String,
        desc: String,
    },
    Io {
        context: String,
        error: std::io::Error,
    },
    /// No answer in time.
    Timeout {
        waiting_for: String,
        after: Duration,
    },
    /// QEMU closed the socket (it exits after `quit`, or it died).
    Closed { waiting_for: String },
}

impl fmt::Display for QmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpError::Malformed { what, line } => {
                let shown: String = line.chars().take(200).collect();
                write!(f, "QMP: malformed {what}: `{shown}`")
            }
            QmpError::Command {
                command,
                class,
                desc,
            } => write!(f, "QMP `{command}` failed: {class}: {desc}"),
            QmpError::Io { context, error } => write!(f, "QMP {context}: {error}"),
            QmpError::Timeout { waiting_for, after } => {
                write!(f, "QMP: no {waiting_for} within {after:?}")
            }
            QmpError::Closed { waiting_for } => {
                write!(f, "QMP: QEMU closed the connection before {waiting_for}")
            }
        }
    }
}

impl std::error::Error for QmpError {}

pub type Result<T> = std::result::Result<T, QmpError>;

/// QEMU's version, from the greeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    pub version: Version,
    pub package: String,
    pub capabilities: Vec<String>,
}

/// One message from QEMU after the greeting.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Return {
        id: Option<u64>,
        value: Value,
    },
    Error {
        id: Option<u64>,
        class: String,
        desc: String,
    },
    Event(Event),
}

/// An asynchronous event. QEMU stamps each with its wall clock, so the events of two QEMU
/// processes on one machine can be compared (a migration's pause: the source's `STOP` to the
/// destination's `RESUME`).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
    /// Microseconds since the Unix epoch, when the event carries a `timestamp`.
    pub at_us: Option<u64>,
}

/// The time from the last `STOP` among `source`'s events to the last `RESUME` among
/// `destination`'s, when both are there, stamped, and in that order.
pub fn pause_us(source: &[Event], destination: &[Event]) -> Option<u64> {
    let last = |events: &[Event], name: &str| events.iter().rev().find(|e| e.name == name)?.at_us;
    let (stop, resume) = (last(source, "STOP")?, last(destination, "RESUME")?);
    resume.checked_sub(stop)
}

fn malformed(what: &str, line: &str) -> QmpError {
    QmpError::Malformed {
        what: what.to_string(),
        line: line.to_string(),
    }
}

/// The first line QEMU sends: `{"QMP": {"version": {"qemu": {...}, "package": ...},
/// "capabilities": [...]}}`.
pub fn parse_greeting(line: &str) -> Result<Greeting> {
    #[derive(Deserialize)]
    struct Wire {
        #[serde(rename = "QMP")]
        qmp: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        version: VersionWire,
        capabilities: Vec<String>,
    }
    #[derive(Deserialize)]
    struct VersionWire {
        qemu: Version,
        #[serde(default)]
        package: String,
    }
    let w: Wire = serde_json::from_str(line).map_err(|_| malformed("greeting", line))?;
    Ok(Greeting {
        version: w.qmp.version.qemu,
        package: w.qmp.version.package.trim().to_string(),
        capabilities: w.qmp.capabilities,
    })
}

/// A reply (`return` or `error`, with the `id` we sent) or an asynchronous event.
pub fn parse_message(line: &str) -> Result<Message> {
    let v: Value = serde_json::from_str(line).map_err(|_| malformed("message", line))?;
    let obj = v.as_object().ok_or_else(|| malformed("message", line))?;
    let id = match obj.get("id") {
        None => None,
        Some(i) => Some(i.as_u64().ok_or_else(|| malformed("message id", line))?),
    };
    if let Some(value) = obj.get("return") {
        return Ok(Message::Return {
            id,
            value: value.clone(),
        });
    }
    if let Some(err) = obj.get("error") {
        let field = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(class), Some(desc)) = (field("class"), field("desc")) else {
            return Err(malformed("error reply", line));
        };
        return Ok(Message::Error { id, class, desc });
    }
    if let Some(name) = obj.get("event").and_then(Value::as_str) {
        let data = obj.get("data").cloned().unwrap_or(Value::Null);
        let stamp = obj.get("timestamp");
        let part = |k: &str| stamp.and_then(|t| t.get(k)).and_then(Value::as_u64);
        let at_us = match (part("seconds"), part("microseconds")) {
            (Some(s), Some(us)) => s.checked_mul(1_000_000).and_then(|s| s.checked_add(us)),
            _ => None,
        };
        return Ok(Message::Event(Event {
            name: name.to_string(),
            data,
            at_us,
        }));
    }
    Err(malformed("message (no return, error or event)", line))
}

/// The text of one command, newline-terminated.
pub fn command_line(execute: &str, arguments: Option<&Value>, id: u64) -> String {
    let mut v = json!({ "execute": execute, "id": id });
    if let Some(a) = arguments {
        v["arguments"] = a.clone();
    }
    format!("{v}\n")
}

/// `query-status`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct StatusInfo {
    /// `running`, `paused`, `inmigrate`, `postmigrate`, `shutdown`, ...
    pub status: String,
    pub running: bool,
}

/// `query-migrate` (the fields a driver reads; times in milliseconds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationInfo {
    /// `none`, `setup`, `active`, `completed`, `failed`, `cancelled`, ...; absent before any
    /// migration.
    #[serde(default)]
    pub status: Option<String>,
    pub total_time: Option<u64>,
    /// The time the guest was paused, once completed.
    pub downtime: Option<u64>,
    pub expected_downtime: Option<u64>,
    pub setup_time: Option<u64>,
    pub error_desc: Option<String>,
    pub ram: Option<RamInfo>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct RamInfo {
    pub transferred: u64,
    pub total: u64,
}

/// `migrate-set-parameters` (only what we set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrateParameters {
    /// Bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<u64>,
    /// The pause QEMU aims for, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_limit: Option<u64>,
}

/// `announce-self`: RARPs (or the guest's own gratuitous ARPs) from every NIC, so that
/// switches, and a `dgram` interface of vnetd, learn where the VM now is. Times in ms; the
/// defaults are QEMU's own after a migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Announce {
    pub initial: u64,
    pub max: u64,
    pub rounds: u64,
    pub step: u64,
}

impl Default for Announce {
    fn default() -> Announce {
        Announce {
            initial: 50,
            max: 550,
            rounds: 5,
            step: 100,
        }
    }
}

/// A QMP connection in command mode.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    timeout: Duration,
    pub greeting: Greeting,
    /// Events received while waiting for replies, oldest first (kept for the caller).
    pub events: Vec<Event>,
}

impl Qmp {
    /// Connects, reads the greeting and enters command mode; every later answer must come
    /// within `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        let io = |context: &str| {
            let context = format!("{context} {}", path.display());
            move |error| QmpError::Io { context, error }
        };
        let stream = UnixStream::connect(path).map_err(io("connect to"))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(io("set timeout on"))?;
        let writer = stream.try_clone().map_err(io("clone"))?;
        let mut reader = BufReader::new(stream);
        let line = read_line(&mut reader, "greeting", timeout)?;
        let greeting = parse_greeting(&line)?;
        let mut qmp = Qmp {
            reader,
            writer,
            next_id: 1,
            timeout,
            greeting,
            events: Vec::new(),
        };
        qmp.execute_raw("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs a command and returns its `return` value, keeping events that come first.
    pub fn execute_raw(&mut self, execute: &str, arguments: Option<&Value>) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let text = command_line(execute, arguments, id);
        self.writer
            .write_all(text.as_bytes())
            .map_err(|error| QmpError::Io {
                context: format!("sending `{execute}`"),
                error,
            })?;
        let deadline = Instant::now() + self.timeout;
        let waiting_for = format!("reply to `{execute}`");
        loop {
            if Instant::now() > deadline {
                return Err(QmpError::Timeout {
                    waiting_for,
                    after: self.timeout,
                });
            }
            let line = read_line(&mut self.reader, &waiting_for, self.timeout)?;
            match parse_message(&line)? {
                Message::Event(e) => self.events.push(e),
                Message::Return { id: Some(i), value } if i == id => return Ok(value),
                Message::Error {
                    id: Some(i),
                    class,
                    desc,
                } if i == id => {
                    return Err(QmpError::Command {
                        command: execute.to_string(),
                        class,
                        desc,
                    })
                }
                // A reply to an earlier command that timed out: not ours.
                _ => {}
            }
        }
    }

    pub fn execute<T: DeserializeOwned>(
        &mut self,
        execute: &str,
        arguments: Option<Value>,
    ) -> Result<T> {
        let value = self.execute_raw(execute, arguments.as_ref())?;
        serde_json::from_value(value.clone())
            .map_err(|_| malformed(&format!("reply to `{execute}`"), &value.to_string()))
    }

    fn execute_unit(&mut self, execute: &str, arguments: Option<Value>) -> Result<()> {
        self.execute_raw(execute, arguments.as_ref()).map(drop)
    }

    pub fn query_status(&mut self) -> Result<StatusInfo> {
        self.execute("query-status", None)
    }

    pub fn query_migrate(&mut self) -> Result<MigrationInfo> {
        self.execute("query-migrate", None)
    }

    pub fn migrate_set_parameters(&mut self, p: &MigrateParameters) -> Result<()> {
        self.execute_unit("migrate-set-parameters", Some(json!(p)))
    }

    /// Starts migrating to `uri` (`unix:PATH`, `tcp:HOST:PORT`); returns at once.
    pub fn migrate(&mut self, uri: &str) -> Result<()> {
        self.execute_unit("migrate", Some(json!({ "uri": uri })))
    }

    pub fn migrate_cancel(&mut self) -> Result<()> {
        self.execute_unit("migrate_cancel", None)
    }

    pub fn announce_self(&mut self, a: Announce) -> Result<()> {
        self.execute_unit("announce-self", Some(json!(a)))
    }

    /// Asks QEMU to exit. It may close the socket before or after answering; both are fine.
    pub fn quit(&mut self) -> Result<()> {
        match self.execute_unit("quit", None) {
            Err(QmpError::Closed { .. }) => Ok(()),
            other => other,
        }
    }
}

fn read_line(
    reader: &mut BufReader<UnixStream>,
    waiting_for: &str,
    after: Duration,
) -> Result<String> {
    let mut line = String::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE)
        .read_line(&mut line)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => QmpError::Timeout {
                waiting_for: waiting_for.to_string(),
                after,
            },
            _ => QmpError::Io {
                context: format!("reading {waiting_for}"),
                error,
            },
        })?;
    if n == 0 {
        return Err(QmpError::Closed {
            waiting_for: waiting_for.to_string(),
        });
    }
    if !line.ends_with('\n') {
        return Err(malformed(&format!("{waiting_for} (no end of line)"), &line));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7 "}, "capabilities": ["oob"]}}"#;

    #[test]
    fn greeting_of_qemu_7_2() {
        let g = parse_greeting(GREETING).unwrap();
        assert_eq!(
            g.version,
            Version {
                major: 7,
                minor: 2,
                micro: 22
            }
        );
        assert_eq!(g.package, "Debian 1:7.2+dfsg-7");
        assert_eq!(g.capabilities, vec!["oob".to_string()]);
    }

    #[test]
    fn malformed_greetings_are_named() {
        for bad in [
            "",
            "not json",
            r#"{"return": {}}"#,
            r#"{"QMP": {"capabilities": []}}"#,
            r#"{"QMP": {"version": {"qemu": {"major": "7"}}, "capabilities": []}}"#,
        ] {
            let e = parse_greeting(bad).unwrap_err();
            assert!(e.to_string().contains("malformed greeting"), "{bad}: {e}");
        }
    }

    #[test]
    fn replies_errors_and_events() {
        assert_eq!(
            parse_message(r#"{"return": {}, "id": 3}"#).unwrap(),
            Message::Return {
                id: Some(3),
                value: json!({})
            }
        );
        assert_eq!(
            parse_message(
                r#"{"id": 4, "error": {"class": "GenericError", "desc": "There's a migration process in progress"}}"#
            )
            .unwrap(),
            Message::Error {
                id: Some(4),
                class: "GenericError".into(),
                desc: "There's a migration process in progress".into()
            }
        );
        let e = parse_message(
            r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "MIGRATION", "data": {"status": "active"}}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            Message::Event(Event {
                name: "MIGRATION".into(),
                data: json!({"status": "active"}),
                at_us: Some(1_000_002)
            })
        );
        let Message::Event(e) = parse_message(r#"{"event": "STOP"}"#).unwrap() else {
            panic!("not an event")
        };
        assert_eq!((e.data, e.at_us), (Value::Null, None));
    }

    #[test]
    fn a_pause_runs_from_the_sources_stop_to_the_destinations_resume() {
        let e = |name: &str, at_us: Option<u64>| Event {
            name: name.into(),
            data: Value::Null,
            at_us,
        };
        let source = [
            e("STOP", Some(10)),
            e("RESUME", Some(20)),
            e("STOP", Some(1_000)),
        ];
        let destination = [e("MIGRATION", Some(900)), e("RESUME", Some(1_450))];
        assert_eq!(pause_us(&source, &destination), Some(450));
        assert_eq!(pause_us(&source, &[]), None);
        assert_eq!(pause_us(&[e("STOP", None)], &destination), None);
        // A resume before the stop is no pause of this migration.
        assert_eq!(pause_us(&source, &[e("RESUME", Some(999))]), None);
    }

    #[test]
    fn malformed_messages_are_named() {
        for (bad, what) in [
            ("[1, 2]", "malformed message"),
            ("{\"return\": {}, \"id\": \"x\"}", "malformed message id"),
            ("{\"error\": {\"class\": 1}}", "malformed error reply"),
            ("{\"hello\": 1}", "no return, error or event"),
            ("{\"return\": ", "malformed message"),
        ] {
            let e = parse_message(bad).unwrap_err();
            assert!(e.to_string().contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn command_lines_carry_id_and_arguments() {
        let line = command_line("migrate", Some(&json!({"uri": "unix:/x"})), 7);
        assert!(line.ends_with('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            json!({"execute": "migrate", "id": 7, "arguments": {"uri": "unix:/x"}})
        );
        let v: Value = serde_json::from_str(&command_line("quit", None, 1)).unwrap();
        assert_eq!(v, json!({"execute": "quit", "id": 1}));
    }

    #[test]
    fn query_migrate_reply_is_typed() {
        let v = json!({"status": "completed", "total-time": 812, "downtime": 23,
            "setup-time": 2, "ram": {"transferred": 1000, "total": 4000, "remaining": 0}});
        let m: MigrationInfo = serde_json::from_value(v).unwrap();
        assert_eq!(m.status.as_deref(), Some("completed"));
        assert_eq!((m.total_time, m.downtime), (Some(812), Some(23)));
        assert_eq!(m.ram.unwrap().transferred, 1000);
        let none: MigrationInfo = serde_json::from_value(json!({})).unwrap();
        assert_eq!(none.status, None);
        let p = json!(MigrateParameters {
            max_bandwidth: Some(5),
            downtime_limit: None
        });
        assert_eq!(p, json!({"max-bandwidth": 5}));
    }

    /// The connection against a fake QEMU on a socket pair: events before the reply are kept,
    /// an error reply becomes `QmpError::Command`, silence is a timeout, a close is `Closed`.
    #[test]
    fn connection_over_a_socket() {
        let dir = std::env::temp_dir().join(format!("vnetc-qmp-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            writeln!(s, "{GREETING}").unwrap();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("qmp_capabilities"));
            writeln!(s, r#"{{"return": {{}}, "id": 1}}"#).unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            writeln!(s, r#"{{"event": "RESUME", "data": {{}}}}"#).unwrap();
            writeln!(
                s,
                r#"{{"return": {{"status": "running", "running": true}}, "id": 2}}"#
            )
            .unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            writeln!(
                s,
                r#"{{"error": {{"class": "GenericError", "desc": "no"}}, "id": 3}}"#
            )
            .unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            // No answer to the 4th command; then close.
            std::thread::sleep(Duration::from_millis(400));
        });
        let mut q = Qmp::connect(&path, Duration::from_millis(200)).unwrap();
        assert_eq!(q.greeting.version.major, 7);
        let st = q.query_status().unwrap();
        assert!(st.running && st.status == "running");
        assert_eq!(q.events.len(), 1);
        let e = q.migrate("unix:/nowhere").unwrap_err();
        assert!(
            matches!(e, QmpError::Command { ref desc, .. } if desc == "no"),
            "{e}"
        );
        let e = q.query_migrate().unwrap_err();
        assert!(matches!(e, QmpError::Timeout { .. }), "{e}");
        server.join().unwrap();
        let e = q.query_status().unwrap_err();
        assert!(
            matches!(e, QmpError::Closed { .. } | QmpError::Io { .. }),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
