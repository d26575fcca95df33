//! fuzz bodies (placeholder)
