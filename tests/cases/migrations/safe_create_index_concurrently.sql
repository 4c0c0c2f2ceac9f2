-- expect: safe
CREATE INDEX CONCURRENTLY users_nickname ON users (nickname);
