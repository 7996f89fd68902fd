//! Keys and values of every layer of one sequence, kept outside the model so that the engine
//! can hold them between requests and start new sequences from copies of a prefix (the
//! prefix cache).

use candle_core::Tensor;

/// Keys and values of every layer for one sequence.
///
/// Each layer's keys and values live in buffers with room to grow, (1, kv heads, capacity,
/// head dim), written in place as positions are added: appending a token copies that token
/// only, not the whole cache (`Tensor::cat` per step cost O(length) per token and layer).
/// Capacity grows by a quarter (at least a chunk of positions): little memory held beyond
/// what a sequence uses, and growth copies stay a small multiple of the sequence's length in
/// all. A shared prefix is handed out as a copy ([`KvCache::prefix`]), so sequences started
/// from one cached prefix never write into each other's buffers.
#[derive(Default)]
pub struct KvCache {
    pub(super) layers: Vec<Option<LayerKv>>,
    pub(super) len: usize,
}

pub(super) struct LayerKv {
    k: Tensor,
    v: Tensor,
}

/// Positions a layer's buffers first hold, and the step they grow by at least.
const KV_CHUNK: usize = 256;

impl LayerKv {
    fn capacity(&self) -> usize {
        self.k.dims()[2]
    }

    /// Writes `k`, `v` (1, heads, seq, dim) at positions `pos..pos + seq`, growing the
    /// buffers if needed (at most to `max_len`), and returns views of positions `0..pos + seq`.
    pub(super) fn append(
        slot: &mut Option<LayerKv>,
        k: &Tensor,
        v: &Tensor,
        pos: usize,
        max_len: usize,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (b, heads, seq, dim) = k.dims4()?;
        let total = pos + seq;
        let have = slot.as_ref().map_or(0, |l| l.capacity());
        if total > have {
            let capacity = (have + have / 4)
                .max(total.next_multiple_of(KV_CHUNK))
                .min(max_len.max(total));
            let grown = LayerKv {
                k: Tensor::zeros((b, heads, capacity, dim), k.dtype(), k.device())?,
                v: Tensor::zeros((b, heads, capacity, dim), v.dtype(), v.device())?,
            };
            if let Some(old) = slot.as_ref().filter(|_| pos > 0) {
                grown
                    .k
                    .slice_set(&old.k.narrow(2, 0, pos)?.contiguous()?, 2, 0)?;
                grown
                    .v
                    .slice_set(&old.v.narrow(2, 0, pos)?.contiguous()?, 2, 0)?;
            }
            *slot = Some(grown);
        }
        let layer = slot.as_ref().expect("allocated above");
        layer.k.slice_set(&k.contiguous()?, 2, pos)?;
        layer.v.slice_set(&v.contiguous()?, 2, pos)?;
        Ok((layer.k.narrow(2, 0, total)?, layer.v.narrow(2, 0, total)?))
    }
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A cache of its own holding the first `keep` positions of this one (a shared prefix),
    /// copied once into buffers of exactly that size: sequences started from one cached
    /// prefix never write into each other's buffers.
    pub fn prefix(&self, keep: usize) -> candle_core::Result<KvCache> {
        let keep = keep.min(self.len);
        if keep == 0 {
            return Ok(KvCache::default());
        }
        let copy = |t: &Tensor| -> candle_core::Result<Tensor> {
            let view = t.narrow(2, 0, keep)?;
            if view.is_contiguous() {
                // A view into the shared buffer (one head): copy it into one of its own.
                let own = Tensor::zeros(view.shape(), view.dtype(), view.device())?;
                own.slice_set(&view, 2, 0)?;
                Ok(own)
            } else {
                view.contiguous()
            }
        };
        let layers = self
            .layers
            .iter()
            .map(|layer| {
                let layer = layer
                    .as_ref()
                    .ok_or_else(|| candle_core::Error::Msg("a layer holds no keys".into()))?;
                Ok(Some(LayerKv {
                    k: copy(&layer.k)?,
                    v: copy(&layer.v)?,
                }))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(KvCache { layers, len: keep })
    }

    /// Bytes held (buffers' whole capacity).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|l| (l.k.elem_count() + l.v.elem_count()) * l.k.dtype().size_in_bytes())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn a_prefix_copy_is_its_own() {
        let device = Device::Cpu;
        let kv =
            |value: f32, seq: usize| Tensor::full(value, (1, 2, seq, 4), &device).expect("tensor");
        let mut slot = None;
        LayerKv::append(&mut slot, &kv(1.0, 3), &kv(1.0, 3), 0, 1024).expect("append");
        let cache = KvCache {
            layers: vec![slot],
            len: 3,
        };
        // Two sequences continue the same prefix differently.
        let (mut a, mut b) = (
            cache.prefix(3).expect("copy"),
            cache.prefix(3).expect("copy"),
        );
        assert_eq!(a.layers[0].as_ref().map(LayerKv::capacity), Some(3));
        let (ka, _) =
            LayerKv::append(&mut a.layers[0], &kv(2.0, 1), &kv(2.0, 1), 3, 1024).expect("append");
        let (kb, _) =
            LayerKv::append(&mut b.layers[0], &kv(3.0, 1), &kv(3.0, 1), 3, 1024).expect("append");
        let last = |k: &Tensor| -> Vec<f32> {
            k.narrow(2, 3, 1)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("values")
        };
        assert_eq!(last(&ka), [2.0; 8]);
        assert_eq!(last(&kb), [3.0; 8]);
        // One key head: the narrowed buffer is a contiguous view, copied all the same.
        let one =
            |value: f32, seq: usize| Tensor::full(value, (1, 1, seq, 4), &device).expect("tensor");
        let mut slot = None;
        LayerKv::append(&mut slot, &one(5.0, 3), &one(5.0, 3), 0, 1024).expect("append");
        let mut single = KvCache {
            layers: vec![slot],
            len: 3,
        };
        let copy = single.prefix(2).expect("copy");
        let layer = copy.layers[0].as_ref().expect("layer");
        assert_eq!((copy.len(), layer.capacity()), (2, 2));
        assert_eq!(single.prefix(9).expect("copy").len(), 3);
        // Writing where the copy came from leaves the copy as it was.
        LayerKv::append(&mut single.layers[0], &one(6.0, 2), &one(6.0, 2), 0, 1024)
            .expect("overwrite");
        let values =
            |t: &Tensor| -> Vec<f32> { t.flatten_all().and_then(|t| t.to_vec1()).expect("values") };
        assert_eq!(values(&layer.k), [5.0; 8]);
        // Growing past the first chunk keeps what was written.
        let (k, _) = LayerKv::append(
            &mut a.layers[0],
            &kv(4.0, KV_CHUNK),
            &kv(4.0, KV_CHUNK),
            4,
            4096,
        )
        .expect("grow");
        assert_eq!(k.dims()[2], 4 + KV_CHUNK);
        assert_eq!(last(&k), [2.0; 8]);
    }
}
