//! `ktplay lsp`: a language server over stdio (the `lsp-server` crate, synchronous, full-text
//! sync: a check takes milliseconds, so every change is checked whole).
//!
//! Diagnostics on open and change (as `ktplay check` reports them, at the file's path so `use`
//! and hook files resolve), hover (a component's from → to and the matrix rows it falls under; a
//! let's value in every env, secrets as the variable they are read from; what a statement does),
//! go to definition (components, envs, lets, matrices — also in `use`d files — hook and `use`d
//! files), document symbols, and formatting with `ktplay fmt`'s layout.

pub(crate) mod analysis;
pub(crate) mod transport;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lsp_server::{Connection, Message, Notification, Request, Response};
use lsp_types::{
    notification::{self, Notification as _},
    request::{self, Request as _},
    Diagnostic, DiagnosticSeverity, DocumentSymbol, DocumentSymbolResponse, GotoDefinitionResponse,
    Hover, HoverContents, HoverProviderCapability, InitializeResult, Location, MarkupContent,
    MarkupKind, NumberOrString, OneOf, Position, PublishDiagnosticsParams, Range,
    ServerCapabilities, ServerInfo, SymbolKind, TextDocumentSyncCapability, TextDocumentSyncKind,
    TextEdit, Uri,
};

use crate::exit::Exit;
use analysis::Analysis;

