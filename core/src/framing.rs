//! framing (placeholder)
