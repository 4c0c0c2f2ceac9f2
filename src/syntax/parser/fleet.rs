//! The builder for `fleet` items (see `FleetDecl`).

use pest::iterators::Pair;

use super::{Builder, Rule};
use crate::span::Spanned;
use crate::syntax::ast::{
    ClusterDecl, ClusterEntry, FleetDecl, FleetEntry, FleetPolicy, WaveDecl, WaveEntry,
};

impl Builder {
    pub(super) fn fleet(&mut self, p: Pair<Rule>) -> FleetDecl {
        let span = self.span(&p);
        let mut it = self.args(p);
        let name = self.string(it.next().expect("fleet name"));
        let mut entries = Vec::new();
        for e in it {
            let espan = self.span(&e);
            let entry = match e.as_rule() {
                Rule::t_playbook => {
                    let mut a = self.args(e);
                    let file = self.string(a.next().expect("playbook file"));
                    let name = a.next().map(|n| self.string(n));
                    FleetEntry::Playbook { file, name }
                }
                Rule::t_env => FleetEntry::Env(self.ident(self.args(e).next().expect("env"))),
                Rule::f_on_failure => {
                    let policy = self.args(e).next().expect("policy");
                    FleetEntry::OnFailure(match policy.as_rule() {
                        Rule::f_stop => FleetPolicy::Stop,
                        _ => FleetPolicy::RollbackFleet,
                    })
                }
                Rule::f_shared => {
                    let mut a = self.args(e);
                    let comp = self.ident(a.next().expect("component"));
                    let cluster = self.ident(a.next().expect("cluster"));
                    FleetEntry::Shared { comp, cluster }
                }
                Rule::f_cluster => FleetEntry::Cluster(self.cluster(e)),
                Rule::f_wave => FleetEntry::Wave(self.wave(e)),
                r => unreachable!("fleet entry {r:?}"),
            };
            entries.push(Spanned::new(entry, espan));
        }
        FleetDecl {
            name,
            entries,
            span,
        }
    }

    fn cluster(&mut self, p: Pair<Rule>) -> ClusterDecl {
        let mut it = self.args(p);
        let name = self.ident(it.next().expect("cluster name"));
        let mut entries = Vec::new();
        for e in it {
            let espan = self.span(&e);
            let entry = match e.as_rule() {
                Rule::e_context => {
                    ClusterEntry::Context(self.string(self.args(e).next().expect("context")))
                }
                Rule::t_env => ClusterEntry::Env(self.ident(self.args(e).next().expect("env"))),
                Rule::let_item => ClusterEntry::Let(self.let_decl(e)),
                r => unreachable!("cluster entry {r:?}"),
            };
            entries.push(Spanned::new(entry, espan));
        }
        ClusterDecl { name, entries }
    }

    fn wave(&mut self, p: Pair<Rule>) -> WaveDecl {
        let mut it = self.args(p);
        let name = self.ident(it.next().expect("wave name"));
        let mut entries = Vec::new();
        for e in it {
            let espan = self.span(&e);
            let entry = match e.as_rule() {
                Rule::w_clusters => {
                    WaveEntry::Clusters(self.args(e).map(|q| self.ident(q)).collect())
                }
                Rule::w_parallel => {
                    WaveEntry::Parallel(self.value(self.args(e).next().expect("parallel")))
                }
                Rule::w_soak => {
                    let mut a = self.args(e);
                    let time = self.value(a.next().expect("soak time"));
                    let guards = a.next().map(|b| self.stmts(self.args(b)));
                    WaveEntry::Soak { time, guards }
                }
                Rule::s_approve => {
                    WaveEntry::Approve(self.string(self.args(e).next().expect("question")))
                }
                r => unreachable!("wave entry {r:?}"),
            };
            entries.push(Spanned::new(entry, espan));
        }
        WaveDecl { name, entries }
    }
}
