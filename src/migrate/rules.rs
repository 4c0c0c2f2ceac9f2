//! The rules both linters are mapped onto, and the built-in linter (`sqlparser`) used when
//! `squawk` is not installed. Only the rules that matter to a rollback, and the one long lock
//! of a zero-downtime release, are built in.

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, AlterTypeOperation, ColumnOption, ObjectType,
    Statement,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::split::Stmt;

/// What a migration statement does that the previous version may not survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    DropColumn,
    DropTable,
    RenameColumn,
    RenameTable,
    TypeChange,
    SetNotNull,
    /// `ADD COLUMN … NOT NULL` without a default: the old code's inserts fail.
    RequiredColumn,
    /// `ALTER TYPE … ADD VALUE`: rows the old code cannot read.
    EnumValue,
    /// `CREATE INDEX` without `CONCURRENTLY`: writes wait for the whole build.
    IndexLock,
    /// The linter could not read the statement.
    Syntax,
}

impl Rule {
    /// The rule's name in ktplay's diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            Rule::DropColumn => "drop_column",
            Rule::DropTable => "drop_table",
            Rule::RenameColumn => "rename_column",
            Rule::RenameTable => "rename_table",
            Rule::TypeChange => "type_change",
            Rule::SetNotNull => "set_not_null",
            Rule::RequiredColumn => "required_column",
            Rule::EnumValue => "enum_value",
            Rule::IndexLock => "index_lock",
            Rule::Syntax => "syntax",
        }
    }

    /// The previous version may fail against the schema this leaves.
    pub fn breaks_previous(self) -> bool {
        !matches!(self, Rule::IndexLock | Rule::Syntax)
    }

    /// squawk's rule for it (`None`: ignored — robustness and style rules say nothing about
    /// the previous version).
    pub fn from_squawk(rule: &str) -> Option<Rule> {
        Some(match rule {
            "ban-drop-column" => Rule::DropColumn,
            "ban-drop-table" => Rule::DropTable,
            "renaming-column" => Rule::RenameColumn,
            "renaming-table" => Rule::RenameTable,
            "changing-column-type" => Rule::TypeChange,
            "adding-not-nullable-field" => Rule::SetNotNull,
            "adding-required-field" => Rule::RequiredColumn,
            "require-concurrent-index-creation" => Rule::IndexLock,
            "syntax-error" => Rule::Syntax,
            _ => return None,
        })
    }

    /// The two-phase way to make the change safe.
    pub fn two_phase(self) -> &'static str {
        match self {
            Rule::DropColumn => "expand, then contract: in this release stop reading and writing the column (the old version still may); drop it in the next release, once no running version uses it",
            Rule::DropTable => "expand, then contract: stop using the table in this release; drop it in the next one",
            Rule::RenameColumn => "expand, then contract: add the new column and write both in this release (backfill the old rows); read only the new one and drop the old in the next",
            Rule::RenameTable => "expand, then contract: create the new table (or a view under the old name) in this release and write both; drop the old name in the next",
            Rule::TypeChange => "expand, then contract: add a column of the new type and write both in this release (backfill); switch reads and drop the old column in the next",
            Rule::SetNotNull => "expand, then contract: add a `CHECK (col IS NOT NULL) NOT VALID` constraint and backfill in this release; `VALIDATE` it and set NOT NULL in the next, once no running version writes NULL",
            Rule::RequiredColumn => "add the column nullable or with a DEFAULT in this release, so the old version's inserts still work; make it required in the next",
            Rule::EnumValue => "ship code that reads the new value first (this release adds no value); add the value in the next release",
            Rule::IndexLock => "write `CREATE INDEX CONCURRENTLY` (outside a transaction), so writes go on while the index is built",
            Rule::Syntax => "fix the statement; nothing after it in this file was linted",
        }
    }
}

/// A finding of either linter in one file: the statement it is about and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub rule: Rule,
    pub detail: String,
}

/// The built-in rules over the statements of one file.
pub fn lint(src: &str, stmts: &[Stmt]) -> Vec<Finding> {
    let mut out = Vec::new();
    for s in stmts {
        let text = s.text(src);
        let mut at = |rule, detail: String| {
            out.push(Finding {
                start: s.start,
                end: s.end,
                rule,
                detail,
            })
        };
        let parsed = match Parser::parse_sql(&PostgreSqlDialect {}, text) {
            Ok(p) => p,
            Err(e) => {
                at(Rule::Syntax, e.to_string());
                // As squawk: nothing after a statement it cannot read.
                break;
            }
        };
        for st in parsed {
            for (rule, detail) in classify(&st) {
                at(rule, detail);
            }
        }
    }
    out
}

