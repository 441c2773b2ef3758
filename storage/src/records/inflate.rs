//! Streaming, bounded decompression of a batch's records for [`super::validate_records`],
//! through the codec crates Kafka clients' formats need (flate2, snap, lz4, zstd):
//!
//! - gzip (1): RFC 1952 members, back to back (Java's `GZIPInputStream` reads several);
//!   each member's CRC-32 and size trailer is checked.
//! - snappy (2): either snappy-java's ("xerial") framing, which Java and kafka-python
//!   write — the 8-byte magic `82 'SNAPPY' 00`, two i32 versions, then blocks of
//!   `length i32` + one raw snappy block — or, without that magic, one raw snappy block
//!   (librdkafka, kafkajs). A raw block can only be decoded whole, so its declared size is
//!   checked before anything is allocated: at most [`SNAPPY_MAX_EXPANSION`] times its
//!   compressed size (no valid block can say more) and within the inflated-size budget.
//! - lz4 (3): one LZ4 frame (Kafka's `KafkaLZ4BlockInputStream` format for magic 2); the
//!   decoder's buffers are bounded by the frame's block size, at most 4 MiB.
//! - zstd (4): zstd frames, back to back; the window may not exceed 2^27 bytes (zstd's
//!   and Kafka's default limit) nor the inflated-size budget.
//!
//! Every codec must reach the end of its input exactly: bytes after the compressed data are
//! refused (CORRUPT_MESSAGE), as consumers would fail on them. Inflated bytes pass through
//! one [`CHUNK`]-sized buffer, and reading stops with MESSAGE_TOO_LARGE as soon as they
//! exceed the budget, so a batch of zeros that inflates to a gigabyte costs neither the
//! memory nor the time of inflating it.

use std::fmt;
use std::io::{self, Read};

use super::{Cut, RecordFault, Source};

/// A compression codec of RecordBatch v2 (attribute bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec with Kafka's id `id` (1-4); `None` for 0 (none) and unknown ids.
    pub fn from_id(id: i16) -> Option<Codec> {
        match id {
            1 => Some(Codec::Gzip),
            2 => Some(Codec::Snappy),
            3 => Some(Codec::Lz4),
            4 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        })
    }
}

/// Bytes inflated per read.
const CHUNK: usize = 64 * 1024;
/// The largest zstd window accepted, as a power of two (zstd's default decoder limit,
/// which Kafka's broker and consumers keep).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// The smallest window zstd lets a decoder limit itself to.
const ZSTD_WINDOW_LOG_MIN: u32 = 10;
/// snappy-java's stream header: magic, then version and compatible version (i32 each).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
/// No raw snappy block inflates to more than this many times its own size: the densest
/// element, a 3-byte copy, emits 64 bytes.
pub(crate) const SNAPPY_MAX_EXPANSION: u64 = 22;

/// A records source that inflates a compressed payload through one reusable buffer.
pub(crate) struct Inflated<'a> {
    codec: Codec,
    decoder: Decoder<'a>,
    buf: Box<[u8]>,
    /// Unread bytes are `buf[pos..len]`.
    pos: usize,
    len: usize,
    /// Inflated bytes before `buf[0]`.
    before: u64,
    /// The budget: inflated bytes allowed in all.
    max: u64,
    /// The decoder reported the end of its data.
    done: bool,
}

impl<'a> Inflated<'a> {
    pub(crate) fn new(codec: Codec, input: &'a [u8], max: u64) -> Result<Self, RecordFault> {
        let corrupt = |e: io::Error| RecordFault::Compression {
            codec,
            reason: e.to_string(),
        };
        let decoder = match codec {
            Codec::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(input)),
            Codec::Snappy => Decoder::Snappy(Snappy::new(input, max)),
            Codec::Lz4 => Decoder::Lz4(Some(lz4::Decoder::new(input).map_err(corrupt)?)),
            Codec::Zstd => {
                let mut d = zstd::stream::read::Decoder::with_buffer(input).map_err(corrupt)?;
                d.window_log_max(zstd_window_log(max)).map_err(corrupt)?;
                Decoder::Zstd(d)
            }
        };
        Ok(Inflated {
            codec,
            decoder,
            buf: vec![0; CHUNK].into_boxed_slice(),
            pos: 0,
            len: 0,
            before: 0,
            max,
            done: false,
        })
    }

    /// Replaces the consumed buffer with the next inflated bytes; false at the end.
    fn refill(&mut self) -> Result<bool, Cut> {
        self.before += self.len as u64;
        self.pos = 0;
        self.len = 0;
        if self.done {
            return Ok(false);
        }
        match self.decoder.read(&mut self.buf) {
            Ok(0) => {
                self.done = true;
                Ok(false)
            }
            Ok(n) => {
                self.len = n;
                if self.before + n as u64 > self.max {
                    return Err(self.too_large());
                }
                Ok(true)
            }
            Err(e) if e.get_ref().is_some_and(|inner| inner.is::<OverBudget>()) => {
                Err(self.too_large())
            }
            Err(e) => Err(Cut::Fault(RecordFault::Compression {
                codec: self.codec,
                reason: e.to_string(),
            })),
        }
    }

    /// Inflates the rest of the payload without looking at it (within the budget): an
    /// error if it does not decode to its end.
    pub(crate) fn drain(&mut self) -> Result<(), Cut> {
        self.pos = self.len;
        while self.refill()? {
            self.pos = self.len;
        }
        Ok(())
    }

    fn too_large(&self) -> Cut {
        Cut::Fault(RecordFault::TooLarge {
            codec: self.codec,
            max: self.max,
        })
    }
}

