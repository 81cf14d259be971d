//! Presenting OoD results: the markdown table of FPR95 / AUROC / AUPR and
//! the per-set score-distribution plots (the original draws a KDE plot of
//! ID and OoD scores per set; we draw the same curves as SVG).

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

/// Gaussian kernel density estimate of `values` on `grid`, with Scott's
/// bandwidth (seaborn's default). Values are binned first so millions of
/// scores cost no more than a few thousand.
pub fn kde(values: &[f32], grid: &[f64]) -> Vec<f64> {
    let n = values.len();
    if n == 0 || grid.is_empty() {
        return vec![0.0; grid.len()];
    }
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    let bandwidth = (var.sqrt() * (n as f64).powf(-0.2)).max(1e-6);
    let (lo, hi) = (grid[0], grid[grid.len() - 1]);
    let bins = 2048usize;
    let width = ((hi - lo) / bins as f64).max(1e-12);
    let mut counts = vec![0f64; bins];
    for &v in values {
        let b = (((v as f64 - lo) / width) as isize).clamp(0, bins as isize - 1) as usize;
        counts[b] += 1.0;
    }
    let norm = 1.0 / (n as f64 * bandwidth * (2.0 * std::f64::consts::PI).sqrt());
    grid.iter()
        .map(|&x| {
            counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0.0)
                .map(|(b, &c)| {
                    let centre = lo + (b as f64 + 0.5) * width;
                    let z = (x - centre) / bandwidth;
                    c * (-0.5 * z * z).exp()
                })
                .sum::<f64>()
                * norm
        })
        .collect()
}

/// Draw the densities of ID and OoD scores into an SVG file; `x_label`
/// names the score on the x axis.
pub fn score_density_svg(path: &Path, title: &str, x_label: &str, id_scores: &[f32], ood_scores: &[f32]) -> Result<()> {
    let all = id_scores.iter().chain(ood_scores).copied();
    let (min, max) = all.fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (min, max) = if min <= max { (min as f64, max as f64) } else { (0.0, 1.0) };
    let pad = ((max - min) * 0.1).max(1e-3);
    let grid: Vec<f64> = (0..400).map(|i| min - pad + (max - min + 2.0 * pad) * i as f64 / 399.0).collect();
    let id_density = kde(id_scores, &grid);
    let ood_density = kde(ood_scores, &grid);
    let top = id_density.iter().chain(&ood_density).fold(0.0f64, |m, &v| m.max(v)) * 1.1 + 1e-9;

    let root = SVGBackend::new(path, (640, 400)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(grid[0]..grid[grid.len() - 1], 0.0..top)?;
        chart.configure_mesh().x_desc(x_label).y_desc("density").draw()?;
        for (density, label, colour) in [(&id_density, "ID", BLUE), (&ood_density, "OoD", RED)] {
            chart
                .draw_series(
                    AreaSeries::new(grid.iter().copied().zip(density.iter().copied()), 0.0, colour.mix(0.25))
                        .border_style(colour),
                )?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.mix(0.5).filled()));
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("{e}")).with_context(|| format!("drawing {}", path.display()))
}

/// Mean and sample standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// Format a fraction in percent with two decimals, plus "± std" when
/// there are several runs.
pub fn percent(values: &[f64]) -> String {
    let (mean, std) = mean_std(values);
    if values.len() > 1 {
        format!("{:.2} ± {:.2}", mean * 100.0, std * 100.0)
    } else {
        format!("{:.2}", mean * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kde_integrates_to_one_and_peaks_at_the_mode() {
        let values: Vec<f32> = (0..1000).map(|i| ((i % 100) as f32 / 100.0 - 0.5) * 0.2 + 3.0).collect();
        let grid: Vec<f64> = (0..2001).map(|i| 2.0 + i as f64 / 1000.0).collect();
        let d = kde(&values, &grid);
        let integral: f64 = d.iter().sum::<f64>() * 0.001;
        assert!((integral - 1.0).abs() < 0.01, "{integral}");
        let argmax = d.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert!((grid[argmax] - 3.0).abs() < 0.05);
    }

    #[test]
    fn svg_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("d.svg");
        score_density_svg(&p, "textures", "score", &[1.0, 2.0, 2.5, 3.0], &[0.0, 0.5, 1.0]).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("textures"));
    }

    #[test]
    fn percent_formats_runs() {
        assert_eq!(percent(&[0.5]), "50.00");
        assert_eq!(percent(&[0.5, 0.7]), "60.00 ± 14.14");
    }
}
