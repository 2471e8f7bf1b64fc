//! Single-thread MTCNN speed on LFW photos: `bench_detect [N]` (default 200) prints images/s and the
//! mean number of faces found. `bench_detect --portraits [N]` composes N multi-megapixel portraits
//! (1,382 x 1,868, an LFW photo enlarged 2x in a plain frame, the face a small part of it) and times
//! detection at full resolution (`max_side = 0`, the reference behaviour) against the shrunk photo
//! (`max_side = 1024`, the default), checking that both find the face at the same place.
//! Needs the weights (scripts/fetch-mtcnn.sh) and the face data.
use std::time::Instant;

use ffem_data::image_list::ImageList;
use ffem_detect::{Face, Mtcnn};
use image::RgbImage;

fn lfw_images(n: usize) -> Vec<RgbImage> {
    let data = ffem_testdata::require_shared_data();
    let list = ImageList::load(&data.join("lfw/image_list.json")).unwrap();
    list.entries
        .iter()
        .step_by((list.entries.len() / n).max(1))
        .take(n)
        .map(|e| {
            ffem_data::imageops::decode_rgb(
                &std::fs::read(data.join("lfw/lfw-deepfunneled").join(&e.path)).unwrap(),
            )
            .unwrap()
        })
        .collect()
}

/// Images/s and the faces found per image.
fn time(det: &Mtcnn, images: &[RgbImage]) -> (f64, Vec<Vec<Face>>) {
    let _ = det.detect_photo(&images[0]).unwrap();
    let t = Instant::now();
    let faces: Vec<Vec<Face>> = images
        .iter()
        .map(|img| det.detect_photo(img).unwrap())
        .collect();
    (images.len() as f64 / t.elapsed().as_secs_f64(), faces)
}

fn portrait(face: &RgbImage, i: usize) -> RgbImage {
    let big = image::imageops::resize(face, 500, 500, image::imageops::FilterType::Triangle);
    let mut frame = RgbImage::from_pixel(1382, 1868, image::Rgb([200, 195, 185]));
    let (x, y) = (300 + (i * 97) % 500, 400 + (i * 131) % 800);
    image::imageops::overlay(&mut frame, &big, x as i64, y as i64);
    frame
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let portraits = args.iter().any(|a| a == "--portraits");
    let n: usize = args
        .iter()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if portraits { 20 } else { 200 });
    let weights = ffem_testdata::require_mtcnn_weights();
    let mut det = Mtcnn::load(&weights).unwrap();
    if !portraits {
        let images = lfw_images(n);
        let (rate, faces) = time(&det, &images);
        println!(
            "MTCNN (tract, 1 thread) on {} LFW images (250x250): {rate:.1} images/s, {:.2} faces per image",
            images.len(),
            faces.iter().map(Vec::len).sum::<usize>() as f64 / images.len() as f64
        );
        return;
    }
    let images: Vec<RgbImage> = lfw_images(n)
        .iter()
        .enumerate()
        .map(|(i, f)| portrait(f, i))
        .collect();
    det.params.max_side = 0;
    let (full_rate, full) = time(&det, &images);
    det.params.max_side = 1024;
    let (shrunk_rate, shrunk) = time(&det, &images);
    let best = |f: &[Face]| f.iter().max_by(|a, b| a.score.total_cmp(&b.score)).copied();
    let mut iou_sum = 0.0;
    let mut both = 0;
    for (a, b) in full.iter().zip(&shrunk) {
        if let (Some(a), Some(b)) = (best(a), best(b)) {
            let ix = (a.bbox[2].min(b.bbox[2]) - a.bbox[0].max(b.bbox[0])).max(0.0);
            let iy = (a.bbox[3].min(b.bbox[3]) - a.bbox[1].max(b.bbox[1])).max(0.0);
            let area = |f: &Face| (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]);
            iou_sum += (ix * iy / (area(&a) + area(&b) - ix * iy)) as f64;
            both += 1;
        }
    }
    println!(
        "MTCNN (tract, 1 thread) on {} portraits of 1382x1868: full resolution {full_rate:.2} images/s, \
         shrunk to 1024 {shrunk_rate:.2} images/s ({:.1}x); faces found in {} / {} photos; \
         best-face box IoU full vs shrunk {:.3}",
        images.len(),
        shrunk_rate / full_rate,
        shrunk.iter().filter(|f| !f.is_empty()).count(),
        full.iter().filter(|f| !f.is_empty()).count(),
        iou_sum / both.max(1) as f64
    );
}
