// The ktplay extension: highlighting comes from the TextMate grammar (package.json); this starts
// `ktplay lsp` (diagnostics, hover, go to definition, outline, formatting) for .ktplay files.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("ktplay").get("path") || "ktplay";
  const server = { command, args: ["lsp"] };
  client = new LanguageClient(
    "ktplay",
    "ktplay",
    { run: server, debug: server },
    { documentSelector: [{ scheme: "file", language: "ktplay" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
