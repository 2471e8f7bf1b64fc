//! Fuzzing ffem's file parsers on stable Rust: seeded mutations of valid fixtures (bit flips,
//! interesting bytes, huge length fields, truncation, insertion, deletion, duplication) fed to the
//! TFRecord reader with the Example decoder, the RecordIO pack reader (`.rec` + `.idx`), the
//! `image_list.json` parser, and ffem-eval's readers: insightface `.bin` (pickle), NPY, the
//! gallery index CSV, LFW's `pairs.txt` and CFP's protocol files. Every input must end in `Ok` or
//! `Err`: no panic, no hang (each input is timed), no allocation out of proportion to the input
//! (a counting allocator watches the largest single request); the harness is
//! `ffem_testdata::fuzz`. `FFEM_FUZZ_ITERATIONS` raises the bounded count (`bench/fuzz.sh`).

use std::path::Path;
use std::sync::atomic::Ordering;

use ffem_data::example::FaceRecord;
use ffem_data::recordio::{IrHeader, RecWriter, pack_payload};
use ffem_data::tfrecord::RecordWriter;
use ffem_data::{ImageList, RecordSource};
use ffem_testdata::fuzz::{LARGEST, Watch, alone, fuzz, iterations};

#[global_allocator]
static ALLOCATOR: Watch = Watch;

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
    let _alone = alone();
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
    let _alone = alone();
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
    let _alone = alone();
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
    let _alone = alone();
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
    let _alone = alone();
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

#[test]
fn gallery_index_and_pair_readers_survive_mutations() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    // The gallery index ffem embed writes beside its .npy: quoted names with commas, quotes and
    // a line break, an unlabelled row.
    let npy = dir.path().join("g.npy");
    let entries = [
        ("alice/1.jpg", "0"),
        ("bob, \"the\" builder\n2.jpg", "1"),
        ("unknown.png", ""),
    ]
    .map(|(name, label)| ffem_eval::gallery::GalleryEntry {
        name: name.to_string(),
        label: label.to_string(),
    });
    ffem_eval::gallery::write(&npy, &[0.0; 6], 2, &entries).unwrap();
    let index = ffem_eval::gallery::index_path(&npy);
    let fixture = std::fs::read(&index).unwrap();
    assert_eq!(ffem_eval::gallery::read_index(&index).unwrap(), entries);
    let target = dir.path().join("m.csv");
    fuzz("gallery csv", &fixture, 8, iterations(3000), |bytes| {
        std::fs::write(&target, bytes).unwrap();
        ffem_eval::gallery::read_index(&target).is_ok()
    });

    let pairs = b"2\t2\nAbel_Pacheco\t1\t4\nAkhmed_Zakayev\t1\t3\nAbdel_Madi_Shabneh\t1\tDean_Barker\t1\nAbdel_Madi_Shabneh\t1\tGiancarlo_Fisichella\t1\n";
    let target = dir.path().join("pairs.txt");
    std::fs::write(&target, pairs).unwrap();
    assert_eq!(ffem_eval::pairs::read_lfw_pairs(&target).unwrap().len(), 4);
    fuzz("lfw pairs.txt", pairs, 9, iterations(3000), |bytes| {
        std::fs::write(&target, bytes).unwrap();
        ffem_eval::pairs::read_lfw_pairs(&target).is_ok()
    });

    // CFP's protocol folder: two image lists and ten folds of same/diff index pairs; the
    // mutations go to the frontal list and to one fold's file in turn.
    let protocol = dir.path().join("Protocol");
    let f_list = "1 ../Data/Images/001/frontal/01.jpg\n2 ../Data/Images/001/frontal/02.jpg\n3 ../Data/Images/002/frontal/01.jpg\n";
    let p_list = "1 ../Data/Images/001/profile/01.jpg\n2 ../Data/Images/002/profile/01.jpg\n";
    std::fs::create_dir_all(&protocol).unwrap();
    std::fs::write(protocol.join("Pair_list_F.txt"), f_list).unwrap();
    std::fs::write(protocol.join("Pair_list_P.txt"), p_list).unwrap();
    for fold in 1..=10 {
        let d = protocol.join(format!("Split/FP/{fold:02}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("same.txt"), "1,1\n3,2\n").unwrap();
        std::fs::write(d.join("diff.txt"), "1,2\n2,2\n").unwrap();
    }
    let read = || ffem_eval::pairs::read_cfp_pairs(&protocol, ffem_eval::pairs::CfpProtocol::FP);
    assert_eq!(read().unwrap().len(), 40);
    for (i, file) in ["Pair_list_F.txt", "Split/FP/03/same.txt"]
        .iter()
        .enumerate()
    {
        let path = protocol.join(file);
        let fixture = std::fs::read(&path).unwrap();
        fuzz(
            &format!("cfp {file}"),
            &fixture,
            10 + i as u64,
            iterations(1500),
            |bytes| {
                std::fs::write(&path, bytes).unwrap();
                read().is_ok()
            },
        );
        std::fs::write(&path, &fixture).unwrap();
    }
}
