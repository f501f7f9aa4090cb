//! SHA-256 as lowercase hex: the one hash of jitgate, for the audit chain and for change
//! fingerprints (ring's implementation).

use ring::digest::{Context, Digest, SHA256, digest};

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&digest(&SHA256, data))
}

/// The SHA-256 of everything `reader` yields, read a block at a time: a large file's
/// digest without holding the file.
pub fn sha256_hex_of(mut reader: impl std::io::Read) -> std::io::Result<String> {
    let mut context = Context::new(&SHA256);
    let mut block = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut block) {
            Ok(0) => return Ok(hex(&context.finish())),
            Ok(n) => context.update(&block[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn hex(d: &Digest) -> String {
    hex_of(d.as_ref())
}

/// `bytes` in lowercase hex (a table lookup per nibble: this runs for every record sealed).
pub fn hex_of(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(DIGITS[usize::from(byte >> 4)] as char);
        hex.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    hex
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_digest_read_in_blocks_is_the_digest_of_the_whole() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(super::sha256_hex_of(&data[..]).unwrap(), super::sha256_hex(&data));
        assert_eq!(
            super::sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
