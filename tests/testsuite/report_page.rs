//! The report page as a person sees it: a small pipeline writes it, headless
//! Chromium renders it (scripts/report_screenshot.sh for the screenshot,
//! `--dump-dom` for the document the browser built), and the test checks
//! that the screenshot is not blank and that every number of the table is
//! in the DOM. Skips with a message where Chromium is absent (CI).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Ws;
use toe_pipe::ops::{Evaluation, Score, ScoreMetrics, SetMetrics};
use toe_pipe::toe::report::score_density_svg;

/// `CHROMIUM` if set (and there), else `chromium` or `chromium-browser` on
/// the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        let out = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().ok()?;
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
    })
}

/// Upstream cmd nodes copy hand-made results and plots, so the page has a
/// DAG to show; the report reads them with their lineage.
const PIPELINE: &str = r#"
[pipeline]
name = "page"

[[node]]
id = "eval_${run}"
for_each.run = ["a0", "a1", "b0"]
cmd = "cp ${in.results} ${out.results} && cp -r ${in.plots}/. ${out.plots}"
sources.results = "data/${run}.json"
sources.plots = "data/plots_${run}"
outputs.results = "json"
outputs.plots = "dir"

[[node]]
id = "report"
op = "report"
inputs.results = ["eval_a0.results", "eval_a1.results", "eval_b0.results"]
inputs.plots = ["eval_a0.plots", "eval_a1.plots", "eval_b0.plots"]
inputs.lineage = "@lineage"
params.title = "A page for the browser"
outputs.table = { path = "out/table.md" }
outputs.page = { path = "out/report.html" }
"#;

fn write_inputs(ws: &Ws) {
    let sets = |shift: f64| {
        vec![
            SetMetrics { name: "near".into(), fpr95: 0.61 + shift, auroc: 0.70 - shift, aupr: 0.8 },
            SetMetrics { name: "far".into(), fpr95: 0.23 + shift, auroc: 0.93 - shift, aupr: 0.95 },
        ]
    };
    for (run, variant, shift) in [("a0", "word", 0.0), ("a1", "word", 0.013), ("b0", "no head", 0.05)] {
        let scores = if variant == "word" {
            vec![ScoreMetrics::from_sets(Score::Energy, sets(shift)), ScoreMetrics::from_sets(Score::Msp, sets(shift))]
        } else {
            vec![ScoreMetrics::from_sets(Score::Knn, sets(shift))]
        };
        let e = Evaluation::new(variant.into(), Some(0.9 + shift), scores);
        ws.write(&format!("data/{run}.json"), &serde_json::to_string_pretty(&e).unwrap());
        let dir = ws.path(&format!("data/plots_{run}"));
        std::fs::create_dir_all(&dir).unwrap();
        let id: Vec<f32> = (0..200).map(|i| 2.0 + (i as f32 * 0.37).sin()).collect();
        let ood: Vec<f32> = (0..200).map(|i| (i as f32 * 0.53).cos()).collect();
        for set in ["near", "far"] {
            for file in [format!("{set}.svg"), format!("{set}.msp.svg"), format!("{set}.knn.svg")] {
                score_density_svg(&dir.join(file), set, "score", &id, &ood).unwrap();
            }
        }
    }
    ws.write("page.toml", PIPELINE);
}

fn render(browser: &Path, page: &Path, png: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/report_screenshot.sh");
    let shot = Command::new(&script)
        .arg(page)
        .arg(png)
        .args(["1200", "1400"])
        .env("CHROMIUM", browser)
        .output()
        .expect("run scripts/report_screenshot.sh");
    assert!(shot.status.success(), "screenshot failed: {}", String::from_utf8_lossy(&shot.stderr));
    let dom = Command::new("timeout")
        .arg("120")
        .arg(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium --dump-dom");
    assert!(dom.status.success(), "chromium --dump-dom failed: {}", String::from_utf8_lossy(&dom.stderr));
    String::from_utf8(dom.stdout).expect("the DOM is UTF-8")
}

#[test]
fn headless_chromium_shows_the_page_with_every_number() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: no Chromium (apt-get install chromium, or set CHROMIUM) to render the report page");
        return;
    };
    let ws = Ws::new();
    write_inputs(&ws);
    ws.run("page.toml");
    let png = ws.path("shot.png");
    let dom = render(&browser, &ws.path("out/report.html"), &png);

    // Every number of the markdown table, as the browser parsed the page.
    let table = ws.read("out/table.md");
    let mut numbers = 0;
    for line in
        table.lines().filter(|l| l.starts_with("| near") || l.starts_with("| far") || l.starts_with("| average"))
    {
        for cell in line.split('|').map(str::trim).skip(5).filter(|c| !c.is_empty()) {
            assert!(dom.contains(&format!(">{cell}</td>")), "{cell} (from {line:?}) is not in the DOM");
            numbers += 1;
        }
    }
    assert_eq!(numbers, 3 * 3 * 4, "3 groups x 3 sets x (FPR95, AUROC, AUPR, ID acc.)");
    assert!(dom.contains("61.65 ± 0.92"), "the mean ± std of the word runs' FPR95 on near");
    for node in ["eval_a0", "eval_a1", "eval_b0"] {
        assert!(dom.contains(&format!("<tr id=\"node-{node}\">")), "{node} has no row in the DOM");
    }

    // Not blank: a white page with dark text, coloured table cells, the
    // blue and red densities and the DAG's boxes.
    let img = image::open(&png).expect("a PNG screenshot").to_rgb8();
    let total = (img.width() * img.height()) as f64;
    let non_white = img.pixels().filter(|p| p.0.iter().any(|&c| c < 235)).count() as f64;
    let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 90)).count();
    let blueish = img.pixels().filter(|p| p.0[2] > 150 && p.0[0] < 150 && p.0[1] < 150).count();
    assert!(non_white / total > 0.02, "the screenshot is nearly blank ({:.4} non-white)", non_white / total);
    assert!(dark > 1000, "no text in the screenshot ({dark} dark pixels)");
    assert!(blueish > 100, "no ID density curves in the screenshot ({blueish} blue pixels)");
}
