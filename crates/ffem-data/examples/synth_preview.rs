//! Writes a strip of synthetic faces (4 identities x 6 images) to the path given, for a look.
fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "synth_preview.png".into());
    let mut strip = image::RgbImage::new(6 * 112, 4 * 112);
    for id in 0..4u64 {
        for i in 0..6u64 {
            let (img, _, _) = ffem_data::synth::Identity::new(id).render(112, id * 100 + i);
            image::imageops::overlay(&mut strip, &img, (i * 112) as i64, (id * 112) as i64);
        }
    }
    strip.save(&out).expect("write preview");
}
