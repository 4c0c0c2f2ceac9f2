//! The stdio transport of `ktplay lsp`: LSP base-protocol framing read defensively.
//!
//! `lsp-server`'s own stdio transport ends the server on the first malformed message and
//! allocates whatever `Content-Length` says before reading a byte of it. Here every message is
//! bounded ([`MAX_BODY`]), and a message that cannot be read is answered with a JSON-RPC error
//! (`id: null`) and skipped: bad JSON or invalid UTF-8 is a parse error (-32700); a batch array
//! or JSON that is not a request, response or notification is an invalid request (-32600); a
//! header block without a usable length (missing, negative, not a number, over the bound) is a
//! parse error, after which the reader looks for the next `Content-Length:` header. Header lines
//! may end in `\r\n` (the protocol) or a bare `\n`. Only the end of stdin ends the reader.

use std::io::{self, BufRead, Read, Write};
use std::thread;

use lsp_server::{Connection, Message};
use serde_json::{json, Value};

/// The largest message body read (a 16 MiB playbook, JSON-escaped, fits well within it).
pub(crate) const MAX_BODY: u64 = 64 << 20;
/// The longest header line kept (anything longer is not a header of this protocol).
const MAX_HEADER_LINE: u64 = 8 << 10;

/// JSON-RPC's parse error.
pub(crate) const PARSE_ERROR: i64 = -32700;
/// JSON-RPC's invalid request.
pub(crate) const INVALID_REQUEST: i64 = -32600;

/// One message read from the stream, or why none could be.
#[derive(Debug)]
pub(crate) enum Frame {
    Message(Message),
    /// Could not be read: the error to answer (code, message, the request's id if known).
    Bad {
        code: i64,
        message: String,
        id: Value,
    },
}

/// Reads frames from a byte stream.
pub(crate) struct Reader<R> {
    input: R,
    /// After a framing error: skip to the next `Content-Length:` header.
    resync: bool,
}

impl<R: BufRead> Reader<R> {
    pub(crate) fn new(input: R) -> Reader<R> {
        Reader {
            input,
            resync: false,
        }
    }

    /// One header line without its line end (`None` at the end of the stream). A line longer
    /// than [`MAX_HEADER_LINE`] comes back cut, the rest to be read as the next line.
    fn line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        (&mut self.input)
            .take(MAX_HEADER_LINE)
            .read_until(b'\n', &mut buf)?;
        if buf.is_empty() {
            return Ok(None);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        Ok(Some(buf))
    }

    /// The next frame, or `None` at the end of the stream.
    pub(crate) fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let parse_error = |message: String| Frame::Bad {
            code: PARSE_ERROR,
            message,
            id: Value::Null,
        };
        let mut length: Option<Result<u64, String>> = None;
        let mut in_header = false;
        loop {
            let Some(mut line) = self.line()? else {
                return Ok(None);
            };
            if self.resync {
                // Bodies have no line ends of their own, so the next header can follow a
                // skipped body on the same line.
                let lower = line.to_ascii_lowercase();
                let Some(at) = find(&lower, b"content-length:") else {
                    continue;
                };
                line.drain(..at);
                self.resync = false;
            }
            if line.is_empty() {
                if !in_header {
                    continue; // blank lines between messages
                }
                break;
            }
            in_header = true;
            let text = String::from_utf8_lossy(&line);
            let Some((name, value)) = text.split_once(':') else {
                self.resync = true;
                return Ok(Some(parse_error(format!(
                    "malformed header line {:?}: expected `Name: value`",
                    cut(&text)
                ))));
            };
            if name.trim().eq_ignore_ascii_case("content-length") {
                let value = value.trim();
                length = Some(match value.parse::<u64>() {
                    Ok(n) if n <= MAX_BODY => Ok(n),
                    Ok(n) => Err(format!(
                        "Content-Length {n} is over the limit of {MAX_BODY} bytes"
                    )),
                    Err(_) => Err(format!(
                        "Content-Length {:?} is not a length in bytes",
                        cut(value)
                    )),
                });
            }
        }
        let n = match length {
            Some(Ok(n)) => n,
            Some(Err(why)) => {
                self.resync = true;
                return Ok(Some(parse_error(why)));
            }
            None => {
                self.resync = true;
                return Ok(Some(parse_error(
                    "a message without a Content-Length header".into(),
                )));
            }
        };
        // Read what is there, never allocating more than arrives.
        let mut body = Vec::new();
        (&mut self.input).take(n).read_to_end(&mut body)?;
        if (body.len() as u64) < n {
            return Ok(None); // the stream ended inside the body
        }
        Ok(Some(decode(&body)))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn cut(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A body as a message, or the error to answer.
pub(crate) fn decode(body: &[u8]) -> Frame {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            return Frame::Bad {
                code: PARSE_ERROR,
                message: format!("the message is not UTF-8 ({e})"),
                id: Value::Null,
            }
        }
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Frame::Bad {
                code: PARSE_ERROR,
                message: format!("the message is not JSON: {e}"),
                id: Value::Null,
            }
        }
    };
    if value.is_array() {
        return Frame::Bad {
            code: INVALID_REQUEST,
            message:
                "batches (JSON arrays of messages) are not part of LSP: send one message at a time"
                    .into(),
            id: Value::Null,
        };
    }
    // The id, when it is one, so a malformed request still gets its answer.
    let id = match value.get("id") {
        Some(v @ Value::Number(_)) | Some(v @ Value::String(_)) => v.clone(),
        _ => Value::Null,
    };
    match serde_json::from_value::<Message>(value) {
        Ok(m) => Frame::Message(m),
        Err(e) => Frame::Bad {
            code: INVALID_REQUEST,
            message: format!("not a request, response or notification: {e}"),
            id,
        },
    }
}