/// Serve on stdin/stdout until the client says `exit`; returns the process exit code: 0 after
/// `shutdown` then `exit`, 1 for an `exit` without `shutdown` (as the protocol says) or stdin
/// closed without `exit`.
pub fn serve_stdio() -> Exit {
    let (connection, io_threads) = transport::stdio();
    let result = serve(&connection);
    drop(connection);
    let joined = io_threads.join_writer();
    match (result, joined) {
        (Ok(End::Exit), Ok(())) => Exit::Ok,
        (Ok(End::ExitWithoutShutdown), Ok(())) => {
            eprintln!("ktplay lsp: `exit` before `shutdown`");
            Exit::Failed
        }
        (Ok(End::Closed), Ok(())) => {
            eprintln!("ktplay lsp: the input ended without `shutdown` and `exit`");
            Exit::Failed
        }
        (Err(e), _) => {
            eprintln!("ktplay lsp: {e}");
            Exit::Failed
        }
        (_, Err(e)) => {
            eprintln!("ktplay lsp: {e}");
            Exit::Failed
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// `exit` after `shutdown`.
    Exit,
    /// `exit` with no `shutdown` before it.
    ExitWithoutShutdown,
    /// The client's end closed without `exit`.
    Closed,
}

/// The server on any connection (tests use `Connection::memory`).
pub(crate) fn serve(connection: &Connection) -> Result<End, Error> {
    let capabilities = ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        ..ServerCapabilities::default()
    };
    let (id, _params) = connection.initialize_start()?;
    let result = InitializeResult {
        capabilities,
        server_info: Some(ServerInfo {
            name: "ktplay".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
    };
    connection.initialize_finish(id, serde_json::to_value(result)?)?;
    let mut server = Server {
        docs: HashMap::new(),
    };
    let mut shut_down = false;
    for msg in &connection.receiver {
        match msg {
            Message::Request(req) => {
                let response = if shut_down {
                    Response::new_err(
                        req.id,
                        lsp_server::ErrorCode::InvalidRequest as i32,
                        "the server is shut down: only `exit` is answered now".into(),
                    )
                } else if req.method == request::Shutdown::METHOD {
                    shut_down = true;
                    Response::new_ok(req.id, ())
                } else {
                    server.request(req)
                };
                connection.sender.send(Message::Response(response))?;
            }
            Message::Notification(n) if n.method == notification::Exit::METHOD => {
                return Ok(if shut_down {
                    End::Exit
                } else {
                    End::ExitWithoutShutdown
                });
            }
            Message::Notification(n) => {
                if shut_down {
                    continue;
                }
                for out in server.notification(n) {
                    connection.sender.send(Message::Notification(out))?;
                }
            }
            Message::Response(_) => {}
        }
    }
    Ok(End::Closed)
}

struct Document {
    path: PathBuf,
    text: String,
    analysis: Analysis,
    /// Other files this document's diagnostics were published for.
    others: Vec<Uri>,
}

struct Server {
    docs: HashMap<Uri, Document>,
}

impl Server {
    fn notification(&mut self, n: Notification) -> Vec<Notification> {
        match n.method.as_str() {
            notification::DidOpenTextDocument::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(n.params)
                else {
                    return Vec::new();
                };
                self.update(
                    p.text_document.uri,
                    p.text_document.text,
                    Some(p.text_document.version),
                )
            }
            notification::DidChangeTextDocument::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(n.params)
                else {
                    return Vec::new();
                };
                // Full sync: the last change holds the whole text.
                match p.content_changes.into_iter().last() {
                    Some(change) => self.update(
                        p.text_document.uri,
                        change.text,
                        Some(p.text_document.version),
                    ),
                    None => Vec::new(),
                }
            }
            notification::DidCloseTextDocument::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(n.params)
                else {
                    return Vec::new();
                };
                let mut out = Vec::new();
                if let Some(doc) = self.docs.remove(&p.text_document.uri) {
                    for other in doc.others.iter().filter(|o| !self.docs.contains_key(*o)) {
                        out.push(publish(other.clone(), Vec::new(), None));
                    }
                }
                out.push(publish(p.text_document.uri, Vec::new(), None));
                out
            }
            _ => Vec::new(),
        }
    }

    fn update(&mut self, uri: Uri, text: String, version: Option<i32>) -> Vec<Notification> {
        let path = uri_to_path(&uri).unwrap_or_else(|| PathBuf::from("untitled.ktplay"));
        let analysis = Analysis::new(&path, &text);
        let mut out = vec![publish(
            uri.clone(),
            diagnostics(&analysis, analysis.file),
            version,
        )];
        // Problems in the files it reads (a hook script, a `use`d file) are published for those
        // files too, unless they are open themselves; ones that went away are cleared.
        let mut others = Vec::new();
        let mut files: Vec<crate::span::FileId> =
            analysis.checked.problems.iter().map(|p| p.file).collect();
        files.sort();
        files.dedup();
        for file in files.into_iter().filter(|f| *f != analysis.file) {
            let Some(other) = path_to_uri(&analysis.checked.sources.get(file).path) else {
                continue;
            };
            if self.docs.contains_key(&other) {
                continue;
            }
            out.push(publish(other.clone(), diagnostics(&analysis, file), None));
            others.push(other);
        }
        if let Some(old) = self.docs.get(&uri) {
            for gone in old.others.iter().filter(|o| !others.contains(o)) {
                if !self.docs.contains_key(gone) {
                    out.push(publish(gone.clone(), Vec::new(), None));
                }
            }
        }
        self.docs.insert(
            uri,
            Document {
                path,
                text,
                analysis,
                others,
            },
        );
        out
    }

    fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        match self.answer(req) {
            Ok(value) => Response::new_ok(id, value),
            Err((code, message)) => Response::new_err(id, code as i32, message),
        }
    }

    fn doc(&self, uri: &Uri) -> Result<&Document, (lsp_server::ErrorCode, String)> {
        self.docs.get(uri).ok_or((
            lsp_server::ErrorCode::InvalidParams,
            format!("`{}` is not open", uri.as_str()),
        ))
    }

    fn answer(
        &mut self,
        req: Request,
    ) -> Result<serde_json::Value, (lsp_server::ErrorCode, String)> {
        let bad = |e: serde_json::Error| (lsp_server::ErrorCode::InvalidParams, e.to_string());
        let json = |v: serde_json::Result<serde_json::Value>| {
            v.map_err(|e| (lsp_server::ErrorCode::InternalError, e.to_string()))
        };
        match req.method.as_str() {
            request::HoverRequest::METHOD => {
                let p: lsp_types::HoverParams = serde_json::from_value(req.params).map_err(bad)?;
                let doc = self.doc(&p.text_document_position_params.text_document.uri)?;
                let offset = offset_of(&doc.text, p.text_document_position_params.position);
                let hover = doc.analysis.hover(offset).map(|(text, (s, e))| Hover {
                    contents: HoverContents::Markup(MarkupContent {
                        kind: MarkupKind::Markdown,
                        value: text,
                    }),
                    range: Some(range_of(&doc.text, s, e)),
                });
                json(serde_json::to_value(hover))
            }
            request::GotoDefinition::METHOD => {
                let p: lsp_types::GotoDefinitionParams =
                    serde_json::from_value(req.params).map_err(bad)?;
                let doc = self.doc(&p.text_document_position_params.text_document.uri)?;
                let offset = offset_of(&doc.text, p.text_document_position_params.position);
                let locations: Vec<Location> = doc
                    .analysis
                    .definition(offset)
                    .into_iter()
                    .filter_map(|(path, s, e)| {
                        let text = if path == doc.path {
                            doc.text.as_str()
                        } else {
                            doc.analysis.text_of(&path).unwrap_or("")
                        };
                        Some(Location {
                            uri: path_to_uri(&path)?,
                            range: range_of(text, s, e),
                        })
                    })
                    .collect();
                let answer = match locations.len() {
                    0 => None,
                    1 => Some(GotoDefinitionResponse::Scalar(locations[0].clone())),
                    _ => Some(GotoDefinitionResponse::Array(locations)),
                };
                json(serde_json::to_value(answer))
            }
            request::DocumentSymbolRequest::METHOD => {
                let p: lsp_types::DocumentSymbolParams =
                    serde_json::from_value(req.params).map_err(bad)?;
                let doc = self.doc(&p.text_document.uri)?;
                let symbols: Vec<DocumentSymbol> = doc
                    .analysis
                    .symbols
                    .iter()
                    .map(|s| symbol(&doc.text, s))
                    .collect();
                json(serde_json::to_value(DocumentSymbolResponse::Nested(
                    symbols,
                )))
            }
            request::Formatting::METHOD => {
                let p: lsp_types::DocumentFormattingParams =
                    serde_json::from_value(req.params).map_err(bad)?;
                let doc = self.doc(&p.text_document.uri)?;
                // Text that does not parse is left alone (its diagnostics say why).
                let edits = match crate::fmt::format(&doc.text) {
                    Ok(formatted) if formatted != doc.text => Some(vec![TextEdit {
                        range: range_of(&doc.text, 0, doc.text.len()),
                        new_text: formatted,
                    }]),
                    Ok(_) => Some(Vec::new()),
                    Err(_) => None,
                };
                json(serde_json::to_value(edits))
            }
            other => Err((
                lsp_server::ErrorCode::MethodNotFound,
                format!("ktplay lsp does not answer `{other}`"),
            )),
        }
    }
}

