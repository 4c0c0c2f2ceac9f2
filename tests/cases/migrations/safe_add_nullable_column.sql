-- expect: safe
ALTER TABLE users ADD COLUMN nickname text;
