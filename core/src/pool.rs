//! Reusable byte buffers for the bulk data path.
//!
//! A send batch or a stream read is a fresh heap buffer that lives for a few microseconds;
//! at hundreds of MiB/s the allocator then spends more time zeroing new buffers and
//! faulting in pages it just returned to the kernel than the copy into them costs. A
//! [`BufferPool`] hands out buffers that were used before — already initialised, so
//! nothing is zeroed — and [`Pooled::freeze`] turns one into [`Bytes`] that go back to
//! the pool when the last slice of them is dropped.
//!
//! The pool holds at most `max_idle` idle buffers; when it is empty a new buffer is
//! allocated (and zeroed once), so the pool bounds what it keeps, never what is in use.
//! Contents are never read before being overwritten by their next user: a buffer's old
//! bytes beyond what was written are cut off by `freeze`.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

/// A bounded free list of equally sized byte buffers.
#[derive(Debug, Clone)]
pub(crate) struct BufferPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    size: usize,
    max_idle: usize,
    idle: Mutex<Vec<Vec<u8>>>,
}

impl Inner {
    /// The idle list (a panic while it was held cannot leave it inconsistent: a push or a
    /// pop either happened or not).
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl BufferPool {
    /// A pool of `size`-byte buffers keeping at most `max_idle` of them when unused.
    pub(crate) fn new(size: usize, max_idle: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                size,
                max_idle,
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// An idle buffer, or a new one if none is idle.
    pub(crate) fn take(&self) -> Pooled {
        let reused = self.inner.idle().pop();
        Pooled {
            buf: reused.unwrap_or_else(|| vec![0; self.inner.size]),
            home: Arc::downgrade(&self.inner),
        }
    }

    /// Buffers idle in the pool now.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.inner.idle().len()
    }
}

/// A buffer from a [`BufferPool`]; it goes back to the pool when dropped (also after
/// [`Pooled::freeze`], once every slice of the frozen bytes is gone).
#[derive(Debug)]
pub(crate) struct Pooled {
    buf: Vec<u8>,
    home: Weak<Inner>,
}

impl Pooled {
    /// The first `len` bytes (at most the buffer's size) as shared, immutable bytes.
    pub(crate) fn freeze(self, len: usize) -> Bytes {
        let len = len.min(self.buf.len());
        let mut bytes = Bytes::from_owner(self);
        bytes.truncate(len);
        bytes
    }
}

impl std::ops::Deref for Pooled {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(home) = self.home.upgrade() else {
            return; // the pool is gone: the buffer is simply freed
        };
        if self.buf.len() != home.size {
            return;
        }
        let mut idle = home.idle();
        if idle.len() < home.max_idle {
            idle.push(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_slice_is_dropped() {
        let pool = BufferPool::new(8, 4);
        let mut a = pool.take();
        a[..3].copy_from_slice(b"abc");
        let bytes = a.freeze(3);
        assert_eq!(&bytes[..], b"abc");
        let head = bytes.slice(0..1);
        drop(bytes);
        assert_eq!(pool.idle(), 0, "a slice still holds the buffer");
        drop(head);
        assert_eq!(pool.idle(), 1);
        // Reused as is: nothing zeroed, the old bytes are still there until overwritten.
        let b = pool.take();
        assert_eq!(&b[..3], b"abc");
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn the_pool_keeps_at_most_max_idle_buffers() {
        let pool = BufferPool::new(16, 2);
        let taken: Vec<Pooled> = (0..5).map(|_| pool.take()).collect();
        drop(taken);
        assert_eq!(pool.idle(), 2);
        // Freezing past the end is cut to the buffer.
        assert_eq!(pool.take().freeze(100).len(), 16);
    }

    #[test]
    fn a_buffer_outliving_its_pool_is_freed() {
        let pool = BufferPool::new(4, 2);
        let bytes = pool.take().freeze(2);
        drop(pool);
        assert_eq!(bytes.len(), 2);
        drop(bytes);
    }
}
