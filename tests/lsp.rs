//! `ktplay lsp` through the real binary, spoken to over stdio as an editor does: initialize,
//! didOpen of a file with an error → publishDiagnostics at the error's range, hover and go to
//! definition on the seed playbook, symbols, formatting, didChange, shutdown and exit.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: mpsc::Receiver<Value>,
    next_id: i64,
}

fn read_message(reader: &mut BufReader<ChildStdout>) -> Option<Value> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(n) = line.strip_prefix("Content-Length: ") {
            length = n.parse::<usize>().ok();
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ktplay"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ktplay lsp starts");
        let stdin = child.stdin.take().unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            while let Some(m) = read_message(&mut reader) {
                if tx.send(m).is_err() {
                    break;
                }
            }
        });
        Client {
            child,
            stdin,
            messages,
            next_id: 1,
        }
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    fn next(&mut self) -> Value {
        self.messages
            .recv_timeout(Duration::from_secs(20))
            .expect("the server answers within 20 s")
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let m = self.next();
            if m["id"] == id {
                assert!(m.get("error").is_none(), "{method} failed: {m}");
                return m["result"].clone();
            }
        }
    }

    /// The next publishDiagnostics for `uri`.
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        loop {
            let m = self.next();
            if m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri {
                return m["params"]["diagnostics"].as_array().unwrap().clone();
            }
        }
    }
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The LSP position (0-based line, UTF-16 column) of the `nth` occurrence of `needle`, plus
/// `shift` characters (ASCII text).
fn pos(text: &str, needle: &str, nth: usize, shift: usize) -> Value {
    let offset = text.match_indices(needle).nth(nth).expect(needle).0 + shift;
    let line = text[..offset].matches('\n').count();
    let col = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1);
    json!({"line": line, "character": col})
}

fn range(text: &str, needle: &str, nth: usize, shift: usize, len: usize) -> Value {
    let start = pos(text, needle, nth, shift);
    let end = json!({"line": start["line"], "character": start["character"].as_u64().unwrap() + len as u64});
    json!({"start": start, "end": end})
}

