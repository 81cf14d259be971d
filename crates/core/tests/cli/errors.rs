//! Bad pipeline files: every error names file:line:col, the node and a
//! fix, and nothing panics.

use crate::common::Ws;

fn check(ws: &Ws, text: &str) -> String {
    ws.write("p.toml", text);
    let out = ws.toe(&["check", "p.toml"]).fails();
    out.stderr
}

#[test]
fn a_cycle_is_printed() {
    let ws = Ws::new();
    let err = check(
        &ws,
        r#"
[[node]]
id = "a"
cmd = "cat ${in.x} > ${out.y}"
inputs.x = "c.z"
outputs.y = "text"

[[node]]
id = "b"
cmd = "cat ${in.x} > ${out.y}"
inputs.x = "a.y"
outputs.y = "text"

[[node]]
id = "c"
cmd = "cat ${in.x} > ${out.z}"
inputs.x = "b.y"
outputs.z = "text"
"#,
    );
    assert!(err.contains("p.toml:3:6: error in node `a`: the pipeline has a cycle: a -> b -> c -> a"), "{err}");
    assert!(err.contains("fix: remove one of these inputs"), "{err}");
    // run refuses too, before touching anything.
    assert!(ws.toe(&["run", "p.toml"]).fails().stderr.contains("a -> b -> c -> a"));
    assert!(!ws.path("artifacts").exists());

    let err = check(
        &ws,
        "[[node]]\nid = \"a\"\ncmd = \"cat ${in.x} > ${out.y}\"\ninputs.x = \"a.y\"\noutputs.y = \"text\"\n",
    );
    assert!(err.contains("p.toml:2:6: error in node `a`: node `a` reads its own output (cycle: a -> a)"), "{err}");
}

#[test]
fn dangling_references_get_suggestions() {
    let ws = Ws::new();
    let err = check(
        &ws,
        r#"
[[node]]
id = "extract"
cmd = "echo > ${out.features}"
outputs.features = "npy"

[[node]]
id = "train"
cmd = "cat ${in.f} ${in.g} > ${out.y}"
inputs.f = "extrct.features"
inputs.g = "extract.featurs"
outputs.y = "text"
"#,
    );
    assert!(
        err.contains("p.toml:10:12: error in node `train`: input `f` refers to node `extrct`, which does not exist"),
        "{err}"
    );
    assert!(err.contains("fix: did you mean `extract`?"), "{err}");
    assert!(err.contains("p.toml:11:12: error in node `train`: input `g` refers to output `featurs` of node `extract`, which has no such output"), "{err}");
    assert!(err.contains("fix: did you mean `features`?"), "{err}");
    assert!(err.contains("2 errors"), "{err}");
}

#[test]
fn toml_syntax_errors_point_at_the_spot() {
    let ws = Ws::new();
    let err = check(&ws, "[[node]]\nid = \"a\"\ncmd = \"echo > ${out.y}\noutputs.y = \"text\"\n");
    assert!(err.starts_with("p.toml:3:23: error"), "{err}");
    assert!(err.contains("fix: fix the TOML syntax here"), "{err}");

    let err = check(&ws, "[[node]\nid = 1\n");
    assert!(err.starts_with("p.toml:1:"), "{err}");
}

