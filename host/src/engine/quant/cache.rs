//! The weight cache: converted weights kept on disk and mapped back, so that a model's second
//! load converts nothing.
//!
//! Converting a GGUF file's weights into the kernels' layouts ([`super::formats`]) was most of
//! a model's load time. The first load of a file writes what it converted to one entry of the
//! cache folder; later loads map that entry and hand its arrays to the kernels in place, as
//! llama.cpp maps the GGUF file itself: pages come in on the first forward pass, stay in the
//! page cache between runs, and are shared by every process that loads the same model.
//!
//! An entry is named by the model file's name and a key: SHA-256 of the layout version, the
//! byte order, the file's size, its whole header (metadata and tensor table, the vocabulary
//! included) and 16 samples of 64 KiB spread over its tensor data. Hashing the whole file would
//! cost more than the load it saves (SHA-256 runs at about 1.1 GB/s here: 0.45 s for a 491 MB
//! file), and two files alike in header, size and every sample but not elsewhere are not
//! files anyone makes (a fine-tune changes every tensor). An entry keyed so stays valid
//! wherever the file is copied or moved, and a file changed in place gets a new one; the
//! entries of other files of the same name are removed when one is written.
//!
//! Layout: [`MAGIC`], then each array at an offset that is a multiple of 64, then the index
//! (JSON: per tensor, its type, shape and arrays), then the index's offset and length (two
//! little-endian `u64`) and [`MAGIC`] again. An entry is written to a temporary file and
//! renamed into place: a reader finds a whole entry or none, never one being written, and an
//! entry is never changed once in place. Every array is checked against the tensor the file
//! declares before it is used (type, shape, length, bounds, alignment); an entry that fails
//! is removed and written again.
//!
//! A writer killed mid-write leaves its temporary file, named with its process id: the next
//! writer of an entry for the same file name removes it once that process is gone.
//!
//! A mapped entry must not be truncated while a model uses it (as with llama.cpp's mapped
//! GGUF, the process would fault): plugboard only ever replaces one by renaming, which leaves
//! the old file to whoever still maps it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Content;
use memmap2::Mmap;
use sha2::{Digest, Sha256};

use super::formats::{Arrays, Buffer, ConvertError, Weights};

/// First and last bytes of every entry.
const MAGIC: &[u8; 16] = b"plugboard-weight";

/// Bumped whenever [`formats`] lays weights out differently: old entries then miss.
const LAYOUT_VERSION: u32 = 3;

/// Arrays start at multiples of this (a cache line; any SIMD load is aligned).
const ALIGN: u64 = 64;

/// Samples of the tensor data that go into the key, and their size.
const SAMPLES: u64 = 16;
const SAMPLE_BYTES: u64 = 64 << 10;

/// What one load does with the cache: use an entry, write one, or neither.
pub struct WeightCache {
    state: State,
}

enum State {
    Off,
    /// The entry's weights, validated, taken one by one as the model asks for them.
    Reading {
        path: PathBuf,
        weights: HashMap<String, Weights>,
    },
    Writing(Writer),
}

/// What [`WeightCache::finish`] did, for the load's log line and `plugboard bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    /// No cache: turned off, not a CPU model, or the folder cannot be written.
    Off,
    /// The weights came from the cache.
    Mapped,
    /// The weights were converted and the cache now holds them.
    Written,
}

/// One tensor in an entry's index.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    /// The GGUF type it was converted from (`Q4K` …), as candle names it.
    dtype: String,
    rows: usize,
    cols: usize,
    /// Each array's byte offset and length, in [`super::formats::Kind`]'s field order.
    arrays: Vec<(u64, u64)>,
}

impl WeightCache {
    /// A load that neither reads nor writes the cache.
    pub fn off() -> WeightCache {
        WeightCache { state: State::Off }
    }

