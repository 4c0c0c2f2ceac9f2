//! Which playbook of a checked file, and which env: what `run`, `rehearse`, `plan` and `status`
//! are asked for on the command line, as a library function with a typed error.

use super::Checked;
use crate::matrix::Matrix;
use crate::program::{Env, Playbook};
use crate::resolve::{Live, Scope};

/// A playbook of a checked file, and one of its envs.
#[derive(Clone, Copy)]
pub struct Selection<'c> {
    /// Index into [`Checked::playbooks`].
    pub index: usize,
    pub playbook: &'c Playbook,
    /// `None` only for a playbook without envs.
    pub env: Option<&'c Env>,
    /// The checked file it comes from.
    pub checked: &'c Checked,
    /// The matrix the playbook names, as found in its file's scope.
    pub matrix: Option<&'c Matrix>,
}

impl std::fmt::Debug for Selection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection")
            .field("index", &self.index)
            .field("playbook", &self.playbook.name)
            .field("env", &self.env.map(|e| &e.name))
            .finish()
    }
}

impl Selection<'_> {
    /// The namespace the env says (or the playbook's default).
    pub fn namespace(&self) -> String {
        Scope::new(self.playbook, self.env, &Live::default())
            .namespace()
            .to_string()
    }
}

/// Why the selection cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("it holds no playbook")]
    NoPlaybook,
    #[error("no playbook \"{name}\"; it holds: {}", have.join(", "))]
    UnknownPlaybook { name: String, have: Vec<String> },
    #[error("it holds several playbooks; choose one with --playbook: {}", have.join(", "))]
    SeveralPlaybooks { have: Vec<String> },
    #[error("playbook \"{playbook}\" has no env `{name}`{}; its envs: {}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default(), have.join(", "))]
    UnknownEnv {
        playbook: String,
        name: String,
        hint: Option<String>,
        have: Vec<String>,
    },
    #[error("choose an env with --env: {}", have.join(", "))]
    EnvRequired { have: Vec<String> },
}

impl Checked {
    /// The playbook named (or the only one), and the env named (required when it has envs).
    pub fn select(
        &self,
        playbook: Option<&str>,
        env: Option<&str>,
    ) -> Result<Selection<'_>, SelectError> {
        let index = self.select_playbook(playbook)?;
        let pb = &self.playbooks[index].1;
        Ok(self.selection(index, select_env(pb, env)?))
    }

    /// Playbook `index` with `env` (already chosen).
    pub fn selection<'c>(&'c self, index: usize, env: Option<&'c Env>) -> Selection<'c> {
        let playbook = &self.playbooks[index].1;
        Selection {
            index,
            playbook,
            env,
            checked: self,
            matrix: self.matrix_of(playbook),
        }
    }

    /// The matrix a playbook names, as found in the scopes of the checked files.
    pub fn matrix_of(&self, pb: &Playbook) -> Option<&Matrix> {
        let name = pb.matrix.as_deref()?;
        self.scopes.iter().find_map(|s| s.get(name))
    }

    /// The index of the playbook named, or of the only one.
    pub fn select_playbook(&self, name: Option<&str>) -> Result<usize, SelectError> {
        let have =
            || -> Vec<String> { self.playbooks.iter().map(|(_, p)| p.name.clone()).collect() };
        match name {
            _ if self.playbooks.is_empty() => Err(SelectError::NoPlaybook),
            Some(n) => self
                .playbooks
                .iter()
                .position(|(_, p)| p.name == n)
                .ok_or_else(|| SelectError::UnknownPlaybook {
                    name: n.to_string(),
                    have: have(),
                }),
            None if self.playbooks.len() == 1 => Ok(0),
            None => Err(SelectError::SeveralPlaybooks { have: have() }),
        }
    }
}

/// The env named; `None` is fine only for a playbook without envs.
pub(crate) fn select_env<'p>(
    pb: &'p Playbook,
    env: Option<&str>,
) -> Result<Option<&'p Env>, SelectError> {
    let have = || -> Vec<String> { pb.envs.iter().map(|e| e.name.clone()).collect() };
    match env {
        Some(e) => pb.env(e).map(Some).ok_or_else(|| SelectError::UnknownEnv {
            playbook: pb.name.clone(),
            name: e.to_string(),
            hint: super::names::did_you_mean(e, pb.envs.iter().map(|e| e.name.as_str())),
            have: have(),
        }),
        None if pb.envs.is_empty() => Ok(None),
        None => Err(SelectError::EnvRequired { have: have() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(src: &str) -> Checked {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.ktplay");
        std::fs::write(&p, src).unwrap();
        crate::check::check_paths(&[p]).unwrap()
    }

    const TWO: &str = r#"
playbook "a" {
  component api { deployment "api" image "acme/api" from 1.4.0 to 1.5.0 }
  env staging { namespace "s" }
  env production { namespace "p" }
  stage s { rolling api }
}
playbook "b" {
  component api { deployment "api" image "acme/api" from 1.4.0 to 1.5.0 }
  stage s { rolling api }
}
"#;

    #[test]
    fn picks_by_name_and_env() {
        let c = checked(TWO);
        let s = c.select(Some("a"), Some("production")).unwrap();
        assert_eq!((s.index, s.playbook.name.as_str()), (0, "a"));
        assert_eq!(s.env.map(|e| e.name.as_str()), Some("production"));
        // a playbook without envs needs none
        let s = c.select(Some("b"), None).unwrap();
        assert!(s.env.is_none());
    }

    #[test]
    fn says_what_is_wrong() {
        let c = checked(TWO);
        assert_eq!(
            c.select(None, None).unwrap_err(),
            SelectError::SeveralPlaybooks {
                have: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            c.select(Some("c"), None).unwrap_err().to_string(),
            "no playbook \"c\"; it holds: a, b"
        );
        assert_eq!(
            c.select(Some("a"), None).unwrap_err().to_string(),
            "choose an env with --env: staging, production"
        );
        assert_eq!(
            c.select(Some("a"), Some("stagin")).unwrap_err().to_string(),
            "playbook \"a\" has no env `stagin` (did you mean `staging`?); its envs: staging, production"
        );
        assert_eq!(
            checked("").select(None, None).unwrap_err(),
            SelectError::NoPlaybook
        );
    }
}
