//! The `@lineage` input: the records of the actions a node's other inputs
//! came from, as a content-hashed JSON input.

use crate::common::{set, Ws};

/// a -> b -> c -> e, with e also reading the lineage of c's output; d beside.
const PIPELINE: &str = r#"
[pipeline]
name = "lin"

[[node]]
id = "a"
cmd = "cat ${in.src} > ${out.x}"
sources.src = "data/input.txt"
outputs.x = { kind = "text", path = "out/a.txt" }

[[node]]
id = "b"
cmd = "cat ${in.x} ${in.x} > ${out.y}"
inputs.x = "a.x"
params.n = 1
outputs.y = "text"

[[node]]
id = "c"
cmd = "wc -c < ${in.y} > ${out.z}"
inputs.y = "b.y"
outputs.z = "text"

[[node]]
id = "d"
cmd = "echo d > ${out.w}"
outputs.w = "text"

[[node]]
id = "e"
cmd = "cat ${in.z} > /dev/null; cp ${in.lineage} ${out.doc}"
inputs.z = "c.z"
inputs.lineage = "@lineage"
outputs.doc = { kind = "json", path = "out/lineage.json" }
"#;

fn nodes_in(doc: &serde_json::Value) -> Vec<String> {
    doc["actions"].as_array().unwrap().iter().map(|a| a["node"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_lineage_input_holds_the_upstream_records_and_follows_them() {
    let ws = Ws::new();
    ws.write("data/input.txt", "hello\n");
    ws.write("p.toml", PIPELINE);
    let first = ws.run("p.toml");
    assert_eq!(first.ran(), set(["a", "b", "c", "d", "e"]), "{}", first.all());
    let doc: serde_json::Value = serde_json::from_str(&ws.read("out/lineage.json")).unwrap();
    assert_eq!(doc["format"], 1);
    // Upstream first, only what e's other inputs came from (not d).
    assert_eq!(nodes_in(&doc), ["a", "b", "c"]);
    let a = &doc["actions"][0];
    assert_eq!(a["inputs"]["src"][0]["source"], "data/input.txt");
    assert_eq!(a["outputs"]["x"]["path"], "out/a.txt");
    assert_eq!(doc["actions"][1]["params"]["n"], 1);
    assert_eq!(doc["actions"][2]["inputs"]["y"][0]["node"], "b");
    assert!(doc["actions"][2]["duration_s"].as_f64().is_some() && doc["actions"][2]["device"] == "cpu");

    let again = ws.run("p.toml");
    assert!(again.ran().is_empty(), "{}", again.all());
    assert!(ws.toe(&["dag", "p.toml"]).ok().stdout.contains("<- lineage: @lineage"));

    // A forced re-run of a writes the same output (b and c stay cached) but
    // a new record, so e's lineage, and e, change.
    let forced = ws.toe(&["run", "p.toml", "--force", "a"]).ok();
    assert_eq!(forced.ran(), set(["a", "e"]), "{}", forced.all());
    let status = ws.toe(&["status", "p.toml"]).ok();
    assert!(status.stdout.contains("5 fresh, 0 stale"), "{}", status.stdout);

    // A param edit upstream: e re-runs after it, and says why.
    ws.write("p.toml", &PIPELINE.replace("params.n = 1", "params.n = 2"));
    let status = ws.toe(&["status", "p.toml"]).ok();
    assert!(status.stdout.contains("param n: 1 -> 2"), "{}", status.stdout);
    let edited = ws.run("p.toml");
    assert_eq!(edited.ran(), set(["b", "e"]), "{}", edited.all());
    let doc: serde_json::Value = serde_json::from_str(&ws.read("out/lineage.json")).unwrap();
    assert_eq!(doc["actions"][1]["params"]["n"], 2);
}