fn publish(uri: Uri, diagnostics: Vec<Diagnostic>, version: Option<i32>) -> Notification {
    Notification::new(
        notification::PublishDiagnostics::METHOD.to_string(),
        PublishDiagnosticsParams {
            uri,
            diagnostics,
            version,
        },
    )
}

/// The problems `check` found in one of the files it read for a document, at their ranges in
/// that file.
fn diagnostics(analysis: &Analysis, file: crate::span::FileId) -> Vec<Diagnostic> {
    let text: &str = &analysis.checked.sources.get(file).text;
    analysis
        .checked
        .problems
        .iter()
        .filter(|p| p.file == file)
        .map(|p| {
            let (s, e) = p.primary_range().unwrap_or((0, 0));
            let mut message = p.inner.to_string();
            if let Some(help) = p.inner.help() {
                message.push_str(&format!("\nhelp: {help}"));
            }
            Diagnostic {
                range: range_of(text, s, e),
                severity: Some(match p.severity() {
                    miette::Severity::Error => DiagnosticSeverity::ERROR,
                    miette::Severity::Warning => DiagnosticSeverity::WARNING,
                    miette::Severity::Advice => DiagnosticSeverity::HINT,
                }),
                code: Some(NumberOrString::String(p.code())),
                source: Some("ktplay".into()),
                message,
                ..Diagnostic::default()
            }
        })
        .collect()
}