#[test]
fn unknown_fields_and_wrong_types_name_the_node() {
    let ws = Ws::new();
    let err = check(&ws, "[[node]]\nid = \"a\"\ncmd = \"echo > ${out.y}\"\noutputs.y = \"text\"\ndevce = \"gpu\"\n");
    assert!(err.contains("p.toml:5:1: error in node `a`: unknown field `devce`"), "{err}");
    assert!(err.contains("`device`"), "{err}");

    let err = check(&ws, "[[node]]\nid = \"a\"\ncmd = \"echo > ${out.y}\"\noutputs.y = \"text\"\ndevice = 3\n");
    assert!(err.contains("p.toml:5:10: error in node `a`: invalid type: integer `3`, expected a string"), "{err}");
    assert!(err.contains("fix: write the value with the type shown"), "{err}");

    let err = check(&ws, "[[node]]\nid = \"a\"\ncmd = \"echo > ${out.y}\"\noutputs.y = \"text\"\ndevice = \"tpu\"\n");
    assert!(err.contains("p.toml:5:10: error in node `a`: device must be \"cpu\" or \"gpu\", not \"tpu\"\n"), "{err}");

    // From a variable: the value it gave, and the variable.
    let err = check(
        &ws,
        "[vars]\ndev = \"cuda\"\n[[node]]\nid = \"a\"\ncmd = \"echo > ${out.y}\"\noutputs.y = \"text\"\ndevice = \"${dev}\"\n",
    );
    assert!(
        err.contains("error in node `a`: device must be \"cpu\" or \"gpu\", not \"cuda\" (from \"${dev}\")"),
        "{err}"
    );
    let err =
        check(&ws, "[[node]]\nid = \"a\"\ncmd = \"echo > ${out.y}\"\noutputs.y = \"text\"\ndevice = \"${nope}\"\n");
    assert!(err.contains("p.toml:5:10: error in node `a`:") && err.contains("nope"), "{err}");

    let err =
        check(&ws, "[[node]]\nid = \"a\"\ncmd = \"echo > ${out.y}\"\noutputs.y = \"text\"\nparams.when = 2024-01-01\n");
    assert!(err.contains("error in node `a`: dates and times are not supported"), "{err}");

    let err = check(&ws, "[[node]]\nid = \"a\"\nop = \"x\"\ncmd = \"echo\"\n");
    assert!(err.contains("p.toml:3:6: error in node `a`: a node has either `op` or `cmd`, not both"), "{err}");

    let err = check(&ws, "[[node]]\nid = \"a.b\"\ncmd = \"echo\"\n");
    assert!(err.contains("node id \"a.b\" may only contain"), "{err}");

    let err = check(&ws, "[[node]]\ncmd = \"echo\"\n");
    assert!(err.contains("missing field `id`"), "{err}");
}

#[test]
fn duplicate_outputs_and_ids() {
    let ws = Ws::new();
    let err = check(
        &ws,
        r#"
[vars]
sets = ["x", "y"]

[[node]]
id = "a_${s}"
for_each.s = "${sets}"
cmd = "echo > ${out.y}"
outputs.y = { kind = "text", path = "r/out.txt" }

[[node]]
id = "b"
cmd = "mkdir ${out.d}"
outputs.d = { kind = "dir", path = "r" }

[[node]]
id = "c"
cmd = "echo > ${out.y}"
outputs.y = { kind = "text", path = "artifacts/c.txt" }

[[node]]
id = "c"
cmd = "echo > ${out.y}"
outputs.y = "text"
"#,
    );
    assert!(
        err.contains("p.toml:9:13: error in node `a_x`: output path r/out.txt is inside r, the path of b.d"),
        "{err}"
    );
    assert!(err.contains("error in node `a_y`: output path r/out.txt is also the path of a_x.y"), "{err}");
    assert!(err.contains("error in node `c`: output path artifacts/c.txt overlaps the store"), "{err}");
    assert!(
        err.contains("p.toml:22:6: error in node `c`: node id `c` is used twice (first at line 17, column 6)"),
        "{err}"
    );

    let err =
        check(&ws, "[[node]]\nid = \"a\"\ncmd = \"echo > ${out.y}\"\noutputs.y = \"text\"\noutputs.y = \"npy\"\n");
    assert!(err.contains("p.toml:5:1: error"), "{err}");
    assert!(err.contains("duplicate key"), "{err}");
}

#[test]
fn every_missing_source_is_listed() {
    let ws = Ws::new();
    let err = check(
        &ws,
        r#"
[vars]
data = "data"

[[node]]
id = "features_${split}"
for_each.split = ["train", "val"]
cmd = "ls ${in.images} > ${out.list}"
sources.images = "${data}/ImageNet/${split}"
outputs.list = "text"
"#,
    );
    assert!(
        err.contains(
            "p.toml:9:18: error in node `features_train`: source `images` = data/ImageNet/train does not exist"
        ),
        "{err}"
    );
    assert!(err.contains("error in node `features_val`: source `images` = data/ImageNet/val does not exist"), "{err}");
    assert!(err.contains("fix: put the data there (data/README.md"), "{err}");
    std::fs::create_dir_all(ws.path("elsewhere/ImageNet/train")).unwrap();
    std::fs::create_dir_all(ws.path("elsewhere/ImageNet/val")).unwrap();
    let ok = ws.toe(&["check", "p.toml", "--set", "data=elsewhere"]).ok();
    assert!(ok.stdout.contains("ok: pipeline p"), "{}", ok.stdout);
    let bad = ws.toe(&["check", "p.toml", "--set", "dta=elsewhere"]).fails();
    assert!(
        bad.stderr.contains("the pipeline has no variable `dta`") && bad.stderr.contains("did you mean `data`?"),
        "{}",
        bad.stderr
    );
}

