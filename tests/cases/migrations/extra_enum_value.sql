-- expect: enum_value
ALTER TYPE mood ADD VALUE 'meh';
