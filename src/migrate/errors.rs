//! The diagnostics of migrations: their files, the linters' findings, the schema the
//! previous version meets on a rollback, and the database check.

use miette::{LabeledSpan, SourceSpan};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum MigrateError {
    #[error("migration path `{path}`: {reason}")]
    #[diagnostic(
        code(ktplay::migrations::file),
        help("migration files are .sql files inside the playbook's tree, named by release (`V1_5_0__add_col.sql`, `1.5.0/add_col.sql`) or listed with `release VERSION \"file\"…`")
    )]
    File {
        path: String,
        reason: String,
        #[label("this path")]
        span: SourceSpan,
    },

    #[error("migration `{file}` of {comp} {version} {what}: {comp} {from} cannot run against the schema it leaves, and the component claims `migrations backward_compatible`")]
    #[diagnostic(code(ktplay::migrations::breaking), help("{help}"))]
    Breaking {
        file: String,
        comp: String,
        version: String,
        from: String,
        what: &'static str,
        help: String,
        #[label("{rule}")]
        span: SourceSpan,
        rule: &'static str,
    },

    #[error("migration `{file}` of {comp} {version} builds an index without CONCURRENTLY: writes to the table wait until it is built")]
    #[diagnostic(code(ktplay::migrations::lock), severity(Warning), help("{help}"))]
    Lock {
        file: String,
        comp: String,
        version: String,
        help: &'static str,
        #[label("index_lock")]
        span: SourceSpan,
    },

    #[error("migration `{file}` cannot be read as PostgreSQL: {reason}")]
    #[diagnostic(
        code(ktplay::migrations::sql),
        help("fix the statement; the statements after it in this file were not linted")
    )]
    Sql {
        file: String,
        reason: String,
        #[label("here")]
        span: SourceSpan,
    },

    #[error("{message}")]
    #[diagnostic(code(ktplay::compat::schema_rollback))]
    SchemaRollback {
        message: String,
        #[label(collection)]
        labels: Vec<LabeledSpan>,
        #[help]
        help: String,
    },

    #[error("{message}")]
    #[diagnostic(code(ktplay::database::old_query))]
    OldQuery {
        message: String,
        #[label(collection)]
        labels: Vec<LabeledSpan>,
        #[help]
        help: String,
    },

    #[error("the database check could not run: {reason}")]
    #[diagnostic(code(ktplay::database::unavailable))]
    Unavailable {
        reason: String,
        #[label("migrations of this component")]
        span: SourceSpan,
    },
}

/// What a rule does, in the message's words.
pub fn what(rule: super::rules::Rule) -> &'static str {
    use super::rules::Rule::*;
    match rule {
        DropColumn => "drops a column",
        DropTable => "drops a table",
        RenameColumn => "renames a column",
        RenameTable => "renames a table",
        TypeChange => "changes a column's type",
        SetNotNull => "sets a column NOT NULL",
        RequiredColumn => "adds a NOT NULL column without a default",
        EnumValue => "adds an enum value",
        IndexLock => "builds an index without CONCURRENTLY",
        Syntax => "cannot be read",
    }
}
