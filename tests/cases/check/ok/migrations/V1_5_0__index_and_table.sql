CREATE INDEX CONCURRENTLY users_nickname ON users (nickname);
CREATE TABLE audit_log (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), what text);
