//! The event log: the journal's typed vocabulary, the journal itself, and what people see.
//!
//! | module | what it holds |
//! |---|---|
//! | [`events`] | the journal's typed vocabulary ([`events::RunEvent`]) and its fold into progress |
//! | [`journal`] | the journal (a ConfigMap keyed by the playbook digest, and `--journal FILE`), resume, promotion |
//! | [`output`] | lines for people (spinner on a terminal) or JSON events |

pub(crate) mod events;
pub(crate) mod journal;
pub(crate) mod output;
