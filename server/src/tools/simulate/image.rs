//! The image a simulated camera captures: random bytes cut into chunks, with the SHA-256 the
//! device announces in `image/begin` and the server checks the assembled image against.

use retryd_client::v1::{ImageBegin, ImageChunk};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct SimImage {
    pub name: String,
    bytes: Vec<u8>,
    chunk_bytes: usize,
    total_chunks: u32,
    sha256: [u8; 32],
}

impl SimImage {
    /// `total_chunks` chunks of `chunk_bytes` random bytes, the last one 1 to `chunk_bytes`
    /// long (a real JPEG rarely fills its last chunk). Both counts are at least 1.
    pub fn capture(
        name: String,
        total_chunks: u32,
        chunk_bytes: u32,
        rng: &mut fastrand::Rng,
    ) -> Self {
        let chunk_bytes = chunk_bytes.max(1) as usize;
        let total_chunks = total_chunks.max(1);
        let last = rng.usize(1..=chunk_bytes);
        let size = (total_chunks as usize - 1) * chunk_bytes + last;
        let bytes: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(size).collect();
        let sha256 = Sha256::digest(&bytes).into();
        Self {
            name,
            bytes,
            chunk_bytes,
            total_chunks,
            sha256,
        }
    }

    pub fn total_chunks(&self) -> u32 {
        self.total_chunks
    }

    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// The chunk's bytes; None past the last chunk.
    pub fn chunk(&self, index: u32) -> Option<&[u8]> {
        if index >= self.total_chunks {
            return None;
        }
        let start = index as usize * self.chunk_bytes;
        let end = (start + self.chunk_bytes).min(self.bytes.len());
        Some(&self.bytes[start..end])
    }

    pub fn begin_message(&self) -> ImageBegin {
        ImageBegin {
            image_name: self.name.clone(),
            total_chunks: self.total_chunks,
            size_bytes: self.size() as u32,
            sha256: self.sha256.to_vec(),
        }
    }

    /// None past the last chunk.
    pub fn chunk_message(&self, index: u32) -> Option<ImageChunk> {
        Some(ImageChunk {
            image_name: self.name.clone(),
            index,
            data: self.chunk(index)?.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(chunks: u32, chunk_bytes: u32, seed: u64) -> SimImage {
        SimImage::capture(
            "img_test.jpg".into(),
            chunks,
            chunk_bytes,
            &mut fastrand::Rng::with_seed(seed),
        )
    }

    #[test]
    fn every_chunk_but_the_last_is_full() {
        for seed in 0..50 {
            let image = image(8, 100, seed);
            assert_eq!(image.total_chunks(), 8);
            for index in 0..7 {
                assert_eq!(image.chunk(index).unwrap().len(), 100);
            }
            let last = image.chunk(7).unwrap().len();
            assert!((1..=100).contains(&last), "last chunk of {last} bytes");
            assert_eq!(image.size(), 700 + last);
            assert!(image.chunk(8).is_none());
            assert!(image.chunk_message(8).is_none());
        }
    }

    #[test]
    fn chunks_put_together_are_the_image_and_its_checksum_matches() {
        let image = image(5, 64, 3);
        let mut joined = Vec::new();
        for index in 0..image.total_chunks() {
            let message = image.chunk_message(index).unwrap();
            assert_eq!(message.index, index);
            assert_eq!(message.image_name, "img_test.jpg");
            joined.extend(message.data);
        }
        assert_eq!(joined.len(), image.size());
        let expected: [u8; 32] = Sha256::digest(&joined).into();
        assert_eq!(image.sha256(), expected);
        let begin = image.begin_message();
        assert_eq!(begin.sha256, expected.to_vec());
        assert_eq!(begin.size_bytes as usize, joined.len());
        assert_eq!(begin.total_chunks, 5);
    }

    #[test]
    fn a_one_chunk_image_and_the_seed_decides_the_bytes() {
        let one = image(1, 16, 9);
        assert_eq!(one.total_chunks(), 1);
        assert!((1..=16).contains(&one.size()));
        assert_eq!(image(4, 32, 11).sha256(), image(4, 32, 11).sha256());
        assert_ne!(image(4, 32, 11).sha256(), image(4, 32, 12).sha256());
    }
}
