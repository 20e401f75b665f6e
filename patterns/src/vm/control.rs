//! A VM process's control socket: a Unix socket (its file mode is the access control) that
//! takes one command per line, so that whoever runs the VMs can migrate one while it runs.
//!
//! - `attach HOST:PORT`: send frames to this `dgram` interface from now on (the VM then
//!   announces itself there); answers `ok attached HOST:PORT`.
//! - `where`: answers `ok attached HOST:PORT`.
//! - `end`: a run of a given duration ends now (rank 0 decides when such a run ends, so only
//!   rank 0's request counts; it announces the last superstep, which every rank hears within
//!   as many supersteps as there are ranks); answers `ok ending`.
//!
//! Anything else gets `error ...`; the connection stays open for the next line.

use super::device::Attachment;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The longest command line read; a longer one is an error, not a growing buffer.
const MAX_LINE: usize = 256;

/// One command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Attach(SocketAddr),
    Where,
    End,
}

/// A request, from the control socket, that a run of a given duration end now.
#[derive(Clone, Debug, Default)]
pub struct EndRequest(Arc<AtomicBool>);

impl EndRequest {
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Parses one line.
pub fn parse(line: &str) -> Result<Command, String> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("attach"), Some(addr), None) => addr
            .parse()
            .map(Command::Attach)
            .map_err(|_| format!("`{addr}` is not an address like 127.0.0.1:6000")),
        (Some("where"), None, None) => Ok(Command::Where),
        (Some("end"), None, None) => Ok(Command::End),
        _ => Err(format!(
            "unknown command `{line}`: use `attach HOST:PORT`, `where` or `end`"
        )),
    }
}

/// Carries out one line and returns the answer.
pub fn answer(line: &str, attachment: &Attachment, end: &EndRequest) -> String {
    match parse(line) {
        Ok(Command::Attach(addr)) => {
            attachment.set(addr);
            format!("ok attached {addr}")
        }
        Ok(Command::Where) => format!("ok attached {}", attachment.get()),
        Ok(Command::End) => {
            end.request();
            "ok ending".to_string()
        }
        Err(e) => format!("error {e}"),
    }
}

/// The control socket; its file is removed on drop.
pub struct Control {
    path: PathBuf,
}

impl Control {
    /// Listens at `path` (which must not exist) and serves every connection on a thread.
    pub fn serve(path: &Path, attachment: Attachment, end: EndRequest) -> io::Result<Control> {
        let listener = UnixListener::bind(path)?;
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (attachment, end) = (attachment.clone(), end.clone());
                std::thread::spawn(move || serve_one(conn, &attachment, &end));
            }
        });
        Ok(Control {
            path: path.to_path_buf(),
        })
    }
}

fn serve_one(conn: UnixStream, attachment: &Attachment, end: &EndRequest) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut lines = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        match io::Read::take(&mut lines, MAX_LINE as u64 + 1).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) if n > MAX_LINE => {
                let _ = writeln!(out, "error a command is at most {MAX_LINE} bytes");
                return;
            }
            Ok(_) => {
                if writeln!(out, "{}", answer(line.trim(), attachment, end)).is_err() {
                    return;
                }
            }
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let a = Attachment::new("127.0.0.1:6000".parse().unwrap());
        let e = EndRequest::default();
        let answer = |line: &str, a: &Attachment| answer(line, a, &e);
        assert_eq!(answer("where", &a), "ok attached 127.0.0.1:6000");
        assert_eq!(
            answer("attach 127.0.0.2:6001", &a),
            "ok attached 127.0.0.2:6001"
        );
        assert_eq!(a.get(), "127.0.0.2:6001".parse().unwrap());
        assert!(answer("attach nowhere", &a).starts_with("error `nowhere`"));
        assert!(answer("attach", &a).starts_with("error unknown command"));
        assert!(answer("move 127.0.0.1:1", &a).starts_with("error unknown command"));
        assert_eq!(
            a.get(),
            "127.0.0.2:6001".parse().unwrap(),
            "errors change nothing"
        );
        assert!(answer("end now", &a).starts_with("error unknown command"));
        assert!(!e.is_requested(), "errors change nothing");
        assert_eq!(answer("end", &a), "ok ending");
        assert!(e.is_requested());
    }

    #[test]
    fn the_socket_serves_lines_and_refuses_long_ones() {
        let path = std::env::temp_dir().join(format!("patterns-control-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let a = Attachment::new("127.0.0.1:6000".parse().unwrap());
        let control = Control::serve(&path, a.clone(), EndRequest::default()).expect("serve");
        let mut s = UnixStream::connect(&path).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        writeln!(s, "attach 127.0.0.3:7").unwrap();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "ok attached 127.0.0.3:7\n");
        assert_eq!(a.get(), "127.0.0.3:7".parse().unwrap());
        line.clear();
        // One write: the server answers and closes once it has read MAX_LINE + 1 bytes, so
        // a second write (writeln! may split the newline off) could meet a closed socket.
        let long = format!("{}\n", "x".repeat(1000));
        s.write_all(long.as_bytes()).unwrap();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("error a command is at most"), "{line}");
        drop(control);
        assert!(!path.exists(), "the socket file goes with the control");
    }
}
