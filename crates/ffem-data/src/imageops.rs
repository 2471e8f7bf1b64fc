//! Pixel work on decoded RGB images: decoding with clear errors, bilinear crop-and-resize,
//! affine warps, JPEG encoding. Plain loops over `u8`/`f32` buffers: no framework needed.

use image::RgbImage;

/// The largest image side ffem decodes: larger ones are refused before their pixels are
/// allocated (a small PNG can claim 20,000 x 20,000 pixels: a decompression bomb).
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// Reader limits shared by every decode: sides up to [`MAX_IMAGE_SIDE`], 1 GiB of pixels.
fn limits() -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(MAX_IMAGE_SIDE);
    l.max_image_height = Some(MAX_IMAGE_SIDE);
    l.max_alloc = Some(1 << 30);
    l
}

/// Decodes an encoded image (JPEG, PNG, WebP, BMP, PNM/PGM, TIFF; the format is read from the
/// bytes, not the file name) to 8-bit RGB, upright: EXIF orientation is applied, as photo viewers
/// do. A JPEG must be complete; images larger than [`MAX_IMAGE_SIDE`] are refused.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
    let format = image::guess_format(bytes)
        .map_err(|_| "not an image (unrecognised file signature)".to_string())?;
    if format == image::ImageFormat::Jpeg {
        // Decoders fill a truncated JPEG with grey instead of failing: require the end marker.
        let tail = &bytes[bytes.len().saturating_sub(4096)..];
        if !tail.windows(2).any(|w| w == [0xff, 0xd9]) {
            return Err("truncated JPEG: no end-of-image marker".into());
        }
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    reader.limits(limits());
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| format!("cannot decode image: {e}"))?;
    let orientation = image::ImageDecoder::orientation(&mut decoder)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| format!("cannot decode image: {e}"))?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// Width and height of an encoded image as [`decode_rgb`] returns it (EXIF rotations by 90
/// degrees swap them), read from the header without decoding the pixels.
pub fn upright_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let format = image::guess_format(bytes).ok()?;
    let reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut decoder = reader.into_decoder().ok()?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    use image::metadata::Orientation::*;
    match image::ImageDecoder::orientation(&mut decoder).ok()? {
        Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH => Some((h, w)),
        _ => Some((w, h)),
    }
}

/// Encodes RGB pixels as JPEG at `quality` (1-100).
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    img.write_with_encoder(enc)
        .map_err(|e| format!("cannot encode JPEG: {e}"))?;
    Ok(out)
}

/// Samples `img` at (x, y) (pixel centres at integer coordinates) with bilinear interpolation;
/// coordinates outside are clamped to the border.
#[inline]
fn sample(img: &[u8], w: usize, h: usize, x: f32, y: f32, out: &mut [f32; 3]) {
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let x0 = x.floor() as usize;
    let y0 = y.floor() as usize;
    let x1 = (x0 + 1).min(w - 1);
    let y1 = (y0 + 1).min(h - 1);
    let fx = x - x0 as f32;
    let fy = y - y0 as f32;
    let p = |xx: usize, yy: usize, c: usize| img[(yy * w + xx) * 3 + c] as f32;
    for (c, o) in out.iter_mut().enumerate() {
        let top = p(x0, y0, c) * (1.0 - fx) + p(x1, y0, c) * fx;
        let bottom = p(x0, y1, c) * (1.0 - fx) + p(x1, y1, c) * fx;
        *o = top * (1.0 - fy) + bottom * fy;
    }
}

