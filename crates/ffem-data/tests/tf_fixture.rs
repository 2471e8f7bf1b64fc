//! A TFRecord file written by TensorFlow itself (`fixtures/make_tf_written.py`, TF 2.21) reads
//! back: its length and data CRCs verify under ffem's masked CRC32C, and its `tf.train.Example`s
//! decode into the face schema with the values the script wrote.

use std::path::Path;

use ffem_data::FaceRecord;
use ffem_data::tfrecord::{RecordReader, masked_crc32c};

#[test]
fn tensorflow_written_records_verify_and_decode() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf_written.tfrecord");
    let bytes = std::fs::read(&path).unwrap();
    // The first record's framing, checked field by field against TensorFlow's bytes.
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let len_crc = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let data_crc = u32::from_le_bytes(bytes[12 + len..16 + len].try_into().unwrap());
    assert_eq!(masked_crc32c(&bytes[..8]), len_crc);
    assert_eq!(masked_crc32c(&bytes[12..12 + len]), data_crc);

    let records: Vec<FaceRecord> = RecordReader::open(&path)
        .unwrap()
        .map(|r| FaceRecord::from_example(&r.unwrap().data).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].jpeg, b"\xff\xd8not-a-real-jpeg-0");
    assert_eq!(
        (records[0].label, records[0].face_box, records[0].landmarks),
        (3, [1, 2, 30, 40], None)
    );
    assert_eq!((records[1].label, records[1].face_box), (7, [5, 6, 70, 80]));
    assert_eq!(
        records[1].landmarks,
        Some([10.5, 20.25, 30.0, 20.0, 20.0, 30.0, 12.0, 40.0, 28.0, 40.5])
    );
}
