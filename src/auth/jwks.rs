//! The issuer's signing keys (a JWKS), fetched when first needed, kept for a while,
//! and fetched again when a token names a key not in it — at most so often, so that
//! tokens with made-up `kid`s cannot make sluice hammer the authorization server.
