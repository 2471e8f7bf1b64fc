//! Fuzzing ffem's file parsers on stable Rust: seeded mutations of valid fixtures (bit flips,
//! interesting bytes, huge length fields, truncation, insertion, deletion, duplication) fed to the
//! TFRecord reader with the Example decoder, the RecordIO pack reader (`.rec` + `.idx`), the
//! `image_list.json` parser, and ffem-eval's insightface `.bin` (pickle) and NPY readers. Every input must end in `Ok` or `Err`: no panic, no hang (each input
//! is timed), no allocation out of proportion to the input (a counting allocator watches the
//! largest single request). `FFEM_FUZZ_ITERATIONS` raises the bounded count (`bench/fuzz.sh`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ffem_data::example::FaceRecord;
use ffem_data::recordio::{IrHeader, RecWriter, pack_payload};
use ffem_data::tfrecord::RecordWriter;
use ffem_data::{ImageList, RecordSource};

/// The system allocator, remembering the largest single allocation since the last reset.
struct Watch;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Watch = Watch;

/// A small, seeded generator (xorshift64*): the fuzz runs are reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four mutations of `input`.
fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len().max(1));
        match rng.below(7) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.below(8),
            1 if !b.is_empty() => b[at] = [0x00, 0xff, 0x7f, 0x80, 0x01][rng.below(5)],
            2 => {
                // A huge little-endian length where a length field may be.
                let v = [u64::MAX, u32::MAX as u64, 1 << 40, 1 << 31][rng.below(4)];
                for (i, byte) in v.to_le_bytes().iter().enumerate().take(8) {
                    if let Some(x) = b.get_mut(at + i) {
                        *x = *byte;
                    }
                }
            }
            3 => b.truncate(at),
            4 => {
                let junk: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                b.splice(at..at, junk);
            }
            5 if !b.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(b.len());
                b.drain(at..end);
            }
            _ if !b.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                let piece = b[at..end].to_vec();
                let to = rng.below(b.len());
                b.splice(to..to, piece);
            }
            _ => {}
        }
    }
    b
}

fn iterations(default: usize) -> usize {
    std::env::var("FFEM_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Feeds `n` mutations of `fixture` to `parse`; fails on a panic, a slow input or an allocation
/// larger than 64 MiB + 64 x the input. Returns (inputs tried, accepted, rejected).
fn fuzz(
    name: &str,
    fixture: &[u8],
    seed: u64,
    n: usize,
    parse: impl Fn(&[u8]) -> bool,
) -> (usize, usize, usize) {
    let mut rng = Rng(seed);
    let (mut ok, mut err) = (0, 0);
    for i in 0..n {
        let input = mutate(fixture, &mut rng);
        LARGEST.store(0, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&input)));
        let took = started.elapsed();
        let largest = LARGEST.load(Ordering::Relaxed);
        let keep = || {
            let path = std::env::temp_dir().join(format!("ffem-fuzz-{name}-{seed}-{i}.bin"));
            std::fs::write(&path, &input).unwrap();
            path.display().to_string()
        };
        match outcome {
            Ok(true) => ok += 1,
            Ok(false) => err += 1,
            Err(_) => panic!(
                "{name}: input {i} (seed {seed}) panicked; saved as {}",
                keep()
            ),
        }
        assert!(
            took < Duration::from_secs(2),
            "{name}: input {i} took {took:?}; saved as {}",
            keep()
        );
        assert!(
            largest <= (64 << 20) + 64 * input.len(),
            "{name}: input {i} of {} bytes allocated {largest} bytes at once; saved as {}",
            input.len(),
            keep()
        );
    }
    eprintln!("{name}: {n} inputs, {ok} accepted, {err} rejected, no panic");
    (n, ok, err)
}

fn tiny_jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(12, 12, |x, y| image::Rgb([seed, x as u8 * 9, y as u8 * 9]));
    ffem_data::imageops::encode_jpeg(&img, 80).unwrap()
}

fn face(i: u8) -> FaceRecord {
    FaceRecord {
        jpeg: tiny_jpeg(i),
        label: i as i64,
        face_box: [1, 2, 10, 11],
        landmarks: i.is_multiple_of(2).then_some([1.0; 10]),
        path: Some(format!("p/{i}.jpg")),
    }
}

/// Reads every record of `source`, decoding images too; true when it all went through.
fn read_all(source: &Path) -> bool {
    let Ok(src) = RecordSource::open(source) else {
        return false;
    };
    let mut fine = true;
    for r in src.records(false) {
        match r {
            Ok(rec) => fine &= ffem_data::imageops::decode_rgb(&rec.jpeg).is_ok(),
            Err(_) => return false,
        }
    }
    // The skipping reader must get through whatever the strict one refused.
    for r in src.records(true) {
        let _ = r;
    }
    fine
}

