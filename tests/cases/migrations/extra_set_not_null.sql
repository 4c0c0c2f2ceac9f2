-- expect: set_not_null
ALTER TABLE users ALTER COLUMN nickname SET NOT NULL;
