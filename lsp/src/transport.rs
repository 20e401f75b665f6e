//! The stdio transport with a guard in front of `tower-lsp-server`.
//!
//! `tower-lsp-server` reads its input through a `tokio_util` codec, whose stream ends for good
//! after the first frame it cannot decode, and the server with it. So frames are checked here
//! first: a frame whose body is not JSON gets a `ParseError` response and one that is not a
//! JSON-RPC message an `InvalidRequest` response (with `id: null` when none can be read), as
//! JSON-RPC 2.0 asks, and the server never sees either. Everything else passes through
//! unchanged. Output from the server and from this guard share one writer, frame by frame.

use crate::server::Backend;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::sync::{oneshot, Mutex};
use tower_lsp_server::jsonrpc::{Error, Id, Request, Response};
use tower_lsp_server::{LspService, Server};

/// The longest header line read before it is taken for garbage.
const MAX_HEADER_LINE: u64 = 8 * 1024;
/// The largest message body accepted (a 10,000-line file is about half a megabyte).
const MAX_BODY: usize = 256 * 1024 * 1024;
/// The in-process pipes between the guard and the server.
const PIPE: usize = 1 << 16;

/// One frame read from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A message body, still to be checked.
    Body(Vec<u8>),
    /// Input that is no frame: the error response it gets.
    Invalid(Error),
    /// Garbage header lines before a well-formed frame: the error, then the frame's body.
    GarbageThen(Error, Vec<u8>),
}

