//! Evaluation records, the printed table, `summary.json` and the reward plot (SVG, no dependency).

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// One evaluation of a policy on the held-out prompts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Evaluation {
    /// 0 = the SFT policy, t = after online iteration t; -1 = the offline-DPO baseline.
    pub iteration: i64,
    /// Mean gold-judge reward (absent with real models: `NaN` is written as `null`).
    pub gold_reward_mean: Option<f64>,
    /// Mean proxy reward-model score.
    pub proxy_reward_mean: f64,
    /// Gold win rate against the SFT policy on the same prompts (ties count one half).
    pub win_rate_vs_sft: Option<f64>,
    /// Mean response length in tokens.
    pub mean_response_tokens: f64,
    /// Sampled estimate of KL(policy || reference): mean of `logp_pi(y) - logp_ref(y)`, `y ~ pi`.
    pub kl_to_reference: f64,
    /// DPO pairs trained on to produce this policy (0 for SFT).
    pub pairs: usize,
    /// Prompts dropped because their picked rewards tied.
    pub ties_dropped: usize,
    /// Wall time of the stages that produced this policy and its evaluation, seconds.
    pub seconds: f64,
}

/// Everything `summary.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Summary {
    /// Online iterations (iteration 0 is the SFT policy).
    pub iterations: Vec<Evaluation>,
    /// The SFT policy.
    pub sft: Evaluation,
    /// The offline-DPO baseline, when it ran.
    pub offline_dpo: Option<Evaluation>,
    /// Total wall time, seconds.
    pub total_seconds: f64,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

/// The evaluation table, one row per policy.
pub fn table(summary: &Summary) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:>6} {:>7} {:>8} {:>8} {:>7} {:>6} {:>5} {:>8}",
        "policy", "gold", "proxy", "win/SFT", "tokens", "KL", "pairs", "ties", "seconds"
    );
    let row = |s: &mut String, name: &str, e: &Evaluation| {
        let _ = writeln!(
            s,
            "{:<12} {:>6} {:>7.3} {:>8} {:>8.1} {:>7.3} {:>6} {:>5} {:>8.1}",
            name,
            opt(e.gold_reward_mean, 3),
            e.proxy_reward_mean,
            opt(e.win_rate_vs_sft, 3),
            e.mean_response_tokens,
            e.kl_to_reference,
            e.pairs,
            e.ties_dropped,
            e.seconds
        );
    };
    for e in &summary.iterations {
        let name = if e.iteration == 0 {
            "sft".to_string()
        } else {
            format!("online t={}", e.iteration)
        };
        row(&mut s, &name, e);
    }
    if let Some(off) = &summary.offline_dpo {
        row(&mut s, "offline DPO", off);
    }
    s
}

/// An SVG line plot of gold and proxy reward per iteration, with the offline baseline as dashed
/// horizontal lines.
pub fn reward_plot_svg(summary: &Summary) -> String {
    let (w, h, pad) = (640.0, 400.0, 60.0);
    let xs: Vec<f64> = summary
        .iterations
        .iter()
        .map(|e| e.iteration as f64)
        .collect();
    let gold: Vec<Option<f64>> = summary
        .iterations
        .iter()
        .map(|e| e.gold_reward_mean)
        .collect();
    let proxy: Vec<f64> = summary
        .iterations
        .iter()
        .map(|e| e.proxy_reward_mean)
        .collect();
    let mut all: Vec<f64> = proxy.clone();
    all.extend(gold.iter().flatten());
    if let Some(off) = &summary.offline_dpo {
        all.push(off.proxy_reward_mean);
        all.extend(off.gold_reward_mean);
    }
    let (mut lo, mut hi) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-6 {
        hi = lo + 1.0;
    }
    let margin = 0.1 * (hi - lo);
    let (lo, hi) = (lo - margin, hi + margin);
    let xmax = xs.iter().cloned().fold(1.0, f64::max);
    let px = |x: f64| pad + x / xmax * (w - 2.0 * pad);
    let py = |y: f64| h - pad - (y - lo) / (hi - lo) * (h - 2.0 * pad);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">Kiln iterative DPO: reward per iteration</text>"#,
        w / 2.0
    );
    let _ = writeln!(
        s,
        r#"<line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        h - pad,
        w - pad,
        h - pad
    );
    let _ = writeln!(
        s,
        r#"<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{}" stroke="black"/>"#,
        h - pad
    );
    for i in 0..=4 {
        let v = lo + (hi - lo) * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{v:.2}</text><line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="#ddd"/>"##,
            pad - 6.0,
            py(v) + 4.0,
            py(v),
            w - pad,
            py(v)
        );
    }
    for &x in &xs {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            px(x),
            h - pad + 18.0,
            x
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">iteration (0 = SFT)</text>"#,
        w / 2.0,
        h - 14.0
    );
    let line = |s: &mut String, pts: Vec<(f64, f64)>, colour: &str, label: &str, ly: f64| {
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (x, y) in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"/>"#,
                px(*x),
                py(*y)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{ly}" fill="{colour}">{label}</text>"#,
            w - pad - 150.0
        );
    };
    let gold_pts: Vec<(f64, f64)> = xs
        .iter()
        .zip(&gold)
        .filter_map(|(x, g)| g.map(|g| (*x, g)))
        .collect();
    if !gold_pts.is_empty() {
        line(
            &mut s,
            gold_pts,
            "#d62728",
            "gold reward (online)",
            pad + 10.0,
        );
    }
    line(
        &mut s,
        xs.iter().cloned().zip(proxy.iter().cloned()).collect(),
        "#1f77b4",
        "proxy reward (online)",
        pad + 26.0,
    );
    if let Some(off) = &summary.offline_dpo {
        let mut dashed = |v: f64, colour: &str, label: &str, ly: f64| {
            let _ = writeln!(
                s,
                r#"<line x1="{pad}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="{colour}" stroke-dasharray="6,4"/>"#,
                py(v),
                w - pad,
                py(v)
            );
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{ly}" fill="{colour}">{label}</text>"#,
                w - pad - 150.0
            );
        };
        if let Some(g) = off.gold_reward_mean {
            dashed(g, "#d62728", "- - gold (offline DPO)", pad + 42.0);
        }
        dashed(
            off.proxy_reward_mean,
            "#1f77b4",
            "- - proxy (offline DPO)",
            pad + 58.0,
        );
    }
    s.push_str("</svg>\n");
    s
}
