ALTER TABLE users ADD COLUMN nickname text;

ALTER TABLE users DROP COLUMN email;