    /// The cache in `dir` for the GGUF file at `path`: its entry when there is a valid one,
    /// otherwise a new entry to write. Never an error: a cache that cannot be used is logged
    /// and the load converts, as it would without one.
    pub fn open(dir: &Path, path: &Path, content: &Content) -> WeightCache {
        let key = match key_of(path, content) {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(file = %path.display(), "weight cache: cannot read the model file for its key: {e}");
                return WeightCache::off();
            }
        };
        let stem = entry_stem(path);
        let entry = dir.join(format!("{stem}-{}.weights", &key[..16]));
        if entry.exists() {
            match read_entry(&entry, &key, content) {
                Ok(weights) => {
                    return WeightCache {
                        state: State::Reading {
                            path: entry,
                            weights,
                        },
                    };
                }
                Err(e) => {
                    tracing::warn!(entry = %entry.display(), "weight cache: entry unusable, converting again: {e}");
                    let _ = std::fs::remove_file(&entry);
                }
            }
        }
        match Writer::create(dir, entry, stem, key) {
            Ok(writer) => WeightCache {
                state: State::Writing(writer),
            },
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "weight cache: cannot write here, so every load converts the weights (--weight-cache off turns the cache off): {e}");
                WeightCache::off()
            }
        }
    }

    /// The cached weights of tensor `name`, if the entry holds them.
    pub fn take(&mut self, name: &str) -> Option<Weights> {
        match &mut self.state {
            State::Reading { weights, .. } => weights.remove(name),
            _ => None,
        }
    }

    /// Adds weights just converted to the entry being written.
    pub fn keep(&mut self, name: &str, dtype: GgmlDType, weights: &Weights) {
        if let State::Writing(writer) = &mut self.state
            && let Err(e) = writer.add(name, dtype, weights)
        {
            tracing::warn!(entry = %writer.entry.display(), "weight cache: cannot write the entry: {e}");
            self.state = State::Off;
        }
    }

    /// Puts a written entry in place. Called once the whole model loaded: an entry is never
    /// left with part of a model's tensors.
    pub fn finish(self) -> CacheOutcome {
        match self.state {
            State::Off => CacheOutcome::Off,
            State::Reading { path, .. } => {
                tracing::debug!(entry = %path.display(), "weights mapped from the cache");
                CacheOutcome::Mapped
            }
            State::Writing(writer) => {
                let entry = writer.entry.clone();
                match writer.finish() {
                    Ok(()) => {
                        tracing::info!(entry = %entry.display(), "converted weights cached: the next load maps them");
                        CacheOutcome::Written
                    }
                    Err(e) => {
                        tracing::warn!(entry = %entry.display(), "weight cache: cannot write the entry: {e}");
                        CacheOutcome::Off
                    }
                }
            }
        }
    }
}

/// The default cache folder: `weights` in the user's cache folder (`~/.cache/plugboard`).
pub fn default_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "plugboard").map(|d| d.cache_dir().join("weights"))
}

/// Removes the cache's entries for the GGUF file at `path` (its model is being deleted).
/// Returns the bytes freed.
pub fn forget(dir: &Path, path: &Path) -> u64 {
    remove_entries(dir, &entry_stem(path), None)
}

/// The file name an entry starts with: the model file's, without characters a file name
/// should not carry.
fn entry_stem(path: &Path) -> String {
    path.file_name()
        .map(|n| {
            n.to_string_lossy()
                .replace(|c: char| !c.is_ascii_graphic() || c == '/', "_")
        })
        .unwrap_or_else(|| "model".into())
}

/// What follows `<stem>-<16 hex digits>` in a cache file's name (`.weights` for an entry;
/// `.<pid>.partial` after a leading dot for one being written), if the name has that shape.
fn after_key<'a>(name: &'a str, stem: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(stem)?.strip_prefix('-')?;
    let key = rest.get(..16)?;
    key.bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| &rest[16..])
}

/// Removes the entries of files named `stem` except `keep`; the bytes freed.
fn remove_entries(dir: &Path, stem: &str, keep: Option<&Path>) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut freed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if after_key(&name, stem) == Some(".weights") && keep != Some(path.as_path()) {
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(&path).is_ok() {
                freed += bytes;
            }
        }
    }
    freed
}

