//! The protobuf wire format's primitives (base-128 varints, length-delimited fields), shared by
//! the tf.train.Example codec here and by ONNX export and import in the model crates. Written by
//! hand because records and ONNX graphs need only these three, and the codec is checked against
//! TensorFlow-written records.

/// Appends `v` as a protobuf base-128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a protobuf base-128 varint at `*pos` and moves `*pos` past it; an error on truncation
/// or more than 10 bytes.
pub fn get_varint(bytes: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos).ok_or("truncated protobuf varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("protobuf varint longer than 10 bytes".into())
}

/// Appends a length-delimited protobuf field (wire type 2).
pub fn put_len_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}
