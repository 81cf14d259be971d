#!/usr/bin/env python3
"""Write the same synthetic pipeline for toe-pipe (toe.toml) and DVC
(dvc.yaml) into a directory.

Stage i > 0 reads the output of stage (i - 1) // 2 (a binary tree), stage 0
reads the source file src.txt; every stage copies its input and appends its
tag. `--edit K` changes stage K's tag in both files (the "edit one stage"
step); it and its subtree re-run.

usage: gen_pipeline.py DIR N [--edit K]
"""
import sys
from pathlib import Path


def main():
    out = Path(sys.argv[1])
    n = int(sys.argv[2])
    edit = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--edit" else None
    out.mkdir(parents=True, exist_ok=True)
    src = out / "src.txt"
    if not src.exists():
        src.write_text("synthetic source\n")

    def tag(i):
        return f"{i}-edited" if i == edit else str(i)

    toml = ['[pipeline]\nname = "bench"\n']
    yaml = ["stages:"]
    for i in range(n):
        up = "src.txt" if i == 0 else f"out/s{(i - 1) // 2}.txt"
        toml.append(f'[[node]]\nid = "s{i}"')
        if i == 0:
            toml.append(f'cmd = "cat ${{in.x}} > ${{out.o}} && echo {tag(i)} >> ${{out.o}}"')
            toml.append('sources.x = "src.txt"')
        else:
            toml.append(f'cmd = "cat ${{in.x}} > ${{out.o}} && echo {tag(i)} >> ${{out.o}}"')
            toml.append(f'inputs.x = "s{(i - 1) // 2}.o"')
        toml.append(f'outputs.o = {{ kind = "text", path = "out/s{i}.txt" }}\n')
        yaml.append(f"  s{i}:")
        yaml.append(f"    cmd: cat {up} > out/s{i}.txt && echo {tag(i)} >> out/s{i}.txt")
        yaml.append(f"    deps: [{up}]")
        yaml.append(f"    outs: [out/s{i}.txt]")
    (out / "toe.toml").write_text("\n".join(toml))
    (out / "dvc.yaml").write_text("\n".join(yaml) + "\n")
    (out / "out").mkdir(exist_ok=True)


if __name__ == "__main__":
    main()
