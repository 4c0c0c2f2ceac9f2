-- expect: rename_table
ALTER TABLE sessions RENAME TO logins;