#[test]
fn an_editor_session() {
    let mut c = Client::start();
    let init = c.request(
        "initialize",
        json!({"processId": null, "rootUri": null, "capabilities": {}}),
    );
    let caps = &init["capabilities"];
    assert_eq!(caps["textDocumentSync"], 1, "full sync");
    assert_eq!(caps["hoverProvider"], true);
    assert_eq!(caps["definitionProvider"], true);
    assert_eq!(caps["documentSymbolProvider"], true);
    assert_eq!(caps["documentFormattingProvider"], true);
    assert_eq!(init["serverInfo"]["name"], "ktplay");
    c.notify("initialized", json!({}));

    // A file with an error: the diagnostic lands on the misspelt name.
    let dir = tempfile::tempdir().unwrap();
    let bad_path = dir.path().join("bad.ktplay");
    let bad = "playbook \"p\" {\n  component api {\n    deployment \"a\"\n    image \"x/api\"\n    from 1.4.2\n    to 1.5.0\n  }\n  stage s {\n    rolling apy\n  }\n}\n";
    std::fs::write(&bad_path, bad).unwrap();
    let bad_uri = uri(&bad_path);
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": bad_uri, "languageId": "ktplay", "version": 1, "text": bad}}),
    );
    let diags = c.diagnostics(&bad_uri);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0]["code"], "ktplay::check::unknown_component");
    assert_eq!(diags[0]["severity"], 1);
    assert_eq!(diags[0]["source"], "ktplay");
    assert_eq!(diags[0]["range"], range(bad, "apy", 0, 0, 3));
    assert_eq!(
        diags[0]["message"],
        "unknown component `apy`\nhelp: did you mean `api`?"
    );

    // Fixed by an edit (full text): the diagnostics are cleared.
    let fixed = bad.replace("apy", "api");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": bad_uri, "version": 2}, "contentChanges": [{"text": fixed}]}),
    );
    assert!(c.diagnostics(&bad_uri).is_empty());

    // The seed playbook: clean, with hover and definitions.
    let seed_path = root().join("playbooks/keeptrusts-1.5.ktplay");
    let seed = std::fs::read_to_string(&seed_path).unwrap();
    let seed_uri = uri(&seed_path);
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": seed_uri, "languageId": "ktplay", "version": 1, "text": seed}}),
    );
    assert!(
        c.diagnostics(&seed_uri).is_empty(),
        "the seed playbook is clean"
    );

    // Hover on `gateway` in `canary gateway`: its versions and the matrix rows.
    let at = |needle: &str, nth: usize, shift: usize| json!({"textDocument": {"uri": seed_uri}, "position": pos(&seed, needle, nth, shift)});
    let hover = c.request("textDocument/hover", at("canary gateway", 0, 9));
    assert_eq!(hover["range"], range(&seed, "canary gateway", 0, 7, 7));
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(
        text.starts_with("**component `gateway`**: 1.4.1 → 1.5.0"),
        "{text}"
    );
    assert!(text.contains("matrix `keeptrusts`"), "{text}");
    assert!(
        text.contains("beside api to 1.5.0 (row `api 1.5.x`): gateway 1.4.x - 1.5.x"),
        "{text}"
    );

    // Hover on a secret let: the variable, never a value.
    let hover = c.request("textDocument/hover", at("bearer admin_key", 0, 8));
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(text.contains("read from `$ADMIN_TOKEN`"), "{text}");
    // Hover on an env let: its value in each env.
    let hover = c.request("textDocument/hover", at("${api_url}", 0, 3));
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(
        text.contains("- staging: `https://api.staging.example.com`"),
        "{text}"
    );
    assert!(
        text.contains("- production: `https://api.example.com`"),
        "{text}"
    );
    // Hover on a statement keyword.
    let hover = c.request("textDocument/hover", at("canary gateway", 0, 2));
    assert!(hover["contents"]["value"]
        .as_str()
        .unwrap()
        .starts_with("**canary C weight P%**"));

    // Definition of `gateway` in `canary gateway`: the component's name.
    let def = c.request("textDocument/definition", at("canary gateway", 0, 9));
    assert_eq!(def["uri"], seed_uri);
    assert_eq!(def["range"], range(&seed, "component gateway", 0, 10, 7));
    // Of `${api_url}`: one per env.
    let def = c.request("textDocument/definition", at("${api_url}", 0, 3));
    let defs = def.as_array().expect("two definitions");
    assert_eq!(defs.len(), 2);
    assert_eq!(defs[0]["range"], range(&seed, "let api_url", 0, 4, 7));
    assert_eq!(defs[1]["range"], range(&seed, "let api_url", 1, 4, 7));
    // Of `after staging`: the env.
    let def = c.request("textDocument/definition", at("after staging", 0, 7));
    assert_eq!(def["range"], range(&seed, "  env staging {", 0, 6, 7));
    // Of a hook file: the file.
    let def = c.request(
        "textDocument/definition",
        at("hooks/backup_recent.rhai", 0, 3),
    );
    assert_eq!(
        def["uri"],
        uri(&root().join("playbooks/hooks/backup_recent.rhai"))
    );

    // The outline.
    let symbols = c.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": seed_uri}}),
    );
    let playbook = &symbols[0];
    assert_eq!(playbook["name"], "keeptrusts-1.5");
    let children: Vec<&str> = playbook["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for name in [
        "api",
        "gateway",
        "console",
        "workers",
        "staging",
        "production",
        "gateways",
    ] {
        assert!(children.contains(&name), "{name} not in {children:?}");
    }

    // Formatting: the formatted seed needs no edit; an unformatted file one whole-text edit.
    let edits = c.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": seed_uri}, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    assert_eq!(edits, json!([]));
    let one_line = fixed.replace('\n', " ");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": bad_uri, "version": 3}, "contentChanges": [{"text": one_line}]}),
    );
    c.diagnostics(&bad_uri);
    let edits = c.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": bad_uri}, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    assert_eq!(edits[0]["newText"], fixed);

    // A request about a document that is not open is an error, not a crash.
    c.send(json!({"jsonrpc": "2.0", "id": 99, "method": "textDocument/hover",
        "params": {"textDocument": {"uri": "file:///nowhere.ktplay"}, "position": {"line": 0, "character": 0}}}));
    loop {
        let m = c.next();
        if m["id"] == 99 {
            assert_eq!(m["error"]["code"], -32602, "{m}");
            break;
        }
    }

    c.request("shutdown", Value::Null);
    c.notify("exit", Value::Null);
    let status = c.child.wait().unwrap();
    assert!(status.success(), "exit after shutdown is exit 0: {status}");
}

