//! [`Summary`]: what a run produced (`summary.json`): one [`Evaluation`] per policy (SFT, each
//! online iteration, the offline baseline), printed as a table ([`Summary`]'s `Display`), judged
//! in one line ([`Summary::verdict`]) and plotted ([`reward_plot_svg`], `reward_plot.svg`).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::config::Algorithm;
use crate::evaluate::{Evaluation, Interval, nan_as_null};

/// Everything `summary.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Summary {
    /// DPO or RRHF.
    pub algorithm: Algorithm,
    /// The SFT policy pi_0 (its `seconds`: the setup and its evaluation).
    pub sft: Evaluation,
    /// The policy after each online iteration, `t = 1..=T`.
    pub online: Vec<Evaluation>,
    /// The offline baseline (same algorithm and steps on pi_0's samples), when it ran.
    pub offline: Option<Evaluation>,
    /// Total wall time of this process, seconds.
    #[serde(with = "nan_as_null")]
    pub total_seconds: f64,
    /// `true` when no online iteration found a pair (DPO) or ranked prompt (RRHF) to train on, so
    /// every online policy is the SFT policy carried over (e.g. a reward model that scores every
    /// response the same). The table and the verdict say so too.
    pub nothing_trained: bool,
    /// Peers over all processes (devices times processes) that ran every training, generation,
    /// annotation and reference log-prob stage.
    pub peers: usize,
    /// Processes of the run (1 without a torchrun launch); evaluation, prompt drawing and pair
    /// selection run on rank 0.
    pub processes: usize,
}

impl Summary {
    /// Whether the online iterations trained nothing at all (no pairs in any of them).
    pub fn online_trained_nothing(&self) -> bool {
        !self.online.is_empty() && self.online.iter().all(|e| e.pairs == 0)
    }

    /// `(iteration, evaluation)` for SFT (0) and every online iteration.
    fn rows_online(&self) -> Vec<(usize, &Evaluation)> {
        std::iter::once(&self.sft)
            .chain(&self.online)
            .enumerate()
            .collect()
    }

    /// One line comparing the last online policy with SFT and the offline baseline.
    pub fn verdict(&self) -> String {
        verdict(self)
    }
}

impl std::fmt::Display for Summary {
    /// The evaluation table, one row per policy (with 95 % bootstrap intervals of the gold gain
    /// and the win rate when a judge exists).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&table(self))
    }
}

/// The line the table and the verdict print when nothing was trained.
pub const NOTHING_TRAINED: &str = "NOTHING WAS TRAINED: no online iteration found a pair to train on \
(every prompt's responses tied under the reward model), so every online row evaluates the SFT policy";

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

fn ci(v: Option<Interval>) -> String {
    v.map_or("-".to_string(), |i| {
        format!("[{:+.2},{:+.2}]", i.low, i.high)
    })
}

fn ci_plain(v: Option<Interval>) -> String {
    v.map_or("-".to_string(), |i| format!("[{:.2},{:.2}]", i.low, i.high))
}

/// The evaluation table, one row per policy (with 95 % bootstrap intervals of the gold gain and
/// the win rate when a gold judge exists).
fn table(summary: &Summary) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<13} {:>6} {:>15} {:>7} {:>8} {:>13} {:>7} {:>7} {:>6} {:>5} {:>8}",
        "policy",
        "gold",
        "gain 95% CI",
        "proxy",
        "win/SFT",
        "win 95% CI",
        "tokens",
        "KL",
        "pairs",
        "ties",
        "seconds"
    );
    let row = |s: &mut String, name: &str, e: &Evaluation| {
        let _ = writeln!(
            s,
            "{:<13} {:>6} {:>15} {:>7.3} {:>8} {:>13} {:>7.1} {:>7.3} {:>6} {:>5} {:>8.1}",
            name,
            opt(e.gold_reward_mean, 3),
            ci(e.gold_gain_ci),
            e.proxy_reward_mean,
            opt(e.win_rate_vs_sft, 3),
            ci_plain(e.win_rate_ci),
            e.mean_response_tokens,
            e.kl_to_sft,
            e.pairs,
            e.ties_dropped,
            e.seconds
        );
    };
    for (t, e) in summary.rows_online() {
        let name = if t == 0 {
            "sft".to_string()
        } else {
            format!("online t={t}")
        };
        row(&mut s, &name, e);
    }
    if let Some(off) = &summary.offline {
        row(
            &mut s,
            &format!("offline {}", summary.algorithm.to_string().to_uppercase()),
            off,
        );
    }
    if summary.nothing_trained {
        let _ = writeln!(s, "{NOTHING_TRAINED}");
    }
    s
}

/// An SVG line plot of gold and proxy reward per iteration, with the offline baseline as dashed
/// horizontal lines.
pub fn reward_plot_svg(summary: &Summary) -> String {
    let (w, h, pad) = (640.0, 400.0, 60.0);
    let rows = summary.rows_online();
    let xs: Vec<f64> = rows.iter().map(|(t, _)| *t as f64).collect();
    let gold: Vec<Option<f64>> = rows.iter().map(|(_, e)| e.gold_reward_mean).collect();
    let proxy: Vec<f64> = rows.iter().map(|(_, e)| e.proxy_reward_mean).collect();
    let mut all: Vec<f64> = proxy.clone();
    all.extend(gold.iter().flatten());
    if let Some(off) = &summary.offline {
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
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">Kiln online iterations: reward per iteration</text>"#,
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
    if let Some(off) = &summary.offline {
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
            dashed(g, "#d62728", "- - gold (offline)", pad + 42.0);
        }
        dashed(
            off.proxy_reward_mean,
            "#1f77b4",
            "- - proxy (offline)",
            pad + 58.0,
        );
    }
    s.push_str("</svg>\n");
    s
}

/// One line comparing the last online policy with SFT and the offline baseline.
fn verdict(summary: &Summary) -> String {
    let rows = summary.rows_online();
    let (Some((_, last)), off) = (rows.last(), summary.offline.as_ref()) else {
        return String::new();
    };
    if summary.nothing_trained {
        return NOTHING_TRAINED.to_string();
    }
    match (
        summary.sft.gold_reward_mean,
        last.gold_reward_mean,
        off.and_then(|o| o.gold_reward_mean),
    ) {
        (Some(s), Some(on), Some(offg)) => format!(
            "gold reward: SFT {s:.3} -> online {on:.3} (win rate {}) vs offline {offg:.3} (win rate {}): online {}",
            opt(last.win_rate_vs_sft, 3),
            opt(off.and_then(|o| o.win_rate_vs_sft), 3),
            if on > offg { "ahead" } else { "NOT ahead" }
        ),
        (Some(s), Some(on), None) => format!("gold reward: SFT {s:.3} -> online {on:.3}"),
        _ => match off {
            Some(o) => format!(
                "proxy reward: SFT {:.3} -> online {:.3} vs offline {:.3}",
                summary.sft.proxy_reward_mean, last.proxy_reward_mean, o.proxy_reward_mean
            ),
            None => format!(
                "proxy reward: SFT {:.3} -> online {:.3}",
                summary.sft.proxy_reward_mean, last.proxy_reward_mean
            ),
        },
    }
}
