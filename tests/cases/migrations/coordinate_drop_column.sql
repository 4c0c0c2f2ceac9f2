-- expect: drop_column
ALTER TABLE users DROP COLUMN email;