/// Removes the partial entries of files named `stem` that a process ended before finishing
/// (killed mid-write: its `Drop` never ran). A partial file names its writer's process id;
/// where the system cannot say whether that process lives (no `/proc`), nothing is removed.
fn remove_abandoned(dir: &Path, stem: &str) {
    let proc = Path::new("/proc");
    let (Ok(entries), true) = (std::fs::read_dir(dir), proc.join("self").exists()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix('.')
            .and_then(|name| after_key(name, stem))
            .and_then(|rest| rest.strip_prefix('.')?.strip_suffix(".partial"))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !proc.join(pid.to_string()).exists()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The entry key of the GGUF file at `path` (see the module's documentation), in hex.
fn key_of(path: &Path, content: &Content) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut hash = Sha256::new();
    hash.update(LAYOUT_VERSION.to_le_bytes());
    hash.update(if cfg!(target_endian = "little") {
        b"le"
    } else {
        b"be"
    });
    hash.update(size.to_le_bytes());
    // Without AVX2 the kernels cover fewer types, so an entry holds fewer tensors.
    hash.update([u8::from(super::Isa::detect() == super::Isa::Scalar)]);
    let header = content.tensor_data_offset.min(size);
    let mut buffer = vec![0u8; SAMPLE_BYTES as usize];
    let mut copy = |file: &mut File, from: u64, len: u64| -> std::io::Result<()> {
        file.seek(SeekFrom::Start(from))?;
        let mut left = len;
        while left > 0 {
            let n = left.min(buffer.len() as u64) as usize;
            file.read_exact(&mut buffer[..n])?;
            hash.update(&buffer[..n]);
            left -= n as u64;
        }
        Ok(())
    };
    copy(&mut file, 0, header)?;
    let data = size - header;
    for i in 0..SAMPLES {
        let from = header + data * i / SAMPLES;
        copy(&mut file, from, SAMPLE_BYTES.min(size - from))?;
    }
    Ok(hex::encode(hash.finalize()))
}

/// An entry's validated weights, or why it cannot be used.
fn read_entry(
    entry: &Path,
    key: &str,
    content: &Content,
) -> Result<HashMap<String, Weights>, String> {
    let file = File::open(entry).map_err(|e| e.to_string())?;
    // SAFETY: entries are never written in place (module documentation): the mapping sees
    // a file that does not change while it is mapped, unless something outside plugboard
    // truncates it, which faults the process as it would llama.cpp's mapped GGUF.
    let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(|e| e.to_string())?);
    let len = map.len();
    let trailer = 16 + MAGIC.len();
    if len < MAGIC.len() + trailer || &map[..MAGIC.len()] != MAGIC || &map[len - 16..] != MAGIC {
        return Err("not a weight cache entry".into());
    }
    let word = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().expect("8 bytes"));
    let (offset, size) = (word(len - trailer), word(len - trailer + 8));
    let index = offset
        .checked_add(size)
        .filter(|end| *end <= (len - trailer) as u64)
        .map(|end| &map[offset as usize..end as usize])
        .ok_or("its index lies outside the file")?;
    let (stored_key, tensors): (String, BTreeMap<String, Stored>) =
        serde_json::from_slice(index).map_err(|e| format!("its index: {e}"))?;
    if stored_key != key {
        return Err("its key is another file's".into());
    }
    let mut weights = HashMap::with_capacity(tensors.len());
    for (name, stored) in tensors {
        let info = content
            .tensor_infos
            .get(&name)
            .ok_or_else(|| format!("tensor {name} is not in the model file"))?;
        let dims = info.shape.dims();
        if format!("{:?}", info.ggml_dtype) != stored.dtype || dims != [stored.rows, stored.cols] {
            return Err(format!(
                "tensor {name} has another type or shape in the model file"
            ));
        }
        let mut arrays = Mapped {
            map: &map,
            places: stored.arrays.iter(),
        };
        let w = Weights::with_arrays(info.ggml_dtype, stored.rows, stored.cols, &mut arrays)
            .map_err(|e| format!("tensor {name}: {e}"))?;
        if arrays.places.next().is_some() || !w.is_consistent() {
            return Err(format!("tensor {name}: {}", ConvertError::Cached));
        }
        weights.insert(name, w);
    }
    Ok(weights)
}

