//! Capture files: a recorded sequence of frames (see docs/capture-format.md).
//! Layout: the 8-byte magic `SKYHCAP1`, then per frame a u32 big-endian length
//! and the frame bytes.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"SKYHCAP1";
/// Frames larger than this are refused, so a corrupt length cannot exhaust memory.
pub const MAX_FRAME: u32 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("capture I/O: {0}")]
    Io(#[from] io::Error),
    #[error("capture does not start with the SKYHCAP1 magic")]
    BadMagic,
    #[error("capture frame {index} claims {len} bytes, over the {MAX_FRAME} byte limit")]
    FrameTooLarge { index: u64, len: u32 },
    #[error("capture ends inside frame {index}")]
    Truncated { index: u64 },
}

pub struct CaptureWriter<W: Write> {
    out: W,
    written: u64,
}

impl CaptureWriter<BufWriter<std::fs::File>> {
    pub fn create(path: &Path) -> Result<Self, CaptureError> {
        CaptureWriter::new(BufWriter::new(std::fs::File::create(path)?))
    }
}

impl<W: Write> CaptureWriter<W> {
    pub fn new(mut out: W) -> Result<Self, CaptureError> {
        out.write_all(MAGIC)?;
        Ok(Self { out, written: 0 })
    }

    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), CaptureError> {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if len > MAX_FRAME {
            return Err(CaptureError::FrameTooLarge {
                index: self.written,
                len,
            });
        }
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(frame)?;
        self.written += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), CaptureError> {
        Ok(self.out.flush()?)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

pub struct CaptureReader<R: Read> {
    input: R,
    index: u64,
}

impl CaptureReader<BufReader<std::fs::File>> {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        CaptureReader::new(BufReader::new(std::fs::File::open(path)?))
    }
}

impl<R: Read> CaptureReader<R> {
    pub fn new(mut input: R) -> Result<Self, CaptureError> {
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|_| CaptureError::BadMagic)?;
        if &magic != MAGIC {
            return Err(CaptureError::BadMagic);
        }
        Ok(Self { input, index: 0 })
    }

    /// The next frame, or `None` at a clean end of file.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, CaptureError> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.input.read(&mut len[got..])? {
                0 if got == 0 => return Ok(None),
                0 => return Err(CaptureError::Truncated { index: self.index }),
                n => got += n,
            }
        }
        let len = u32::from_be_bytes(len);
        if len > MAX_FRAME {
            return Err(CaptureError::FrameTooLarge {
                index: self.index,
                len,
            });
        }
        let mut frame = vec![0u8; len as usize];
        self.input
            .read_exact(&mut frame)
            .map_err(|_| CaptureError::Truncated { index: self.index })?;
        self.index += 1;
        Ok(Some(frame))
    }
}

impl<R: Read> Iterator for CaptureReader<R> {
    type Item = Result<Vec<u8>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

/// Writes all frames to a new capture file.
pub fn write_capture(path: &Path, frames: &[Vec<u8>]) -> Result<(), CaptureError> {
    let mut w = CaptureWriter::create(path)?;
    for f in frames {
        w.write_frame(f)?;
    }
    w.flush()
}

/// Reads a whole capture file.
pub fn read_capture(path: &Path) -> Result<Vec<Vec<u8>>, CaptureError> {
    CaptureReader::open(path)?.collect()
}
