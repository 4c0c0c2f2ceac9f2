-- expect: drop_table
DROP TABLE sessions;