#[test]
fn problems_in_a_hook_file_are_published_for_that_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("hooks")).unwrap();
    let hook = dir.path().join("hooks/broken.rhai");
    std::fs::write(&hook, "let x = ;\n").unwrap();
    std::fs::write(dir.path().join("hooks/fine.rhai"), "true\n").unwrap();
    let path = dir.path().join("p.ktplay");
    let text = |hook: &str| {
        format!(
            "playbook \"p\" {{\n  component api {{\n    deployment \"a\"\n    image \"x/api\"\n    from 1.4.2\n    to 1.5.0\n  }}\n  stage s {{\n    rolling api\n    guard hook \"hooks/{hook}\"\n  }}\n}}\n"
        )
    };
    let mut c = Client::start();
    c.request(
        "initialize",
        json!({"processId": null, "rootUri": null, "capabilities": {}}),
    );
    c.notify("initialized", json!({}));
    let doc = uri(&path);
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": doc, "languageId": "ktplay", "version": 1, "text": text("broken.rhai")}}),
    );
    assert!(
        c.diagnostics(&doc).is_empty(),
        "the playbook itself is fine"
    );
    let in_hook = c.diagnostics(&uri(&hook));
    assert_eq!(in_hook.len(), 1, "{in_hook:?}");
    assert_eq!(in_hook[0]["code"], "ktplay::script::syntax");
    assert_eq!(in_hook[0]["range"]["start"]["line"], 0, "{in_hook:?}");
    // Pointing at a good hook clears the broken one's diagnostics.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": doc, "version": 2}, "contentChanges": [{"text": text("fine.rhai")}]}),
    );
    assert!(c.diagnostics(&doc).is_empty());
    assert!(c.diagnostics(&uri(&hook)).is_empty(), "cleared");
    c.request("shutdown", Value::Null);
    c.notify("exit", Value::Null);
    assert!(c.child.wait().unwrap().success());
}

impl Client {
    fn raw(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).unwrap();
        self.stdin.flush().unwrap();
    }

    fn initialized() -> Client {
        let mut c = Client::start();
        c.request(
            "initialize",
            json!({"processId": null, "rootUri": null, "capabilities": {}}),
        );
        c.notify("initialized", json!({}));
        c
    }
}

/// Each malformed message gets a JSON-RPC error with `id: null` (parse error -32700, or invalid
/// request -32600 for a batch) and the server goes on: the request after it is answered, and
/// `shutdown` + `exit` still end it with 0. Before, a `Content-Length` of u64::MAX panicked,
/// 4,000,000,000 aborted on allocation, and every other case ended the server.
#[test]
fn malformed_messages_are_answered_and_the_server_keeps_serving() {
    let ping = |id: i64| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "textDocument/documentSymbol",
            "params": {"textDocument": {"uri": "file:///nowhere.ktplay"}}})
        .to_string();
        format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    };
    let framed = |body: &[u8]| {
        [
            format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
            body,
        ]
        .concat()
    };
    let body = r#"{"jsonrpc":"2.0","method":"$/x"}"#;
    let cases: Vec<(&str, Vec<u8>, i64)> = vec![
        (
            "Content-Length u64::MAX",
            format!("Content-Length: 18446744073709551615\r\n\r\n{body}").into_bytes(),
            -32700,
        ),
        (
            "Content-Length 4000000000",
            format!("Content-Length: 4000000000\r\n\r\n{body}").into_bytes(),
            -32700,
        ),
        ("bad JSON", framed(b"{\"jsonrpc\": 2.0,,}"), -32700),
        ("invalid UTF-8", framed(&[b'"', 0xff, 0xfe, b'"']), -32700),
        (
            "a batch array",
            framed(br#"[{"jsonrpc":"2.0","id":5,"method":"shutdown"}]"#),
            -32600,
        ),
        (
            "no Content-Length",
            format!("Content-Type: application/json\r\n\r\n{body}").into_bytes(),
            -32700,
        ),
        (
            "a negative length",
            format!("Content-Length: -1\r\n\r\n{body}").into_bytes(),
            -32700,
        ),
    ];
    let mut c = Client::initialized();
    for (i, (what, bytes, code)) in cases.into_iter().enumerate() {
        c.raw(&bytes);
        let id = 100 + i as i64;
        c.raw(&ping(id));
        let error = c.next();
        assert_eq!(error["id"], Value::Null, "{what}: {error}");
        assert_eq!(error["error"]["code"], code, "{what}: {error}");
        let answer = c.next();
        assert_eq!(
            answer["id"], id,
            "{what}: the next request is answered: {answer}"
        );
        assert_eq!(
            answer["error"]["code"], -32602,
            "{what}: not open: {answer}"
        );
    }
    // LF-only header lines are read as the protocol's CRLF ones.
    let body = json!({"jsonrpc": "2.0", "id": 200, "method": "textDocument/documentSymbol",
        "params": {"textDocument": {"uri": "file:///nowhere.ktplay"}}})
    .to_string();
    c.raw(format!("Content-Length: {}\n\n{body}", body.len()).as_bytes());
    let answer = c.next();
    assert_eq!(answer["id"], 200, "LF-only headers: {answer}");
    assert!(c.child.try_wait().unwrap().is_none(), "still running");
    c.request("shutdown", Value::Null);
    c.notify("exit", Value::Null);
    let status = c.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
}

/// `exit` without `shutdown` first ends the server with 1 (the protocol's rule), promptly.
#[test]
fn exit_before_shutdown_exits_1() {
    let mut c = Client::initialized();
    c.notify("exit", Value::Null);
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = c.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the server did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "{status}");
}
