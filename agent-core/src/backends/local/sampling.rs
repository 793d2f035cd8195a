//! Choosing the next token: greedy or sampled, under the line's grammar, cheaply.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;

use crate::error::{ModelError, ModelErrorKind};

/// Picks the next token. Greedy (temperature 0): the most likely token, checked against the
/// grammar alone first; only when the grammar refuses it is the grammar applied to the whole
/// vocabulary (262k tokens for Gemma 3), which is what makes grammars slow. With a
/// temperature: a draw among the 40 most likely tokens the grammar allows.
pub(super) fn pick(
    ctx: &LlamaContext<'_>,
    index: i32,
    grammar: Option<&mut LlamaSampler>,
    temperature: f32,
    rng: &mut Rng,
) -> Result<LlamaToken, ModelError> {
    let logits = ctx.get_logits_ith(index);
    if temperature <= 0.0 {
        let best = argmax(logits.iter().copied().enumerate())
            .ok_or_else(|| ModelError::new(ModelErrorKind::Other, "no logits"))?;
        let Some(grammar) = grammar else {
            return Ok(LlamaToken(best as i32));
        };
        let mut one = LlamaTokenDataArray::new(
            vec![LlamaTokenData::new(
                LlamaToken(best as i32),
                logits[best],
                0.0,
            )],
            false,
        );
        grammar.apply(&mut one);
        if one.data[0].logit().is_finite() {
            return Ok(LlamaToken(best as i32));
        }
        let mut all = full_array(logits);
        grammar.apply(&mut all);
        return argmax(all.data.iter().map(|d| (d.id().0 as usize, d.logit())))
            .filter(|&i| logits.get(i).is_some())
            .map(|i| LlamaToken(i as i32))
            .ok_or_else(grammar_dead_end);
    }
    let mut top: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
    let k = 40.min(top.len());
    top.select_nth_unstable_by(k.saturating_sub(1), |a, b| b.1.total_cmp(&a.1));
    top.truncate(k);
    let mut candidates = LlamaTokenDataArray::new(
        top.iter()
            .map(|&(i, l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0))
            .collect(),
        false,
    );
    if let Some(grammar) = grammar {
        grammar.apply(&mut candidates);
        if !candidates.data.iter().any(|d| d.logit().is_finite()) {
            candidates = full_array(logits);
            grammar.apply(&mut candidates);
        }
    }
    let allowed: Vec<(LlamaToken, f32)> = candidates
        .data
        .iter()
        .filter(|d| d.logit().is_finite())
        .map(|d| (d.id(), d.logit()))
        .collect();
    let max = allowed
        .iter()
        .map(|a| a.1)
        .fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = allowed
        .iter()
        .map(|a| f64::from((a.1 - max) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    if allowed.is_empty() || total <= 0.0 {
        return Err(grammar_dead_end());
    }
    let mut draw = rng.next_f64() * total;
    for (w, a) in weights.iter().zip(&allowed) {
        draw -= w;
        if draw <= 0.0 {
            return Ok(a.0);
        }
    }
    Ok(allowed[allowed.len() - 1].0)
}

/// This many identical tokens in a row end the line.
pub(super) const RUNAWAY: usize = 8;

/// The line without the run of one repeated character it ends with (and a dangling `.`),
/// plus the newline that ends a line.
pub(super) fn trim_run(line: &str) -> String {
    let mut out = line.trim_end().to_owned();
    if let Some(last) = out.chars().last() {
        while out.ends_with(last) {
            out.pop();
        }
    }
    let out = out.trim_end_matches('.').trim_end();
    format!("{out}\n")
}

fn grammar_dead_end() -> ModelError {
    ModelError::new(
        ModelErrorKind::InvalidResponse,
        "the grammar allows no token here (a schema the grammar cannot express?)",
    )
}

fn full_array(logits: &[f32]) -> LlamaTokenDataArray {
    LlamaTokenDataArray::new(
        logits
            .iter()
            .enumerate()
            .map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0))
            .collect(),
        false,
    )
}

fn argmax(values: impl Iterator<Item = (usize, f32)>) -> Option<usize> {
    values
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// xorshift64*: enough randomness for sampling, with no dependency.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runaway_line_is_cut_before_its_run() {
        assert_eq!(
            trim_run("ANSWER The result is 452.0000000"),
            "ANSWER The result is 452\n"
        );
        assert_eq!(trim_run("ANSWER ok!!!!!!!!"), "ANSWER ok\n");
    }

    #[test]
    fn argmax_skips_refused_tokens() {
        let values = [(0, 1.0), (1, f32::NEG_INFINITY), (2, 3.0), (3, f32::NAN)];
        assert_eq!(argmax(values.into_iter()), Some(2));
        assert_eq!(argmax([(0, f32::NEG_INFINITY)].into_iter()), None);
    }
}
