//! What guards need from the run ([`GuardEnv`]): the scope of lets, the cluster, the HTTP
//! client, the URL routing, Ctrl-C, the redactor, and inside a canary its [`Tally`].

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::client::UrlRewrite;
use super::tally::Tally;
use crate::program::Playbook;
use crate::resolve::{Mode, Scope};
use crate::run::kube::Cluster;
use crate::run::{Cancel, Redactor};

/// What guards need from the run.
pub struct GuardEnv<'a> {
    pub scope: &'a Scope<'a>,
    pub playbook: Arc<Playbook>,
    pub cluster: &'a Cluster,
    pub http: &'a reqwest::Client,
    pub rewrite: &'a UrlRewrite,
    pub cancel: &'a Cancel,
    pub redact: &'a Redactor,
    /// The stage being run (scripts see it as `stage`).
    pub stage: String,
    /// Inside a canary: its metric guards' evaluations so far (`failure_limit` spans them).
    pub tally: Option<&'a Tally>,
}

impl GuardEnv<'_> {
    /// Every let this env can resolve, as sent.
    pub fn vars(&self) -> Map<String, Value> {
        let mut names: Vec<&str> = self.playbook.lets.iter().map(|l| l.name.as_str()).collect();
        if let Some(e) = self.scope.env {
            names.extend(e.lets.iter().map(|l| l.name.as_str()));
        }
        let mut out = Map::new();
        for n in names {
            if let Ok(v) = self.scope.let_value(n, Mode::Real) {
                let v = if self.scope.is_secret(n) {
                    v
                } else {
                    self.rewrite.apply(&v)
                };
                out.insert(n.to_string(), json!(v));
            }
        }
        out
    }
    /// Names of the lets this env can resolve that are secrets: scripts get them only through
    /// `secret()`.
    pub fn secret_names(&self) -> Vec<String> {
        self.playbook
            .lets
            .iter()
            .map(|l| l.name.as_str())
            .chain(
                self.scope
                    .env
                    .into_iter()
                    .flat_map(|e| e.lets.iter().map(|l| l.name.as_str())),
            )
            .filter(|n| self.scope.is_secret(n))
            .map(str::to_string)
            .collect()
    }
}