#[test]
fn tfrecord_and_example_parsers_survive_mutations() {
    let dir = tempfile::tempdir().unwrap();
    let valid = dir.path().join("valid.tfrecord");
    let mut w = RecordWriter::create(&valid).unwrap();
    for i in 0..3 {
        w.write(&face(i).to_example()).unwrap();
    }
    w.finish().unwrap();
    let fixture = std::fs::read(&valid).unwrap();
    assert!(read_all(&valid));
    let target = dir.path().join("mutated.tfrecord");
    fuzz("tfrecord", &fixture, 1, iterations(1500), |bytes| {
        std::fs::write(&target, bytes).unwrap();
        read_all(&target)
    });
    let example = face(4).to_example();
    fuzz("example", &example, 2, iterations(3000), |bytes| {
        FaceRecord::from_example(bytes).is_ok()
    });
}

/// A valid insightface-style pack of three tiny images, keys 0..3.
fn write_pack(rec: &Path, idx: &Path) {
    let mut w = RecWriter::create(rec, idx).unwrap();
    for i in 0..3u8 {
        let h = IrHeader {
            flag: 0,
            label: i as f32,
            id: i as u64,
            id2: 0,
            labels: vec![],
        };
        w.write(i as u64, &pack_payload(&h, &tiny_jpeg(i))).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn recordio_pack_reader_survives_mutations() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, idx) = (dir.path().join("train.rec"), dir.path().join("train.idx"));
    write_pack(&rec, &idx);
    assert!(read_all(dir.path()));
    let (rec_bytes, idx_bytes) = (std::fs::read(&rec).unwrap(), std::fs::read(&idx).unwrap());
    let m = tempfile::tempdir().unwrap();
    fuzz("recordio .rec", &rec_bytes, 3, iterations(1500), |bytes| {
        std::fs::write(m.path().join("train.rec"), bytes).unwrap();
        std::fs::write(m.path().join("train.idx"), &idx_bytes).unwrap();
        read_all(m.path())
    });
    fuzz("recordio .idx", &idx_bytes, 4, iterations(1500), |bytes| {
        std::fs::write(m.path().join("train.rec"), &rec_bytes).unwrap();
        std::fs::write(m.path().join("train.idx"), bytes).unwrap();
        read_all(m.path())
    });
}

#[test]
fn image_list_parser_survives_mutations() {
    let text = r#"{
  "alice/1.jpg": {"label": 0, "x1": 10, "y1": 12.5, "x2": 50, "y2": 60,
                  "landmarks": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]},
  "bob/2.png": {"label": 1, "x1": 0, "y1": 0, "x2": 20, "y2": 20},
  "carol/3.jpg#1": {"label": 2, "x1": -3, "y1": 4, "x2": 30, "y2": 33}
}"#;
    assert_eq!(
        ImageList::parse(text, Path::new("l.json"))
            .unwrap()
            .entries
            .len(),
        3
    );
    fuzz(
        "image_list.json",
        text.as_bytes(),
        5,
        iterations(3000),
        |bytes| {
            ImageList::parse(&String::from_utf8_lossy(bytes), Path::new("l.json"))
                .is_ok_and(|l| l.rejected.is_empty())
        },
    );
}

/// Inputs the fuzzer once found allocating 512 MiB from 2 KiB (a damaged length taken at its word
/// before the reader checked it against the file's size): they must now fail cheaply.
#[test]
fn found_inputs_stay_fixed() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let tf = std::fs::read(fixtures.join("tfrecord-huge-length.tfrecord")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("t.tfrecord");
    LARGEST.store(0, Ordering::Relaxed);
    std::fs::write(&target, &tf).unwrap();
    assert!(!read_all(&target));
    assert!(LARGEST.load(Ordering::Relaxed) < 64 << 20);

    let rec = std::fs::read(fixtures.join("recordio-huge-chunk.rec")).unwrap();
    let (w, idx) = (dir.path().join("train.rec"), dir.path().join("train.idx"));
    // The index of the valid pack the input was mutated from: records at 0, then as written.
    write_pack(&dir.path().join("v.rec"), &idx);
    std::fs::write(&w, &rec).unwrap();
    LARGEST.store(0, Ordering::Relaxed);
    let _ = read_all(dir.path());
    assert!(LARGEST.load(Ordering::Relaxed) < 64 << 20);
}

#[test]
fn bin_and_npy_readers_survive_mutations() {
    let dir = tempfile::tempdir().unwrap();
    let set = ffem_eval::bin_set::BinSet {
        images: (0..4).map(tiny_jpeg).collect(),
        issame: vec![true, false],
    };
    let bin = dir.path().join("v.bin");
    ffem_eval::bin_set::write_bin(&bin, &set).unwrap();
    let fixture = std::fs::read(&bin).unwrap();
    assert!(ffem_eval::bin_set::parse_bin(&fixture).is_ok());
    fuzz(".bin", &fixture, 6, iterations(3000), |bytes| {
        ffem_eval::bin_set::parse_bin(bytes).is_ok()
    });
    let npy = dir.path().join("v.npy");
    ffem_eval::npy::write_f32(&npy, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).unwrap();
    let fixture = std::fs::read(&npy).unwrap();
    let target = dir.path().join("m.npy");
    fuzz(".npy", &fixture, 7, iterations(3000), |bytes| {
        std::fs::write(&target, bytes).unwrap();
        ffem_eval::npy::read_f32(&target).is_ok()
    });
}