#[test]
fn variables_templates_and_placeholders() {
    let ws = Ws::new();
    let err = check(&ws, "[[node]]\nid = \"a\"\ncmd = \"echo ${nope} > ${out.y}\"\noutputs.y = \"text\"\n");
    assert!(err.contains("p.toml:3:7: error in node `a`: unknown variable `${nope}`"), "{err}");
    assert!(err.contains("write `$${nope}` for a literal"), "{err}");

    let err =
        check(&ws, "[vars]\nl = [\"x\"]\n[[node]]\nid = \"a\"\ncmd = \"echo ${l} > ${out.y}\"\noutputs.y = \"text\"\n");
    assert!(err.contains("`${l}` is a list"), "{err}");

    let err = check(
        &ws,
        "[[node]]\nid = \"a\"\nfor_each.s = [\"1\", \"2\"]\ncmd = \"echo ${s} > ${out.y}\"\noutputs.y = \"text\"\n",
    );
    assert!(
        err.contains("p.toml:2:6: error in node `a`: the id of a for_each template must contain every loop variable"),
        "{err}"
    );

    let err = check(
        &ws,
        "[[node]]\nid = \"a\"\ncmd = \"cat ${in.srcc} > ${out.y}\"\nsources.src = \"p.toml\"\noutputs.y = \"text\"\n",
    );
    assert!(err.contains("error in node `a`: the command uses `${in.srcc}` but the node has no input `srcc`"), "{err}");
    assert!(err.contains("did you mean `src`?"), "{err}");

    let err = check(&ws, "[[node]]\nid = \"a\"\ncmd = \"true\"\noutputs.y = \"text\"\n");
    assert!(err.contains("p.toml:4:13: error in node `a`: output `y` never appears in the command"), "{err}");

    let err = check(
        &ws,
        "[[node]]\nid = \"a\"\ncmd = \"echo > ${out.y}\"\noutputs.y = { kind = \"text\", path = \"../../etc/x\" }\n",
    );
    assert!(err.contains("output path \"../../etc/x\" leaves the workspace"), "{err}");

    // A source that another node writes must be read as that node's output.
    let err = check(&ws, "[[node]]\nid = \"a\"\ncmd = \"echo > ${out.y}\"\noutputs.y = { kind = \"text\", path = \"r/y.txt\" }\n[[node]]\nid = \"b\"\ncmd = \"cat ${in.s} > ${out.z}\"\nsources.s = \"r/y.txt\"\noutputs.z = \"text\"\n");
    assert!(err.contains("error in node `b`: source r/y.txt overlaps r/y.txt, which node `a` writes"), "{err}");
    assert!(err.contains("inputs.NAME = \"a.y\""), "{err}");
}

#[test]
fn a_missing_pipeline_file() {
    let ws = Ws::new();
    let out = ws.toe(&["check", "nope.toml"]).fails();
    assert!(out.stderr.contains("nope.toml:1:1: error: cannot read the pipeline file"), "{}", out.stderr);
}

/// Every prefix of a valid file, and some garbage: errors, never a panic.
#[test]
fn truncated_and_garbage_files_never_panic() {
    let ws = Ws::new();
    let valid = r#"[pipeline]
name = "x"
[vars]
v = ["a", "b"]
[[node]]
id = "n_${s}"
for_each.s = "${v}"
cmd = "echo ${s} ${param.k} > ${out.o}"
params = { k = [1, 2.5, "x", { t = true }] }
outputs.o = { kind = "text", path = "r/${s}.txt" }
[[node]]
id = "m"
cmd = "cat ${in.all} > ${out.o}"
inputs.all = ["n_${v}.o"]
outputs.o = "text"
"#;
    let mut cuts: Vec<usize> = (0..valid.len()).step_by(7).collect();
    cuts.push(valid.len());
    for (i, &cut) in cuts.iter().enumerate() {
        let text = &valid[..cut];
        ws.write(&format!("c{i}.toml"), text);
        let out = ws.toe(&["check", &format!("c{i}.toml")]);
        assert!(!out.stderr.contains("panicked"), "panic on prefix {cut}:\n{text}\n{}", out.stderr);
        assert!(out.code == 0 || out.stderr.contains("error"), "no message for prefix {cut}: {}", out.stderr);
    }
    for garbage in [
        "\u{0}\u{1}\u{2}",
        "[[node]]\nid = \"\"\ncmd = \"\"",
        "node = 5",
        "[vars]\nv = { a = 1 }",
        "[[node]]\nid=\"a\"\ncmd=\"${\"",
        "[[node]]\nid=\"a\"\nfor_each.x = []\ncmd=\"x\"",
    ] {
        ws.write("g.toml", garbage);
        let out = ws.toe(&["check", "g.toml"]);
        assert!(!out.stderr.contains("panicked"), "panic on {garbage:?}: {}", out.stderr);
        assert_ne!(out.code, 0, "{garbage:?} should be an error");
    }
}

