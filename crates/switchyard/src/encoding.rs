//! Small text encodings the request path needs.

/// `bytes` as lowercase hex digits, written into a buffer of their size: `hex::encode` pushes
/// one `char` at a time, and key hashes and trace ids are made on every request.
pub fn lower_hex(bytes: &[u8]) -> String {
    let mut digits = vec![0; 2 * bytes.len()];
    match hex::encode_to_slice(bytes, &mut digits) {
        Ok(()) => String::from_utf8(digits).unwrap_or_default(),
        // The buffer is always twice the input; this branch cannot be taken.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_hex_writes_what_hex_encode_writes() {
        for bytes in [&b""[..], b"\x00", b"\x0f\xf0\xab", &[0xff; 32]] {
            assert_eq!(super::lower_hex(bytes), hex::encode(bytes));
        }
    }
}
