//! A Dynamo-style distributed in-memory cache (under construction).
