CREATE INDEX users_nickname ON users (nickname);
