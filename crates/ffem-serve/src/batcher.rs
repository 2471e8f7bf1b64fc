//! Dynamic batching: requests hand prepared face images to one inference thread, which waits a
//! short window for more and runs them through the network together, so concurrent requests
//! share forward passes the way `ffem embed`'s batches do.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use ffem_infer::Embedder;
use ffem_infer::model_dir::Engine;
use ffem_model::ModelConfig;
use tokio::sync::oneshot;

/// One face to embed and where its embedding goes.
struct Job {
    image: Vec<f32>,
    reply: oneshot::Sender<Vec<f32>>,
}

/// The handle requests use; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    jobs: SyncSender<Job>,
    dim: usize,
    /// Forward passes run so far; faces embedded divided by this is the mean batch size.
    passes: Arc<AtomicU64>,
}

/// Why a face could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The queue is full: the service is overloaded (the client may retry).
    #[error("the service is busy: {0} faces are queued; retry shortly")]
    Busy(usize),
    /// The inference thread is gone.
    #[error("the inference thread has stopped")]
    Stopped,
}

/// Faces that may wait for the network before requests are turned away.
const QUEUE: usize = 1024;

impl Batcher {
    /// Loads the model at `model_dir` (an ffem model or an imported one, as every command opens
    /// it) in a thread of its own,
    /// which from then on embeds up to `max_batch` faces per pass, waiting at most `wait` for a
    /// batch to fill. Returns once the model is loaded (or failed to).
    pub fn start(
        model_dir: &Path,
        max_batch: usize,
        wait: Duration,
    ) -> Result<(Batcher, ModelConfig), String> {
        let (jobs, rx) = sync_channel::<Job>(QUEUE);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let dir = model_dir.to_path_buf();
        let passes = Arc::new(AtomicU64::new(0));
        let counted = passes.clone();
        std::thread::Builder::new()
            .name("ffem-inference".into())
            .spawn(move || {
                let loaded = ffem_infer::model_dir::open(&dir, Engine::Auto, 0)
                    .map(|embedder| (embedder.config().clone(), embedder))
                    .map_err(|e| e.to_string());
                match loaded {
                    Ok((cfg, embedder)) => {
                        let _ = ready_tx.send(Ok(cfg));
                        run(embedder, rx, max_batch.max(1), wait, &counted);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| format!("cannot start the inference thread: {e}"))?;
        let cfg = ready_rx
            .recv()
            .map_err(|_| "the inference thread stopped while loading".to_string())??;
        let dim = cfg.embedding_dim;
        Ok((Batcher { jobs, dim, passes }, cfg))
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Forward passes the inference thread has run: fewer than the faces embedded when
    /// concurrent requests shared passes (`GET /metrics` shows both).
    pub fn forward_passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    /// Embeds prepared faces (each 3 x S x S) with flip test-time augmentation; unit vectors in
    /// order. All are queued before any answer is awaited, so the faces of one image share a
    /// forward pass.
    pub async fn embed(&self, images: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>, BatchError> {
        let mut answers = Vec::with_capacity(images.len());
        for image in images {
            let (reply, answer) = oneshot::channel();
            match self.jobs.try_send(Job { image, reply }) {
                Ok(()) => answers.push(answer),
                Err(TrySendError::Full(_)) => return Err(BatchError::Busy(QUEUE)),
                Err(TrySendError::Disconnected(_)) => return Err(BatchError::Stopped),
            }
        }
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            out.push(answer.await.map_err(|_| BatchError::Stopped)?);
        }
        Ok(out)
    }
}

fn run(
    embedder: Embedder,
    rx: Receiver<Job>,
    max_batch: usize,
    wait: Duration,
    passes: &AtomicU64,
) {
    let dim = embedder.dim();
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let deadline = Instant::now() + wait;
        while jobs.len() < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(job) => jobs.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let images: Vec<f32> = jobs.iter().flat_map(|j| j.image.iter().copied()).collect();
        let (mut rows, _) = embedder.embed_batch(&images, jobs.len(), true);
        passes.fetch_add(1, Ordering::Relaxed);
        ffem_eval::embedding::normalize_rows(&mut rows, dim);
        for (job, row) in jobs.into_iter().zip(rows.chunks_exact(dim)) {
            // A request that gave up (timeout, closed connection) no longer listens: fine.
            let _ = job.reply.send(row.to_vec());
        }
    }
}
