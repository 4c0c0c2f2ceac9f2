-- expect: required_column
ALTER TABLE users ADD COLUMN tier int NOT NULL;
