//! Choosing the next token from logits: penalties, temperature, top-k, top-p, min-p, a seeded
//! random generator (the same seed gives the same output), and top-k log-probabilities.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How to sample. The defaults are greedy decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (always the most likely token).
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: f32,
    pub min_p: f32,
    /// Divides positive logits (multiplies negative ones) of tokens seen before; 1.0 = off.
    pub repetition_penalty: f32,
    /// Subtracted once from the logit of every token generated before (OpenAI's meaning).
    pub presence_penalty: f32,
    /// Subtracted per occurrence of a token generated before.
    pub frequency_penalty: f32,
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: None,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

/// A token and its log-probability.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Sampler { params, rng }
    }

    /// Applies the penalties for the tokens generated so far (`history`). Run once per token,
    /// before [`Sampler::pick`] (which a constraint may call twice).
    pub fn penalise(&self, logits: &mut [f32], history: &[u32]) {
        let p = &self.params;
        if p.repetition_penalty == 1.0 && p.presence_penalty == 0.0 && p.frequency_penalty == 0.0 {
            return;
        }
        let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for &id in history {
            *counts.entry(id).or_default() += 1;
        }
        for (&id, &count) in &counts {
            let Some(logit) = logits.get_mut(id as usize) else {
                continue;
            };
            if p.repetition_penalty != 1.0 {
                *logit = if *logit > 0.0 {
                    *logit / p.repetition_penalty
                } else {
                    *logit * p.repetition_penalty
                };
            }
            *logit -= p.presence_penalty + p.frequency_penalty * count as f32;
        }
    }

    /// Picks the next token from logits already penalised. `top_logprobs`: how many
    /// alternatives to report (with the chosen token's own log-probability first).
    pub fn pick(
        &mut self,
        logits: &[f32],
        top_logprobs: Option<usize>,
    ) -> (u32, Vec<TokenLogprob>) {
        let logprobs = top_logprobs
            .map(|k| log_softmax_top(logits, k))
            .unwrap_or_default();
        let chosen = if self.params.temperature <= 0.0 {
            argmax(logits)
        } else {
            self.sample_random(logits)
        };
        let mut report = Vec::new();
        if top_logprobs.is_some() {
            report.push(TokenLogprob {
                id: chosen,
                logprob: log_softmax_at(logits, chosen),
            });
            report.extend(logprobs);
        }
        (chosen, report)
    }

    fn sample_random(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u32, l / p.temperature))
            .collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(k) = p.top_k.filter(|k| *k > 0) {
            candidates.truncate(k);
        }
        let max = candidates.first().map_or(0.0, |c| c.1);
        let mut probs: Vec<f32> = candidates.iter().map(|(_, l)| (l - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        // min-p: drop tokens far less likely than the best one.
        let mut keep = probs.len();
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p;
            keep = probs.iter().take_while(|x| **x >= floor).count().max(1);
        }
        // top-p: the smallest head whose mass reaches top_p.
        if p.top_p < 1.0 {
            let mut mass = 0.0;
            let mut n = 0;
            for x in probs.iter().take(keep) {
                mass += x;
                n += 1;
                if mass >= p.top_p {
                    break;
                }
            }
            keep = n.max(1);
        }
        let total: f32 = probs[..keep].iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, x) in probs[..keep].iter().enumerate() {
            r -= x;
            if r <= 0.0 {
                return candidates[i].0;
            }
        }
        candidates[keep - 1].0
    }
}

fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap_or(0)
}

fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln()
}

fn log_softmax_at(logits: &[f32], id: u32) -> f32 {
    logits
        .get(id as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY)
        - log_sum_exp(logits)
}

fn log_softmax_top(logits: &[f32], k: usize) -> Vec<TokenLogprob> {
    let lse = log_sum_exp(logits);
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(order.len());
    if k == 0 {
        return Vec::new();
    }
    order.select_nth_unstable_by(k - 1, |a, b| {
        logits[*b as usize].total_cmp(&logits[*a as usize])
    });
    order.truncate(k);
    order.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
    order
        .into_iter()
        .map(|id| TokenLogprob {
            id,
            logprob: logits[id as usize] - lse,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_best() {
        let mut s = Sampler::new(SamplingParams::default());
        let (id, _) = s.pick(&[0.1, 3.0, 2.0], None);
        assert_eq!(id, 1);
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens() {
        let params = SamplingParams {
            temperature: 1.0,
            seed: Some(7),
            ..Default::default()
        };
        let draw = |params: &SamplingParams| {
            let mut s = Sampler::new(params.clone());
            (0..50)
                .map(|_| s.pick(&[1.0, 1.1, 0.9, 1.05], None).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(&params), draw(&params));
        assert_ne!(
            draw(&params),
            draw(&SamplingParams {
                seed: Some(8),
                ..params.clone()
            })
        );
    }

    #[test]
    fn top_k_one_is_greedy_and_penalties_apply() {
        let params = SamplingParams {
            temperature: 1.0,
            top_k: Some(1),
            frequency_penalty: 10.0,
            seed: Some(1),
            ..Default::default()
        };
        let mut s = Sampler::new(params);
        let mut logits = [0.0, 5.0, 4.0];
        s.penalise(&mut logits, &[1]);
        let (id, logprobs) = s.pick(&logits, Some(2));
        assert_eq!(id, 2, "token 1 was penalised below token 2");
        assert_eq!(logprobs.len(), 3);
        assert_eq!(logprobs[0].id, 2);
    }
}