#[allow(deprecated)] // `DocumentSymbol::deprecated` must be written out
fn symbol(text: &str, s: &analysis::Symbol) -> DocumentSymbol {
    DocumentSymbol {
        name: s.name.clone(),
        detail: s.detail.clone(),
        kind: match s.kind {
            analysis::SymbolKind::Playbook => SymbolKind::MODULE,
            analysis::SymbolKind::Matrix => SymbolKind::STRUCT,
            analysis::SymbolKind::Component => SymbolKind::CLASS,
            analysis::SymbolKind::Env => SymbolKind::NAMESPACE,
            analysis::SymbolKind::Let => SymbolKind::VARIABLE,
            analysis::SymbolKind::Stage => SymbolKind::FUNCTION,
            analysis::SymbolKind::Test => SymbolKind::EVENT,
        },
        tags: None,
        deprecated: None,
        range: range_of(text, s.range.0, s.range.1),
        selection_range: range_of(text, s.name_range.0, s.name_range.1),
        children: if s.children.is_empty() {
            None
        } else {
            Some(s.children.iter().map(|c| symbol(text, c)).collect())
        },
    }
}

// ------------------------------------------------------------------ positions

/// LSP positions count UTF-16 code units within a line (the protocol's default encoding).
fn position_of(text: &str, offset: usize) -> Position {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..line_start].matches('\n').count();
    let character = text[line_start..offset].encode_utf16().count();
    Position::new(line as u32, character as u32)
}

fn range_of(text: &str, start: usize, end: usize) -> Range {
    Range::new(position_of(text, start), position_of(text, end))
}

fn offset_of(text: &str, pos: Position) -> usize {
    let mut line_start = 0;
    for _ in 0..pos.line {
        match text[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return text.len(),
        }
    }
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let mut units = 0;
    for (i, c) in text[line_start..line_end].char_indices() {
        if units >= pos.character as usize {
            return line_start + i;
        }
        units += c.len_utf16();
    }
    line_end
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

// ------------------------------------------------------------------ URIs

fn uri_to_path(uri: &Uri) -> Option<PathBuf> {
    let rest = uri.as_str().strip_prefix("file://")?;
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Some(PathBuf::from(String::from_utf8(out).ok()?))
}

fn path_to_uri(path: &Path) -> Option<Uri> {
    let path = std::path::absolute(path).ok()?;
    let mut out = String::from("file://");
    for b in path.to_str()?.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units() {
        let text = "a\n€x😀y\n";
        assert_eq!(position_of(text, 2), Position::new(1, 0));
        // `€` is one UTF-16 unit (3 bytes), `😀` two (4 bytes).
        assert_eq!(position_of(text, 5), Position::new(1, 1));
        assert_eq!(position_of(text, 10), Position::new(1, 4));
        assert_eq!(offset_of(text, Position::new(1, 4)), 10);
        assert_eq!(offset_of(text, Position::new(1, 99)), 11);
        assert_eq!(offset_of(text, Position::new(9, 0)), text.len());
    }

    #[test]
    fn uris_and_paths() {
        let uri: Uri = "file:///tmp/a%20b/x.ktplay".parse().unwrap();
        assert_eq!(
            uri_to_path(&uri).unwrap(),
            PathBuf::from("/tmp/a b/x.ktplay")
        );
        assert_eq!(
            path_to_uri(Path::new("/tmp/a b/x.ktplay"))
                .unwrap()
                .as_str(),
            "file:///tmp/a%20b/x.ktplay"
        );
    }
}