/// Write one framed JSON body.
fn write_body(out: &mut impl Write, body: &str) -> io::Result<()> {
    write!(out, "Content-Length: {}\r\n\r\n{body}", body.len())?;
    out.flush()
}

/// The error response to a frame that could not be read.
pub(crate) fn error_body(code: i64, message: &str, id: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// The server's end of a stdio connection, and the threads that move the bytes. The reader
/// stops at the end of stdin or after an `exit` notification; the writer when the server's
/// sender is dropped.
pub(crate) fn stdio() -> (Connection, Threads) {
    let (server, client) = Connection::memory();
    let Connection {
        sender: to_server,
        receiver: from_server,
    } = client;
    let writer = thread::Builder::new()
        .name("lsp-writer".into())
        .spawn(move || -> io::Result<()> {
            for m in from_server {
                let mut out = io::stdout().lock();
                m.write(&mut out)?;
                out.flush()?;
            }
            Ok(())
        })
        .expect("a thread starts");
    let reader = thread::Builder::new()
        .name("lsp-reader".into())
        .spawn(move || -> io::Result<()> {
            let mut r = Reader::new(io::stdin().lock());
            while let Some(frame) = r.next_frame()? {
                match frame {
                    Frame::Message(m) => {
                        let exit = matches!(&m, Message::Notification(n) if n.method == "exit");
                        if to_server.send(m).is_err() || exit {
                            break;
                        }
                    }
                    Frame::Bad { code, message, id } => {
                        eprintln!("ktplay lsp: {message}");
                        write_body(&mut io::stdout().lock(), &error_body(code, &message, &id))?;
                    }
                }
            }
            Ok(())
        })
        .expect("a thread starts");
    (server, Threads { reader, writer })
}

pub(crate) struct Threads {
    reader: thread::JoinHandle<io::Result<()>>,
    writer: thread::JoinHandle<io::Result<()>>,
}

impl Threads {
    /// Wait for the writer (all answers out). The reader may still be blocked on stdin, which
    /// the process's exit ends.
    pub(crate) fn join_writer(self) -> io::Result<()> {
        drop(self.reader);
        self.writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8]) -> Vec<Result<String, (i64, String)>> {
        let mut r = Reader::new(input);
        let mut out = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            out.push(match f {
                Frame::Message(Message::Request(q)) => Ok(q.method),
                Frame::Message(Message::Notification(n)) => Ok(n.method),
                Frame::Message(Message::Response(_)) => Ok("response".into()),
                Frame::Bad { code, message, .. } => Err((code, message)),
            });
        }
        out
    }

    fn msg(body: &str) -> String {
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    }

    const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

    #[test]
    fn every_malformed_message_is_answered_and_the_next_one_read() {
        let cases: Vec<(&str, Vec<u8>, i64)> = vec![
            ("bad JSON", msg("{not json").into_bytes(), PARSE_ERROR),
            (
                "invalid UTF-8",
                [b"Content-Length: 3\r\n\r\n".as_slice(), &[0xff, 0xfe, 0x7b]].concat(),
                PARSE_ERROR,
            ),
            (
                "batch",
                msg(&format!("[{PING}]")).into_bytes(),
                INVALID_REQUEST,
            ),
            (
                "no length",
                format!("Content-Type: x\r\n\r\n{PING}").into_bytes(),
                PARSE_ERROR,
            ),
            (
                "negative length",
                format!("Content-Length: -5\r\n\r\n{PING}").into_bytes(),
                PARSE_ERROR,
            ),
            (
                "u64::MAX",
                format!("Content-Length: 18446744073709551615\r\n\r\n{PING}").into_bytes(),
                PARSE_ERROR,
            ),
            (
                "4 GB",
                format!("Content-Length: 4000000000\r\n\r\n{PING}").into_bytes(),
                PARSE_ERROR,
            ),
            (
                "not a message",
                msg(r#"{"x":1}"#).into_bytes(),
                INVALID_REQUEST,
            ),
            (
                "no colon",
                format!("garbage\r\n\r\n{PING}").into_bytes(),
                PARSE_ERROR,
            ),
        ];
        for (what, bad, code) in cases {
            let input = [bad, msg(PING).into_bytes()].concat();
            let got = frames(&input);
            assert_eq!(got.len(), 2, "{what}: {got:?}");
            assert!(
                matches!(&got[0], Err((c, _)) if *c == code),
                "{what}: {got:?}"
            );
            assert_eq!(got[1], Ok("ping".to_string()), "{what}");
        }
    }

    #[test]
    fn lf_only_headers_are_read() {
        let input = format!("Content-Length: {}\n\n{PING}", PING.len());
        assert_eq!(frames(input.as_bytes()), vec![Ok("ping".to_string())]);
    }

    #[test]
    fn a_lying_length_allocates_only_what_arrives() {
        let input = format!("Content-Length: {MAX_BODY}\r\n\r\n{PING}");
        // The stream ends inside the body: the end of input, no message, no huge buffer.
        assert_eq!(frames(input.as_bytes()), vec![]);
    }

    #[test]
    fn a_malformed_request_keeps_its_id() {
        match decode(br#"{"jsonrpc":"2.0","id":7,"method":3}"#) {
            Frame::Bad { code, id, .. } => {
                assert_eq!(code, INVALID_REQUEST);
                assert_eq!(id, json!(7));
            }
            other => panic!("{other:?}"),
        }
    }
}
