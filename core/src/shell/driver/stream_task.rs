//! One task per node stream: reads into the driver's bounded channel, writes what the
//! node hands it, reports flushes, ends on finish or reset.

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, SinkExt, StreamExt};

use super::streams::{StreamCmd, StreamIo};
use crate::pool::BufferPool;
use crate::stream::StreamId;

/// Reads shorter than this are copied out of the read buffer rather than handed over.
const SHORT_READ: usize = 4096;

/// Serves one of the node's streams: reads into the driver's channel, writes what the
/// driver sends, reports flushes, ends on finish or reset.
pub(super) async fn stream_task(
    id: StreamId,
    stream: libp2p::Stream,
    mut commands: mpsc::UnboundedReceiver<StreamCmd>,
    io: mpsc::Sender<StreamIo>,
    pool: BufferPool,
) {
    let mut end_io = io.clone();
    let (mut reader, mut writer) = stream.split();
    let (reset_tx, reset_rx) = oneshot::channel::<()>();
    let mut read_io = io.clone();
    let read = async move {
        // A reused buffer: no zeroing, no fresh pages; it returns to the pool when the
        // node has dropped the last of its bytes.
        let mut buf = pool.take();
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => {
                    let _ = read_io.send(StreamIo::Finished(id)).await;
                    return;
                }
                Ok(n) => {
                    // A short read is copied out, so that it does not hold a whole
                    // buffer; a long one is handed over as it is.
                    let data = if n < SHORT_READ {
                        Bytes::copy_from_slice(&buf[..n])
                    } else {
                        std::mem::replace(&mut buf, pool.take()).freeze(n)
                    };
                    if read_io.send(StreamIo::Data(id, data)).await.is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = read_io.send(StreamIo::Reset(id)).await;
                    return;
                }
            }
        }
    };
    let mut write_io = io;
    let write = async move {
        let mut next = commands.next().await;
        while let Some(cmd) = next.take() {
            match cmd {
                StreamCmd::Send(data) => {
                    if writer.write_all(&data).await.is_err() {
                        let _ = write_io.send(StreamIo::Reset(id)).await;
                        return;
                    }
                    match commands.try_recv() {
                        // More is queued: say this much is written, and write the next
                        // (the node prepares more meanwhile) before flushing.
                        Ok(more) => {
                            if write_io
                                .send(StreamIo::Written(id, data.len()))
                                .await
                                .is_err()
                            {
                                return;
                            }
                            next = Some(more);
                            continue;
                        }
                        Err(e) if e.is_closed() => return,
                        Err(_) => {
                            if writer.flush().await.is_err() {
                                let _ = write_io.send(StreamIo::Reset(id)).await;
                                return;
                            }
                            let _ = write_io.send(StreamIo::Flushed(id)).await;
                        }
                    }
                }
                StreamCmd::Finish => {
                    let _ = writer.close().await;
                    return;
                }
                StreamCmd::Reset => {
                    let _ = reset_tx.send(());
                    return;
                }
            }
            next = commands.next().await;
        }
    };
    let read = read.fuse();
    let write = write.fuse();
    let reset = reset_rx.fuse();
    futures::pin_mut!(read, write, reset);
    // The stream lives until both directions are done, or a reset.
    let (mut read_done, mut write_done) = (false, false);
    while !(read_done && write_done) {
        futures::select! {
            () = read => read_done = true,
            () = write => write_done = true,
            result = reset => if result.is_ok() { break },
        }
    }
    let _ = end_io.send(StreamIo::Ended(id)).await;
}
