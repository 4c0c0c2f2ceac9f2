-- shipped with 1.4.0: not this upgrade's, not linted
CREATE TABLE users (id bigint PRIMARY KEY, email text, name text);
