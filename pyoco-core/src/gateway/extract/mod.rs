//! Reading requests the way the original's FastAPI does, so every route answers the same
//! 422 `detail` lists and 413s: query strings ([`query`]), JSON bodies checked like a
//! pydantic model ([`json`]) and multipart forms ([`multipart`]).

pub(super) mod json;
pub(super) mod multipart;
pub(super) mod query;
