-- expect: index_lock
CREATE INDEX users_email ON users (email);
