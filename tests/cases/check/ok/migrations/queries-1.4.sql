SELECT id, email, name FROM users WHERE id = $1;
INSERT INTO users (id, email, name) VALUES ($1, $2, $3);
