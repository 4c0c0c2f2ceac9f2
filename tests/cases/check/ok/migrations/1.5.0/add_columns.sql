ALTER TABLE users ADD COLUMN nickname text;
ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free';