/// Crops the box (x1, y1, x2, y2; pixel edges) from `img` and resizes it bilinearly to
/// `size` x `size`, writing interleaved RGB f32 in 0..255 into `out` (len size*size*3).
/// A box may reach past the image: output pixels whose sample point lies outside the image are
/// 0 (black), as TensorFlow's `crop_and_resize` pads, so the face keeps its aspect ratio; inside,
/// the last half pixel at each edge is clamped to the border, as [`sample`] does.
pub fn crop_resize(img: &RgbImage, bx: [f32; 4], size: usize, out: &mut [f32]) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let sx = (bx[2] - bx[0]) / size as f32;
    let sy = (bx[3] - bx[1]) / size as f32;
    let raw = img.as_raw();
    // Taps (first, second, weight), or None outside the image. Columns are the same for every row.
    let taps = |start: f32, step: f32, i: usize, limit: usize| -> Option<(usize, usize, f32)> {
        let v = start + (i as f32 + 0.5) * step - 0.5;
        if v < -0.5 || v > limit as f32 - 0.5 {
            return None;
        }
        let v = v.clamp(0.0, (limit - 1) as f32);
        let v0 = v.floor() as usize;
        Some((v0, (v0 + 1).min(limit - 1), v - v0 as f32))
    };
    let cols: Vec<Option<(usize, usize, f32)>> =
        (0..size).map(|ox| taps(bx[0], sx, ox, w)).collect();
    for oy in 0..size {
        let row = &mut out[oy * size * 3..(oy + 1) * size * 3];
        let Some((y0, y1, fy)) = taps(bx[1], sy, oy, h) else {
            row.fill(0.0);
            continue;
        };
        let r0 = &raw[y0 * w * 3..(y0 + 1) * w * 3];
        let r1 = &raw[y1 * w * 3..(y1 + 1) * w * 3];
        for (px, col) in row.chunks_exact_mut(3).zip(&cols) {
            let Some((x0, x1, fx)) = *col else {
                px.fill(0.0);
                continue;
            };
            let (a, b) = (x0 * 3, x1 * 3);
            for c in 0..3 {
                let top = r0[a + c] as f32 * (1.0 - fx) + r0[b + c] as f32 * fx;
                let bottom = r1[a + c] as f32 * (1.0 - fx) + r1[b + c] as f32 * fx;
                px[c] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
}

/// Warps `img` by the affine map `m` (2x3, from output pixel to input pixel) into a
/// `size` x `size` interleaved RGB f32 buffer; outside the image is black.
pub fn warp_affine_inverse(img: &RgbImage, m: [f32; 6], size: usize, out: &mut [f32]) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.as_raw();
    let mut px = [0f32; 3];
    for oy in 0..size {
        for ox in 0..size {
            let (fx, fy) = (ox as f32, oy as f32);
            let x = m[0] * fx + m[1] * fy + m[2];
            let y = m[3] * fx + m[4] * fy + m[5];
            let dst = &mut out[(oy * size + ox) * 3..][..3];
            if x < -0.5 || y < -0.5 || x > w as f32 - 0.5 || y > h as f32 - 0.5 {
                dst.fill(0.0);
            } else {
                sample(raw, w, h, x, y, &mut px);
                dst.copy_from_slice(&px);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_resize_of_a_gradient_is_exact() {
        // Pixel value = 10*x in red, 10*y in green: bilinear sampling reproduces a linear ramp.
        let img = RgbImage::from_fn(20, 20, |x, y| {
            image::Rgb([(10 * x) as u8, (10 * y) as u8, 7])
        });
        let mut out = vec![0f32; 4 * 4 * 3];
        crop_resize(&img, [4.0, 8.0, 12.0, 16.0], 4, &mut out);
        // Output pixel ox samples x = 4 + (ox + 0.5) * 2 - 0.5 = 4.5 + 2 ox.
        for oy in 0..4 {
            for ox in 0..4 {
                let p = &out[(oy * 4 + ox) * 3..][..3];
                assert!((p[0] - 10.0 * (4.5 + 2.0 * ox as f32)).abs() < 1e-3);
                assert!((p[1] - 10.0 * (8.5 + 2.0 * oy as f32)).abs() < 1e-3);
                assert_eq!(p[2], 7.0);
            }
        }
    }

    #[test]
    fn exif_orientation_turns_the_photo_upright() {
        // Stored 16 wide x 8 high: red left half, blue right half.
        let img = RgbImage::from_fn(16, 8, |x, _| {
            if x < 8 {
                image::Rgb([250, 0, 0])
            } else {
                image::Rgb([0, 0, 250])
            }
        });
        let jpeg = encode_jpeg(&img, 95).unwrap();
        // An EXIF block saying "rotate 90 degrees clockwise to display" (orientation 6), as
        // phone cameras write for portrait shots, right after the start-of-image marker.
        let mut exif = vec![0xff, 0xe1, 0x00, 0x22];
        exif.extend_from_slice(b"Exif\0\0II\x2a\x00\x08\x00\x00\x00");
        exif.extend_from_slice(&[1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]);
        let rotated = [&jpeg[..2], &exif, &jpeg[2..]].concat();
        assert_eq!(upright_dimensions(&jpeg), Some((16, 8)));
        assert_eq!(upright_dimensions(&rotated), Some((8, 16)));
        let up = decode_rgb(&rotated).unwrap();
        assert_eq!(up.dimensions(), (8, 16));
        // Clockwise: the stored left (red) half is now the top half.
        let (top, bottom) = (up.get_pixel(4, 3), up.get_pixel(4, 12));
        assert!(top[0] > 200 && top[2] < 60, "{top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "{bottom:?}");
    }

    #[test]
    fn a_box_past_the_edge_pads_with_black_and_keeps_its_scale() {
        let img = RgbImage::from_fn(20, 20, |x, y| {
            image::Rgb([(10 * x) as u8, (10 * y) as u8, 7])
        });
        // A 16 x 16 box whose left half lies outside the image: 8 output columns of 2 px each.
        let mut out = vec![0f32; 8 * 8 * 3];
        crop_resize(&img, [-8.0, 2.0, 8.0, 18.0], 8, &mut out);
        for oy in 0..8 {
            for ox in 0..8 {
                let p = &out[(oy * 8 + ox) * 3..][..3];
                // Sample x = -8 + (ox + 0.5) * 2 - 0.5 = 2 ox - 7.5: outside for ox <= 3.
                if ox <= 3 {
                    assert_eq!(p, [0.0, 0.0, 0.0], "({ox}, {oy})");
                } else {
                    let x = 2.0 * ox as f32 - 7.5;
                    let y = 2.0 + (oy as f32 + 0.5) * 2.0 - 0.5;
                    assert!(
                        (p[0] - 10.0 * x.max(0.0)).abs() < 1e-3,
                        "({ox}, {oy}): {p:?}"
                    );
                    assert!((p[1] - 10.0 * y).abs() < 1e-3);
                }
            }
        }
    }

    #[test]
    fn warp_identity_and_outside_is_black() {
        let img = RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8, y as u8, 1]));
        let mut out = vec![0f32; 8 * 8 * 3];
        warp_affine_inverse(&img, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0], 8, &mut out);
        assert_eq!(&out[(3 * 8 + 5) * 3..][..3], &[5.0, 3.0, 1.0]);
        warp_affine_inverse(&img, [1.0, 0.0, 100.0, 0.0, 1.0, 0.0], 8, &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn decode_rejects_non_images_and_truncated_jpegs() {
        assert!(
            decode_rgb(b"hello world")
                .unwrap_err()
                .contains("not an image")
        );
        let img = RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 0]));
        let jpeg = encode_jpeg(&img, 90).unwrap();
        assert_eq!(decode_rgb(&jpeg).unwrap().dimensions(), (32, 32));
        let err = decode_rgb(&jpeg[..jpeg.len() / 2]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }
}
