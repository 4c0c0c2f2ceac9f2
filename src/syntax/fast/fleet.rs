//! The fast path for `fleet` items.

use super::Fast;
use crate::span::Spanned;
use crate::syntax::ast::*;
use crate::syntax::parser::is_ident;

impl Fast<'_> {
    pub(super) fn fleet(&mut self) -> Option<FleetDecl> {
        let start = self.pos;
        self.keyword("fleet")?;
        let name = self.string()?;
        self.punct(b'{')?;
        let mut entries = Vec::new();
        while !self.eat(b'}') {
            let estart = self.pos_after_skip();
            let entry = match self.word()? {
                "playbook" => {
                    self.bump_word();
                    let file = self.string()?;
                    let name = if self.word() == Some("name") {
                        self.bump_word();
                        Some(self.string()?)
                    } else {
                        None
                    };
                    FleetEntry::Playbook { file, name }
                }
                "env" => {
                    self.bump_word();
                    FleetEntry::Env(self.ident()?)
                }
                "on" => {
                    self.bump_word();
                    self.keyword("failure")?;
                    match self.word()? {
                        "stop" => {
                            self.bump_word();
                            FleetEntry::OnFailure(FleetPolicy::Stop)
                        }
                        "rollback" => {
                            self.bump_word();
                            self.keyword("fleet")?;
                            FleetEntry::OnFailure(FleetPolicy::RollbackFleet)
                        }
                        _ => return None,
                    }
                }
                "shared" => {
                    self.bump_word();
                    let comp = self.ident()?;
                    self.keyword("in")?;
                    let cluster = self.ident()?;
                    FleetEntry::Shared { comp, cluster }
                }
                "cluster" => FleetEntry::Cluster(self.cluster()?),
                "wave" => FleetEntry::Wave(self.wave()?),
                _ => return None,
            };
            entries.push(Spanned::new(entry, self.span(estart, self.end)));
        }
        Some(FleetDecl {
            name,
            entries,
            span: self.span(start, self.end),
        })
    }

    fn cluster(&mut self) -> Option<ClusterDecl> {
        self.keyword("cluster")?;
        let name = self.ident()?;
        self.punct(b'{')?;
        let mut entries = Vec::new();
        while !self.eat(b'}') {
            let estart = self.pos_after_skip();
            let entry = match self.word()? {
                "context" => {
                    self.bump_word();
                    ClusterEntry::Context(self.string()?)
                }
                "env" => {
                    self.bump_word();
                    ClusterEntry::Env(self.ident()?)
                }
                "let" => ClusterEntry::Let(self.let_decl()?),
                _ => return None,
            };
            entries.push(Spanned::new(entry, self.span(estart, self.end)));
        }
        Some(ClusterDecl { name, entries })
    }

    fn wave(&mut self) -> Option<WaveDecl> {
        self.keyword("wave")?;
        let name = self.ident()?;
        self.punct(b'{')?;
        let mut entries = Vec::new();
        while !self.eat(b'}') {
            let estart = self.pos_after_skip();
            let entry = match self.word()? {
                "clusters" => {
                    self.bump_word();
                    let mut names = Vec::new();
                    while let Some(w) = self.word() {
                        if matches!(w, "clusters" | "parallel" | "soak" | "approve") || !is_ident(w)
                        {
                            break;
                        }
                        names.push(self.ident()?);
                    }
                    if names.is_empty() {
                        return None;
                    }
                    WaveEntry::Clusters(names)
                }
                "parallel" => {
                    self.bump_word();
                    WaveEntry::Parallel(self.value()?)
                }
                "soak" => {
                    self.bump_word();
                    let time = self.value()?;
                    let guards = if self.eat(b'{') {
                        Some(self.stmts_until_close()?)
                    } else {
                        None
                    };
                    WaveEntry::Soak { time, guards }
                }
                "approve" => {
                    self.bump_word();
                    WaveEntry::Approve(self.string()?)
                }
                _ => return None,
            };
            entries.push(Spanned::new(entry, self.span(estart, self.end)));
        }
        Some(WaveDecl { name, entries })
    }
}
