-- Webhook signing secrets no longer derive from what the database holds.
--
-- Until now a token's signing secret was its stored SHA-256, so anyone who could read the
-- database file could sign triggers. From this version the signing secret is
-- HMAC-SHA256(server secret, signing_salt), the server secret living in a 0600 file outside
-- the database (voipalert.store.secret). A token has a salt only when it may sign, that is
-- when its scopes grant "trigger" (trigger or admin); read-only tokens get none.
--
-- Existing tokens that may sign get a fresh random salt here: their bearer use is unchanged,
-- but a webhook sender that signed with the old secret must be given the new one
-- (voipalert token signing-secret NAME).
ALTER TABLE api_tokens ADD COLUMN signing_salt TEXT;

UPDATE api_tokens
-- gen_random_uuid() draws from the server's strong random source (122 random bits).
SET signing_salt = replace(CAST(gen_random_uuid() AS TEXT), '-', '')
WHERE revoked_at IS NULL
  AND (' ' || scopes || ' ' LIKE '% trigger %' OR ' ' || scopes || ' ' LIKE '% admin %');
