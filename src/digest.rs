//! SHA-256 as lowercase hex: the one hash of jitgate, for the audit chain and for change
//! fingerprints (ring's implementation).

use ring::digest::{Context, Digest, SHA256, digest};

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&digest(&SHA256, data))
}

/// The SHA-256 of everything `reader` yields, read a block at a time: a large file's
/// digest without holding the file.
pub fn sha256_hex_of(reader: impl std::io::Read) -> std::io::Result<String> {
    let mut reader = Sha256Reader::new(reader);
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(reader.hex())
}

/// A reader that takes the SHA-256 of every byte read through it: the digest of a file
/// that is read a part at a time, of exactly what was read.
pub struct Sha256Reader<R> {
    inner: R,
    context: Context,
}

impl<R> Sha256Reader<R> {
    pub fn new(inner: R) -> Self {
        Sha256Reader {
            inner,
            context: Context::new(&SHA256),
        }
    }

    /// The SHA-256 of what was read through it, as lowercase hex.
    pub fn hex(self) -> String {
        hex(&self.context.finish())
    }
}

impl<R: std::io::Read> std::io::Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.context.update(&buf[..n]);
        Ok(n)
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