impl Source for Inflated<'_> {
    #[inline]
    fn byte(&mut self) -> Result<u8, Cut> {
        if self.pos == self.len && !self.refill()? {
            return Err(Cut::End);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), Cut> {
        loop {
            let here = ((self.len - self.pos) as u64).min(n);
            self.pos += here as usize;
            n -= here;
            if n == 0 {
                return Ok(());
            }
            if !self.refill()? {
                return Err(Cut::End);
            }
        }
    }

    #[inline]
    fn consumed(&self) -> u64 {
        self.before + self.pos as u64
    }

    fn at_end(&mut self) -> Result<bool, Cut> {
        Ok(self.pos == self.len && !self.refill()?)
    }
}

/// The largest zstd window for a budget of `max` inflated bytes: a window larger than
/// everything the batch may inflate to is never needed.
pub(super) fn zstd_window_log(max: u64) -> u32 {
    let needed = 64 - max.saturating_sub(1).leading_zeros();
    needed.clamp(ZSTD_WINDOW_LOG_MIN, ZSTD_WINDOW_LOG_MAX)
}

/// One codec's decoder over the compressed payload. `read` returns `Ok(0)` only once the
/// payload decoded completely with no byte left over; anything else is an error.
enum Decoder<'a> {
    Gzip(flate2::bufread::MultiGzDecoder<&'a [u8]>),
    Snappy(Snappy<'a>),
    /// `None` once the frame was finished and checked.
    Lz4(Option<lz4::Decoder<&'a [u8]>>),
    Zstd(zstd::stream::read::Decoder<'static, &'a [u8]>),
}

impl Read for Decoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Snappy(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Lz4(slot) => {
                let Some(d) = slot.as_mut() else {
                    return Ok(0);
                };
                let n = d.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                // The lz4 decoder also stops without error where its input runs out
                // inside the frame: only `finish` tells the two apart.
                if let Some(d) = slot.take() {
                    let (rest, complete) = d.finish();
                    if complete.is_err() {
                        return Err(invalid("the lz4 frame is truncated"));
                    }
                    if !rest.is_empty() {
                        return Err(invalid(format!(
                            "{} bytes follow the lz4 frame",
                            rest.len()
                        )));
                    }
                }
                Ok(0)
            }
        }
    }
}

fn invalid(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

/// A snappy block declared more inflated bytes than the budget allows.
#[derive(Debug)]
struct OverBudget;

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("inflated size over budget")
    }
}

impl std::error::Error for OverBudget {}

/// Kafka's snappy payload: xerial-framed blocks, or one raw block.
struct Snappy<'a> {
    /// Compressed bytes not yet decoded (after the xerial header, if any).
    input: &'a [u8],
    framed: bool,
    /// Unframed, and its one raw block not yet decoded (an empty payload is not a block).
    raw_pending: bool,
    /// The current block, inflated; unread from `pos`.
    block: Vec<u8>,
    pos: usize,
    /// Inflated bytes still allowed.
    budget: u64,
    decoder: snap::raw::Decoder,
}

impl<'a> Snappy<'a> {
    fn new(input: &'a [u8], budget: u64) -> Snappy<'a> {
        let framed = input.len() >= XERIAL_HEADER_LEN && input[..8] == XERIAL_MAGIC;
        Snappy {
            input: if framed {
                &input[XERIAL_HEADER_LEN..]
            } else {
                input
            },
            framed,
            raw_pending: !framed,
            block: Vec::new(),
            pos: 0,
            budget,
            decoder: snap::raw::Decoder::new(),
        }
    }

    /// Inflates the next block into `block`; false when the input is used up.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.input.is_empty() && !self.raw_pending {
            return Ok(false);
        }
        let compressed = if self.framed {
            let Some((length, rest)) = self.input.split_first_chunk::<4>() else {
                return Err(invalid("truncated snappy-java block length"));
            };
            let length = u32::from_be_bytes(*length) as usize;
            if length > rest.len() {
                return Err(invalid(format!(
                    "snappy-java block of {length} bytes, only {} left",
                    rest.len()
                )));
            }
            let (block, after) = rest.split_at(length);
            self.input = after;
            block
        } else {
            self.raw_pending = false;
            std::mem::take(&mut self.input)
        };
        let declared = snap::raw::decompress_len(compressed).map_err(io::Error::other)? as u64;
        if declared > (compressed.len() as u64).saturating_mul(SNAPPY_MAX_EXPANSION) {
            return Err(invalid(format!(
                "a snappy block of {} bytes cannot inflate to the {declared} it declares",
                compressed.len()
            )));
        }
        if declared > self.budget {
            return Err(io::Error::other(OverBudget));
        }
        self.budget -= declared;
        self.block.clear();
        self.block.resize(declared as usize, 0);
        self.pos = 0;
        let written = self
            .decoder
            .decompress(compressed, &mut self.block)
            .map_err(io::Error::other)?;
        self.block.truncate(written);
        Ok(true)
    }
}

impl Read for Snappy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