/// Reads the next frame; `None` at the end of the input.
pub async fn read_frame<R: AsyncBufRead + Unpin>(input: &mut R) -> io::Result<Option<Frame>> {
    let mut length: Option<usize> = None;
    let mut garbage = false;
    let mut any_line = false;
    loop {
        let mut line = Vec::new();
        let read = (&mut *input)
            .take(MAX_HEADER_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            // End of input: a partial header block is dropped silently, there is no one to tell.
            return Ok(None);
        }
        let ends_line = line.last() == Some(&b'\n');
        let trimmed = trim_line_end(&line);
        if ends_line && trimmed.is_empty() {
            if !any_line {
                continue; // Stray blank lines between frames.
            }
            break;
        }
        any_line = true;
        if !ends_line {
            garbage = true; // An endless line: read on until a line break.
            continue;
        }
        match parse_header(trimmed) {
            Some(Header::ContentLength(n)) => length = Some(n),
            Some(Header::Other) => {}
            None => garbage = true,
        }
    }
    let Some(length) = length else {
        return Ok(Some(Frame::Invalid(Error::parse_error())));
    };
    if length > MAX_BODY {
        tokio::io::copy(
            &mut (&mut *input).take(length as u64),
            &mut tokio::io::sink(),
        )
        .await?;
        return Ok(Some(Frame::Invalid(Error::invalid_request())));
    }
    // Grown as the bytes arrive: a length that is a lie costs no more than what was sent.
    let mut body = Vec::with_capacity(length.min(1 << 20));
    (&mut *input)
        .take(length as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() < length {
        return Ok(None); // The input ended inside the body.
    }
    Ok(Some(if garbage {
        Frame::GarbageThen(Error::parse_error(), body)
    } else {
        Frame::Body(body)
    }))
}

enum Header {
    ContentLength(usize),
    Other,
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &line[..end]
}

fn parse_header(line: &[u8]) -> Option<Header> {
    let text = std::str::from_utf8(line).ok()?;
    let (name, value) = text.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    if name.eq_ignore_ascii_case("content-length") {
        // A length that is no number makes the header garbage.
        return value
            .trim()
            .parse::<usize>()
            .ok()
            .map(Header::ContentLength);
    }
    Some(Header::Other)
}

/// Whether a body is a message the server can take, or the error response it gets instead.
pub fn check_body(body: &[u8]) -> Result<(), Response> {
    if serde_json::from_slice::<Request>(body).is_ok()
        || serde_json::from_slice::<Response>(body).is_ok()
    {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Err(_) => Err(Response::from_error(Id::Null, Error::parse_error())),
        Ok(value) => {
            let id = match value.get("id") {
                Some(serde_json::Value::Number(n)) => n.as_i64().map_or(Id::Null, Id::Number),
                Some(serde_json::Value::String(s)) => Id::String(s.clone()),
                _ => Id::Null,
            };
            Err(Response::from_error(id, Error::invalid_request()))
        }
    }
}

fn frame_bytes(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

async fn write_frame<W: AsyncWrite + Unpin>(output: &Mutex<W>, body: &[u8]) -> io::Result<()> {
    let mut output = output.lock().await;
    output.write_all(&frame_bytes(body)).await?;
    output.flush().await
}

async fn answer<W: AsyncWrite + Unpin>(output: &Mutex<W>, response: Response) -> io::Result<()> {
    let body = serde_json::to_vec(&response).map_err(io::Error::other)?;
    write_frame(output, &body).await
}

/// Serves the language server on `input`/`output` until `exit` or the end of the input, and
/// returns the process's exit code: 0 after a `shutdown` request, 1 otherwise (LSP `exit`).
pub async fn serve<I, O>(input: I, output: O) -> i32
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&shutdown);
    let (service, socket) = LspService::new(move |client| Backend::new(client, flag));
    let (mut to_server, server_in) = tokio::io::duplex(PIPE);
    let (server_out, from_server) = tokio::io::duplex(PIPE);
    let output = Mutex::new(output);
    let (done, stop_reading) = oneshot::channel::<()>();

    let reader = async {
        let mut input = BufReader::new(input);
        let pump = async {
            while let Some(frame) = read_frame(&mut input).await? {
                let body = match frame {
                    Frame::Body(body) => body,
                    Frame::Invalid(error) => {
                        answer(&output, Response::from_error(Id::Null, error)).await?;
                        continue;
                    }
                    Frame::GarbageThen(error, body) => {
                        answer(&output, Response::from_error(Id::Null, error)).await?;
                        body
                    }
                };
                match check_body(&body) {
                    Ok(()) => to_server.write_all(&frame_bytes(&body)).await?,
                    Err(response) => answer(&output, response).await?,
                }
            }
            io::Result::Ok(())
        };
        tokio::select! {
            _ = pump => {}
            _ = stop_reading => {}
        }
        // Closing the server's input ends it, as the end of stdin would.
        drop(to_server);
    };

    let server_and_writer = async {
        let server = Server::new(server_in, server_out, socket).serve(service);
        let writer = async {
            let mut from_server = BufReader::new(from_server);
            while let Ok(Some(frame)) = read_frame(&mut from_server).await {
                let body = match frame {
                    Frame::Body(body) | Frame::GarbageThen(_, body) => body,
                    Frame::Invalid(_) => continue,
                };
                if write_frame(&output, &body).await.is_err() {
                    break;
                }
            }
        };
        tokio::join!(server, writer);
        let _ = done.send(());
    };

    tokio::join!(reader, server_and_writer);
    if shutdown.load(Ordering::SeqCst) {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8]) -> Vec<Frame> {
        let mut reader = BufReader::new(input);
        let mut out = Vec::new();
        while let Some(frame) = read_frame(&mut reader).await.expect("in-memory read") {
            out.push(frame);
        }
        out
    }

    #[tokio::test]
    async fn frames_are_read_and_garbage_is_answered() {
        let input = b"Content-Length: 2\r\n\r\n{}hello\r\n\r\ncontent-length: 3\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n[1]";
        assert_eq!(
            frames(input).await,
            vec![
                Frame::Body(b"{}".to_vec()),
                Frame::Invalid(Error::parse_error()),
                Frame::Body(b"[1]".to_vec()),
            ]
        );
        let input = b"garbage\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(
            frames(input).await,
            vec![Frame::GarbageThen(Error::parse_error(), b"{}".to_vec())]
        );
        let input = b"Content-Length: lots\r\n\r\nContent-Length: 999999\r\n\r\n{\"cut\": ";
        assert_eq!(
            frames(input).await,
            vec![Frame::Invalid(Error::parse_error())]
        );
    }

    #[test]
    fn bodies_are_checked() {
        assert!(check_body(br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#).is_ok());
        assert!(check_body(br#"{"jsonrpc":"2.0","id":1,"result":null}"#).is_ok());
        let parse = check_body(b"{oops").expect_err("not JSON");
        assert_eq!(parse, Response::from_error(Id::Null, Error::parse_error()));
        let invalid =
            check_body(br#"{"jsonrpc":"2.0","id":7,"method":5}"#).expect_err("method not a string");
        assert_eq!(
            invalid,
            Response::from_error(Id::Number(7), Error::invalid_request())
        );
        let invalid =
            check_body(br#"{"jsonrpc":"1.0","id":"a","method":"x"}"#).expect_err("not 2.0");
        assert_eq!(
            invalid,
            Response::from_error(Id::String("a".into()), Error::invalid_request())
        );
        let invalid = check_body(b"[1, 2]").expect_err("a batch");
        assert_eq!(
            invalid,
            Response::from_error(Id::Null, Error::invalid_request())
        );
    }
}