/// Arrays from a mapped entry, at the places its index gives.
struct Mapped<'a> {
    map: &'a Arc<Mmap>,
    places: std::slice::Iter<'a, (u64, u64)>,
}

impl Arrays for Mapped<'_> {
    fn array<T: bytemuck::Pod>(&mut self, len: usize) -> Result<Buffer<T>, ConvertError> {
        let &(offset, bytes) = self.places.next().ok_or(ConvertError::Cached)?;
        if len.checked_mul(size_of::<T>()) != Some(bytes as usize) {
            return Err(ConvertError::Cached);
        }
        Buffer::mapped(self.map, offset as usize, len).ok_or(ConvertError::Cached)
    }
}

/// An entry being written, under a temporary name until [`Writer::finish`].
struct Writer {
    out: BufWriter<File>,
    temporary: PathBuf,
    entry: PathBuf,
    stem: String,
    key: String,
    at: u64,
    index: BTreeMap<String, Stored>,
}

impl Writer {
    fn create(dir: &Path, entry: PathBuf, stem: String, key: String) -> std::io::Result<Writer> {
        std::fs::create_dir_all(dir)?;
        remove_abandoned(dir, &stem);
        let temporary = dir.join(format!(
            ".{stem}-{}.{}.partial",
            &key[..16],
            std::process::id()
        ));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&temporary)?);
        out.write_all(MAGIC)?;
        Ok(Writer {
            out,
            temporary,
            entry,
            stem,
            key,
            at: MAGIC.len() as u64,
            index: BTreeMap::new(),
        })
    }

    fn add(&mut self, name: &str, dtype: GgmlDType, weights: &Weights) -> std::io::Result<()> {
        let mut arrays = Vec::new();
        for bytes in weights.arrays() {
            let padding = self.at.next_multiple_of(ALIGN) - self.at;
            self.out
                .write_all(&[0u8; ALIGN as usize][..padding as usize])?;
            self.at += padding;
            self.out.write_all(bytes)?;
            arrays.push((self.at, bytes.len() as u64));
            self.at += bytes.len() as u64;
        }
        self.index.insert(
            name.to_string(),
            Stored {
                dtype: format!("{dtype:?}"),
                rows: weights.rows,
                cols: weights.cols,
                arrays,
            },
        );
        Ok(())
    }

    /// Completes the entry and renames it into place. On an error the partial file goes
    /// with the writer (`Drop`).
    fn finish(mut self) -> std::io::Result<()> {
        let index = serde_json::to_vec(&(&self.key, &self.index))?;
        self.out.write_all(&index)?;
        self.out.write_all(&self.at.to_le_bytes())?;
        self.out.write_all(&(index.len() as u64).to_le_bytes())?;
        self.out.write_all(MAGIC)?;
        self.out.flush()?;
        std::fs::rename(&self.temporary, &self.entry)?;
        // Older entries of a file of this name (changed since, or another file so named):
        // one model's weights are cached once.
        remove_entries(
            self.entry.parent().unwrap_or(Path::new(".")),
            &self.stem,
            Some(&self.entry),
        );
        Ok(())
    }
}