fn classify(st: &Statement) -> Vec<(Rule, String)> {
    let mut out = Vec::new();
    match st {
        Statement::AlterTable(at) => {
            let table = &at.name;
            for op in &at.operations {
                match op {
                    AlterTableOperation::DropColumn { column_names, .. } => {
                        for c in column_names {
                            out.push((Rule::DropColumn, format!("drops column {table}.{c}")));
                        }
                    }
                    AlterTableOperation::RenameColumn {
                        old_column_name,
                        new_column_name,
                    } => out.push((
                        Rule::RenameColumn,
                        format!("renames column {table}.{old_column_name} to {new_column_name}"),
                    )),
                    AlterTableOperation::RenameTable { .. } => {
                        out.push((Rule::RenameTable, format!("renames table {table}")))
                    }
                    AlterTableOperation::AlterColumn { column_name, op } => match op {
                        AlterColumnOperation::SetNotNull => out.push((
                            Rule::SetNotNull,
                            format!("sets {table}.{column_name} NOT NULL"),
                        )),
                        AlterColumnOperation::SetDataType { data_type, .. } => out.push((
                            Rule::TypeChange,
                            format!("changes the type of {table}.{column_name} to {data_type}"),
                        )),
                        _ => {}
                    },
                    AlterTableOperation::AddColumn { column_def, .. } => {
                        let has = |f: fn(&ColumnOption) -> bool| {
                            column_def.options.iter().any(|o| f(&o.option))
                        };
                        let not_null = has(|o| matches!(o, ColumnOption::NotNull));
                        let default = has(|o| matches!(o, ColumnOption::Default(_)));
                        if not_null && !default {
                            out.push((
                                Rule::RequiredColumn,
                                format!(
                                    "adds column {table}.{} NOT NULL without a default",
                                    column_def.name
                                ),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        Statement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => {
            for n in names {
                out.push((Rule::DropTable, format!("drops table {n}")));
            }
        }
        Statement::CreateIndex(ci) if !ci.concurrently => out.push((
            Rule::IndexLock,
            format!(
                "builds an index on {} without CONCURRENTLY: writes to it wait until it is built",
                ci.table_name
            ),
        )),
        Statement::AlterType(t) => {
            if let AlterTypeOperation::AddValue(_) = &t.operation {
                out.push((
                    Rule::EnumValue,
                    format!("adds a value to the enum {}", t.name),
                ));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::split::statements;

    fn rules(src: &str) -> Vec<Rule> {
        lint(src, &statements(src)).iter().map(|f| f.rule).collect()
    }

    #[test]
    fn each_rule_is_found_and_safe_changes_are_not() {
        assert_eq!(
            rules("ALTER TABLE u DROP COLUMN e;"),
            vec![Rule::DropColumn]
        );
        assert_eq!(rules("DROP TABLE old;"), vec![Rule::DropTable]);
        assert_eq!(
            rules("ALTER TABLE u RENAME COLUMN a TO b;"),
            vec![Rule::RenameColumn]
        );
        assert_eq!(rules("ALTER TABLE u RENAME TO v;"), vec![Rule::RenameTable]);
        assert_eq!(
            rules("ALTER TABLE u ALTER COLUMN a TYPE bigint;"),
            vec![Rule::TypeChange]
        );
        assert_eq!(
            rules("ALTER TABLE u ALTER COLUMN a SET NOT NULL;"),
            vec![Rule::SetNotNull]
        );
        assert_eq!(
            rules("ALTER TABLE u ADD COLUMN a int NOT NULL;"),
            vec![Rule::RequiredColumn]
        );
        assert_eq!(
            rules("ALTER TYPE mood ADD VALUE 'meh';"),
            vec![Rule::EnumValue]
        );
        assert_eq!(rules("CREATE INDEX i ON u (a);"), vec![Rule::IndexLock]);
        assert!(rules("ALTER TABLE u ADD COLUMN a text;").is_empty());
        assert!(rules("ALTER TABLE u ADD COLUMN a text NOT NULL DEFAULT 'x';").is_empty());
        assert!(rules("CREATE INDEX CONCURRENTLY i ON u (a);").is_empty());
        assert!(rules("CREATE TABLE t (id bigint PRIMARY KEY);").is_empty());
    }

    #[test]
    fn a_statement_it_cannot_read_stops_the_file() {
        let src = "ALTER TABLE u ADD COLUMN;\nDROP TABLE x;";
        assert_eq!(rules(src), vec![Rule::Syntax]);
    }
}