#[test]
fn a_nul_byte_in_a_cmd_or_a_path_fails_check() {
    let ws = Ws::new();
    let err = check(
        &ws,
        "[[node]]\nid = \"a\"\ncmd = \"echo a\\u0000b > ${out.o}\"\noutputs.o = { kind = \"text\", path = \"out/a.txt\" }\n",
    );
    assert!(err.contains("p.toml:3:") && err.contains("NUL"), "{err}");
    assert!(err.contains("node `a`"), "{err}");
    let err = check(
        &ws,
        "[[node]]\nid = \"a\"\ncmd = \"echo a > ${out.o}\"\noutputs.o = { kind = \"text\", path = \"out/a\\u0000.txt\" }\n",
    );
    assert!(err.contains("p.toml:4:") && err.contains("NUL"), "{err}");
    let err = check(
        &ws,
        "[[node]]\nid = \"a\"\ncmd = \"cat ${in.s} > ${out.o}\"\nsources.s = \"in\\u0000.txt\"\noutputs.o = \"text\"\n",
    );
    assert!(err.contains("p.toml:4:") && err.contains("NUL"), "{err}");
}

#[test]
fn a_control_character_in_an_output_path_fails_check() {
    let ws = Ws::new();
    for (path, shown) in [("out/a\\nb.txt", "\"out/a\\nb.txt\""), ("out/\\u001b[2Ja.txt", "\"out/\\u{1b}[2Ja.txt\"")] {
        let err = check(
            &ws,
            &format!("[[node]]\nid = \"a\"\ncmd = \"echo a > ${{out.o}}\"\noutputs.o = {{ kind = \"text\", path = \"{path}\" }}\n"),
        );
        assert!(err.contains("p.toml:4:") && err.contains("node `a`") && err.contains("control character"), "{err}");
        assert!(err.contains(shown), "the path is shown escaped: {err}");
    }
    // Through a variable, too.
    let err = check(
        &ws,
        "[vars]\nname = \"a\\tb\"\n[[node]]\nid = \"a\"\ncmd = \"echo a > ${out.o}\"\noutputs.o = { kind = \"text\", path = \"out/${name}.txt\" }\n",
    );
    assert!(err.contains("control character"), "{err}");
}

#[test]
fn for_each_takes_literal_integers_like_a_list_variable() {
    let ws = Ws::new();
    ws.write(
        "p.toml",
        r#"
[[node]]
id = "n_${i}"
for_each.i = [1, 2]
cmd = "echo ${i} > ${out.o}"
outputs.o = { kind = "text", path = "out/n_${i}.txt" }
"#,
    );
    ws.toe(&["check", "p.toml"]).ok();
    ws.run("p.toml");
    assert_eq!(ws.read("out/n_1.txt"), "1\n");
    assert_eq!(ws.read("out/n_2.txt"), "2\n");
}

#[test]
fn a_duplicate_ids_error_names_the_first_copy() {
    let ws = Ws::new();
    let one = "[[node]]\nid = \"a\"\ncmd = \"echo > ${out.o}\"\noutputs.o = \"text\"\n\n";
    let err = check(&ws, &one.repeat(3));
    // The ids are on lines 2, 7 and 12; both later copies name line 2.
    assert_eq!(err.matches("first at line 2,").count(), 2, "{err}");
}

#[test]
fn a_file_ending_after_an_equals_sign_says_so() {
    // Found by the spec property test (spec_fuzz): the message was empty.
    let ws = Ws::new();
    let err = check(&ws, "[[node]]\nid = \"a\"\noutputs.o =");
    assert!(err.contains("p.toml:3:12: error: the file ends where a value is expected"), "{err}");
}