impl Drop for Writer {
    /// A load that failed, or a cache given up on: the partial file goes.
    fn drop(&mut self) {
        if self.temporary.exists() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::quant::Linear;
    use candle_core::quantized::{QTensor, gguf_file};
    use candle_core::{Device, Tensor};

    const TYPES: [(&str, GgmlDType); 5] = [
        ("q4_0", GgmlDType::Q4_0),
        ("q5_0", GgmlDType::Q5_0),
        ("q8_0", GgmlDType::Q8_0),
        ("q4k", GgmlDType::Q4K),
        ("q6k", GgmlDType::Q6K),
    ];

    /// A GGUF file with one 20 × 512 tensor of each converted type (20 rows: the last octet
    /// padded), values from `seed`.
    fn model_file(path: &Path, seed: u64) {
        let tensors: Vec<(&str, QTensor)> = TYPES
            .iter()
            .enumerate()
            .map(|(i, (name, dtype))| {
                let values: Vec<f32> = (0..20 * 512u64)
                    .map(|j| ((j * 7919 + seed * 104_729 + i as u64) % 2001) as f32 / 1000.0 - 1.0)
                    .collect();
                let t = Tensor::from_vec(values, (20, 512), &Device::Cpu).expect("tensor");
                (*name, QTensor::quantize(&t, *dtype).expect("quantizes"))
            })
            .collect();
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        let mut file = File::create(path).expect("creates");
        gguf_file::write(&mut file, &[], &refs).expect("writes");
    }

    /// Loads every tensor of the file through `cache`; the layers' outputs for one input.
    fn load_all(path: &Path, cache: &mut WeightCache) -> Vec<Vec<f32>> {
        let mut reader = File::open(path).expect("opens");
        let content = Content::read(&mut reader).expect("reads");
        let x = Tensor::from_vec(
            (0..2 * 512)
                .map(|i| (i % 17) as f32 / 8.0 - 1.0)
                .collect::<Vec<f32>>(),
            (2, 512),
            &Device::Cpu,
        )
        .expect("input");
        TYPES
            .iter()
            .map(|(name, _)| {
                let layer =
                    Linear::load(&content, &mut reader, name, &Device::Cpu, cache).expect("loads");
                layer
                    .forward(&x)
                    .and_then(|y| y.flatten_all())
                    .and_then(|y| y.to_vec1())
                    .expect("forward")
            })
            .collect()
    }

    fn open(dir: &Path, path: &Path) -> WeightCache {
        let content = Content::read(&mut File::open(path).expect("opens")).expect("reads");
        WeightCache::open(dir, path, &content)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// A model file (seed 1) in a temporary folder, and the cache folder beside it; `None`
    /// without AVX2, where only Q5_0 is converted (the kernels' tests cover that).
    fn fixture() -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
        if crate::engine::Isa::detect() == crate::engine::Isa::Scalar {
            return None;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let (model, dir) = (tmp.path().join("m.gguf"), tmp.path().join("cache"));
        model_file(&model, 1);
        Some((tmp, model, dir))
    }

    #[test]
    fn a_second_load_maps_what_the_first_converted() {
        let Some((_tmp, model, dir)) = fixture() else {
            return;
        };
        let uncached = load_all(&model, &mut WeightCache::off());

        let mut first = open(&dir, &model);
        assert_eq!(load_all(&model, &mut first), uncached);
        assert_eq!(first.finish(), CacheOutcome::Written);
        let written = entries(&dir);
        assert_eq!(written.len(), 1, "{written:?}");
        assert!(written[0].starts_with("m.gguf-") && written[0].ends_with(".weights"));

        let mut second = open(&dir, &model);
        assert!(matches!(second.state, State::Reading { .. }));
        // Bit for bit: the same arrays, read in place.
        assert_eq!(load_all(&model, &mut second), uncached);
        assert_eq!(second.finish(), CacheOutcome::Mapped);
        assert_eq!(entries(&dir), written);
    }

    #[test]
    fn a_damaged_entry_is_converted_again_and_replaced() {
        let Some((_tmp, model, dir)) = fixture() else {
            return;
        };
        let uncached = load_all(&model, &mut WeightCache::off());
        let mut cache = open(&dir, &model);
        load_all(&model, &mut cache);
        cache.finish();
        let entry = dir.join(&entries(&dir)[0]);
        let whole = std::fs::read(&entry).expect("reads");
        let index_at = whole.len() - 32;
        type Damage = Box<dyn Fn(&mut Vec<u8>)>;
        let damages: [(&str, Damage); 4] = [
            ("truncated", Box::new(|b| b.truncate(b.len() / 2))),
            ("empty", Box::new(|b| b.clear())),
            // The index's offset past the end.
            (
                "index outside",
                Box::new(move |b| {
                    b[index_at..index_at + 8].copy_from_slice(&u64::MAX.to_le_bytes())
                }),
            ),
            // An array's place moved off its alignment: the JSON index says `[64,`.
            (
                "misplaced array",
                Box::new(|b| {
                    let at = b
                        .windows(4)
                        .rposition(|w| w == b"[64,")
                        .expect("an array at 64");
                    b[at + 2] = b'5';
                }),
            ),
        ];
        for (what, damage) in damages {
            let mut bytes = whole.clone();
            damage(&mut bytes);
            std::fs::write(&entry, &bytes).expect("writes");
            let mut cache = open(&dir, &model);
            assert!(
                matches!(cache.state, State::Writing(_)),
                "{what}: not refused"
            );
            assert_eq!(load_all(&model, &mut cache), uncached, "{what}");
            assert_eq!(cache.finish(), CacheOutcome::Written, "{what}");
            assert_eq!(
                std::fs::read(&entry).expect("reads"),
                whole,
                "{what}: not rewritten"
            );
        }
    }

    #[test]
    fn a_changed_file_gets_a_new_entry_and_the_old_one_goes() {
        let Some((_tmp, model, dir)) = fixture() else {
            return;
        };
        let mut cache = open(&dir, &model);
        load_all(&model, &mut cache);
        cache.finish();
        let before = entries(&dir);
        // Same name, same size, same header: only the weights differ.
        model_file(&model, 2);
        let changed = load_all(&model, &mut WeightCache::off());
        let mut cache = open(&dir, &model);
        assert!(
            matches!(cache.state, State::Writing(_)),
            "the old entry was used"
        );
        assert_eq!(load_all(&model, &mut cache), changed);
        assert_eq!(cache.finish(), CacheOutcome::Written);
        let after = entries(&dir);
        assert_eq!(after.len(), 1, "{after:?}");
        assert_ne!(after, before);
        // Deleting the model deletes its entry.
        assert!(forget(&dir, &model) > 0);
        assert!(entries(&dir).is_empty());
    }

    #[test]
    fn what_a_killed_writer_left_goes_and_what_a_live_one_writes_stays() {
        let Some((_tmp, model, dir)) = fixture() else {
            return;
        };
        std::fs::create_dir_all(&dir).expect("a folder");
        // Above any process id Linux hands out (at most 2²²).
        let dead = dir.join(".m.gguf-0123456789abcdef.4294967295.partial");
        let live = dir.join(format!(
            ".m.gguf-0123456789abcdef.{}.partial",
            std::process::id()
        ));
        let other = dir.join(".other.gguf-0123456789abcdef.4294967295.partial");
        for path in [&dead, &live, &other] {
            std::fs::write(path, b"half an entry").expect("written");
        }
        let mut cache = open(&dir, &model);
        load_all(&model, &mut cache);
        assert_eq!(cache.finish(), CacheOutcome::Written);
        if Path::new("/proc/self").exists() {
            assert!(!dead.exists(), "the dead writer's file stayed");
        }
        assert!(live.exists() && other.exists());
    }

    #[test]
    fn a_folder_that_cannot_be_written_loads_without_a_cache() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let model = tmp.path().join("m.gguf");
        model_file(&model, 1);
        // A file where the folder should be.
        let blocked = tmp.path().join("not-a-folder");
        std::fs::write(&blocked, b"").expect("writes");
        let mut cache = open(&blocked, &model);
        assert_eq!(
            load_all(&model, &mut cache),
            load_all(&model, &mut WeightCache::off())
        );
        assert_eq!(cache.finish(), CacheOutcome::Off);
    }
}
