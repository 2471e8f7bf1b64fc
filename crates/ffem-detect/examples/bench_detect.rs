//! Single-thread MTCNN speed on LFW photos: `bench_detect [N]` (default 200) prints images/s and the
//! mean number of faces found. Needs the weights (scripts/fetch-mtcnn.sh) and the face data.
use std::time::Instant;

use ffem_data::image_list::ImageList;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let data = ffem_data::require_shared_data();
    let weights = ffem_detect::require_test_weights();
    let det = ffem_detect::Mtcnn::load(&weights).unwrap();
    let list = ImageList::load(&data.join("lfw/image_list.json")).unwrap();
    let images: Vec<_> = list
        .entries
        .iter()
        .step_by((list.entries.len() / n).max(1))
        .take(n)
        .map(|e| {
            ffem_data::imageops::decode_rgb(
                &std::fs::read(data.join("lfw/lfw-deepfunneled").join(&e.path)).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let _ = det.detect(&images[0]).unwrap();
    let t = Instant::now();
    let faces: usize = images
        .iter()
        .map(|img| det.detect(img).unwrap().len())
        .sum();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "MTCNN (tract, 1 thread) on {} LFW images (250x250): {:.1} images/s, {:.2} faces per image",
        images.len(),
        images.len() as f64 / secs,
        faces as f64 / images.len() as f64
    );
}
