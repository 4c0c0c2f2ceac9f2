-- expect: type_change
ALTER TABLE users ALTER COLUMN age TYPE bigint;
