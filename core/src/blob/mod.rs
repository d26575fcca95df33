//! Verified BLAKE3 blob transfer.

mod id;

pub use id::{BlobId, ParseBlobIdError};
