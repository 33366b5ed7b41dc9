"""The dataset card, ``README.md``: what the Hugging Face Hub and ``datasets.load_dataset(DIR)`` read of a
rendered directory, and what people read.

Its YAML front matter names the shards as the ``train`` split of the ``webdataset`` builder and declares the
features (``png`` an image, ``cls`` a class label, ``json`` each sample's parameters as a struct, ``__key__``),
the size category, the task and a license; below it, the recipe in words, the command that made the
dataset, the manifest's digest, the preview and the paper's citation. The card is a function of the manifest,
the first shard's samples (which the manifest pins by sha256) and the command line only, so rendering again
writes the same bytes. It is written with the standard library (a small YAML writer for the subset it uses).

``check_card`` is ``verify``'s part: the statements the card makes about the data (the ``configs``,
``dataset_info`` and ``size_categories`` entries, the line of counts and the digest) must be what the manifest
gives now; the license, tags, name and prose are free to edit. A ``README.md`` without the card's marker is
not fracbuild's: ``render`` leaves it alone and ``verify`` does not read it.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from .durable import write_text
from .manifest import info

CARD = "README.md"
MARKER = "<!-- fracbuild dataset card"
CHECKED = ("size_categories", "configs", "dataset_info")  # the front matter's statements about the data
SIZES = ((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"), (10**7, "1M<n<10M"),
         (10**8, "10M<n<100M"), (10**9, "100M<n<1B"))
CITATION = """@inproceedings{nakamura2024scaling,
  title     = {Scaling Backwards: Minimal Synthetic Pre-training?},
  author    = {Nakamura, Ryo and Tadokoro, Ryu and Yamada, Ryosuke and Asano, Yuki M. and Laina, Iro and
               Rupprecht, Christian and Inoue, Nakamasa and Yokota, Rio and Kataoka, Hirokatsu},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2024}
}"""


def size_category(samples: int) -> str:
    """The Hub's ``size_categories`` value for a number of rows."""
    return next((name for bound, name in SIZES if samples < bound), "n>1B")


def json_feature(values: list[Any]) -> dict[str, Any]:
    """The ``datasets`` feature (in its YAML form) that holds every one of ``values`` exactly: a struct of the
    union of keys, a list of its elements' feature, ``int64`` where all numbers are integers, else ``float64``."""
    values = [v for v in values if v is not None]
    if values and all(isinstance(v, dict) for v in values):
        keys = sorted({k for v in values for k in v})
        return {"struct": [{"name": k, **json_feature([v.get(k) for v in values])} for k in keys]}
    if values and all(isinstance(v, list) for v in values):
        inner = json_feature([x for v in values for x in v] or [0.0])  # empty lists: numbers, as the sources write
        return {"list": inner.get("dtype") or inner.get("struct") or inner}  # the Hub's form of a list's feature
    if values and all(isinstance(v, bool) for v in values):
        return {"dtype": "bool"}
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return {"dtype": "int64"}
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return {"dtype": "float64"}
    return {"dtype": "string"}


def front_matter(manifest: dict[str, Any], examples: list[dict[str, Any]]) -> dict[str, Any]:
    """The card's YAML front matter as data; ``examples`` are the first shard's decoded ``json`` records."""
    source = manifest.get("recipe", {}).get("source", "fractal")
    names = {str(c): str(c) for c in range(manifest["classes"])}
    return {
        "pretty_name": str(manifest.get("name", "")),
        "license": "other" if source == "image" else "mit",  # a photograph's own license applies to its warps
        "task_categories": ["image-classification"],
        "tags": ["synthetic", "formula-driven", "fracbuild", "webdataset"],
        "size_categories": [size_category(manifest["samples"])],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": "train", "path": [s["file"] for s in manifest["shards"]]}]}],
        "dataset_info": {
            "features": [{"name": "png", "dtype": "image"},
                         {"name": "cls", "dtype": {"class_label": {"names": names}}},
                         {"name": "json", **json_feature(examples)},
                         {"name": "__key__", "dtype": "string"}],
            # No "splits": datasets wants their size as Arrow tables (num_bytes), which only it can know.
            "download_size": sum(s["bytes"] for s in manifest["shards"]),
        },
    }


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./<>-]*")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in ("true", "false", "null", "yes", "no", "on", "off", "y", "n"):
        return text
    return "'" + text.replace("'", "''") + "'"


def yaml_lines(value: Any, indent: int = 0) -> list[str]:
    """Block-style YAML of nested dicts, lists and scalars (lists under a key at the key's indent, as the Hub
    writes them)."""
    pad, lines = " " * indent, []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict) and item:
                lines += [f"{pad}{_scalar(key)}:", *yaml_lines(item, indent + 2)]
            elif isinstance(item, list) and item:
                lines += [f"{pad}{_scalar(key)}:", *yaml_lines(item, indent)]
            else:
                lines.append(f"{pad}{_scalar(key)}: {_scalar(item) if not isinstance(item, (dict, list)) else '[]'}")
    else:
        for item in value:
            if isinstance(item, (dict, list)):
                inner = yaml_lines(item, indent + 2)
                lines += [f"{pad}- {inner[0].lstrip()}", *inner[1:]]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines


def facts(manifest: dict[str, Any]) -> str:
    """The body's line of counts, which ``verify`` checks."""
    return (f"**{manifest['samples']:,} images in {manifest['classes']:,} classes** ({manifest.get('instances', 1)} "
            f"per class) in {len(manifest['shards'])} shards, {sum(s['bytes'] for s in manifest['shards']):,} "
            "bytes.")


def digest_line(manifest: dict[str, Any]) -> str:
    return f"Manifest digest: `{manifest.get('digest', 'none')}`"


def card_text(manifest: dict[str, Any], examples: list[dict[str, Any]], *, summary: str,
              command: str | None = None, preview: bool = True) -> str:
    """The whole card. ``summary``: ``fracbuild info``'s lines (the recipe in words); ``command``: the command
    line that rendered it (None: a call of ``fracbuild.render``)."""
    name = manifest.get("name", "dataset")
    recipe = manifest.get("recipe", {})
    source = recipe.get("source", "fractal")
    size = recipe.get("render", {}).get("size")
    rgb = recipe.get("image", {}).get("convert") == "rgb"
    made = (f"```sh\n{command}\n```" if command else
            "A call of `fracbuild.render(recipe, out_dir)`. The same shards come from `fracbuild render RECIPE -o "
            "DIR` with `manifest.json`'s `recipe` saved as RECIPE.")
    lines = ["---", *yaml_lines(front_matter(manifest, examples)), "---",
             f"{MARKER}: written from manifest.json by `fracbuild render`; `fracbuild verify` checks its statements "
             "about the data (front matter: size_categories, configs, dataset_info; the counts and the digest "
             "below) -->",
             "", f"# {name}", "",
             f"A formula-driven pre-training dataset rendered by fracbuild from the `{source}` source"
             + (f", {size} × {size} px, 8-bit {'RGB' if rgb else 'grayscale'} PNG" if size else "") + ". "
             "Each sample is `png` (the image), `cls` (its class) and `json` (its class, instance and drawn "
             "parameters).", "", facts(manifest), "",
             "## Recipe", "", "```", summary, "```", "",
             "The whole recipe, the shard list with sha256 checksums and the library versions are in `manifest.json`.",
             ""]
    if source == "image":
        lines += [f"The images are warps of the photograph `{recipe.get('image', {}).get('path')}`: its own license "
                  "applies (set `license` above to it).", ""]
    lines += ["## How it was made", "", made, "", digest_line(manifest) + " (sha256 of `manifest.json` without its "
              "`digest` key). `fracbuild verify DIR` checks every shard against the manifest and this card's "
              "statements about the data.", ""]
    if preview:
        lines += ["![Classes spread over the dataset, one image each](preview.png)", ""]
    lines += ["## Use", "", "```python", "from datasets import load_dataset", "",
              f'rows = load_dataset("OWNER/{name}", split="train")  # or the directory; png, cls, json',
              "```", "",
              "```sh",
              f"python -m trainer pretrain --data hf://datasets/OWNER/{name} --out runs/pt   # or a local clone",
              "```", "",
              "The shards are plain WebDataset tars: `webdataset`, timm (`wds/NAME` through `_info.json`) and "
              "`trainer` read them as they are.", "",
              "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def render_command(recipe: str, out_dir: str, overrides: dict[str, Any], *, preview: bool = True) -> list[str]:
    """The ``fracbuild render`` command line of a render, with the options that decide its output (``--jobs``,
    ``--backend`` and the like do not: the card is the same whichever ran it)."""
    words = ["fracbuild", "render", str(recipe), "-o", str(out_dir)]
    for key, value in overrides.items():
        if value is not None:
            words += ["--" + key.replace("_", "-"), str(value)]
    return words + ([] if preview else ["--no-preview"])


def first_examples(out_dir: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The decoded ``json`` records of the first shard (raises ``OSError``, ``tarfile.TarError``, ``ValueError``
    on a damaged one)."""
    from .shards import read_shard

    return [json.loads(s["json"]) for s in read_shard(out_dir / manifest["shards"][0]["file"])]


def is_ours(path: Path) -> bool:
    return path.is_file() and MARKER in path.read_text(errors="replace")


def write_card(out_dir: str | Path, manifest: dict[str, Any], *, command: list[str] | str | None = None,
               preview: bool = True) -> Path | None:
    """Write ``README.md`` (None, and nothing written, where a README.md that is not a fracbuild card is there)."""
    out_dir = Path(out_dir)
    path = out_dir / CARD
    if path.exists() and not is_ours(path):
        return None
    if isinstance(command, list):
        command = shlex.join(command)
    text = card_text(manifest, first_examples(out_dir, manifest), summary=info(out_dir), command=command,
                     preview=preview)
    write_text(path, text)  # written aside and renamed in: a crash never leaves half a card
    return path


def _entries(text: str) -> dict[str, str] | None:
    """The front matter's top-level entries, each as its lines of text; None without front matter."""
    lines = text.splitlines()
    if not lines or lines[0] != "---" or "---" not in lines[1:]:
        return None
    entries: dict[str, list[str]] = {}
    key = None
    for line in lines[1:lines.index("---", 1)]:
        if line and not line[0].isspace() and not line.startswith(("-", "#")):
            key = line.split(":", 1)[0].strip().strip("'\"")
            entries[key] = [line]
        elif key is not None:
            entries[key].append(line)
    return {k: "\n".join(v) for k, v in entries.items()}


def check_card(out_dir: str | Path, manifest: dict[str, Any]) -> list[str]:
    """What the card says about the data that the manifest no longer gives, one line each (none without a card)."""
    path = Path(out_dir) / CARD
    if not is_ours(path):
        return []
    text = path.read_text(errors="replace")
    found = _entries(text)
    fix = "render again with the same command to rewrite it"
    if found is None:
        return [f"{CARD}: no YAML front matter; {fix}"]
    try:
        examples = first_examples(Path(out_dir), manifest)
    except Exception:  # noqa: BLE001 (a damaged first shard, which the shard checks report)
        examples = None
    problems = []
    for key in CHECKED:
        if key == "dataset_info" and examples is None:
            continue
        wanted = "\n".join(yaml_lines({key: front_matter(manifest, examples or [])[key]}))
        if key not in found:
            problems.append(f"{CARD}: its front matter has no {key}; {fix}")
        elif found[key] != wanted:
            problems.append(f"{CARD}: its {key} no longer matches the manifest; {fix}")
    body = text.splitlines()
    for line, what in ((facts(manifest), "line of counts"), (digest_line(manifest), "manifest digest")):
        if not any(b.startswith(line) for b in body):
            problems.append(f"{CARD}: its {what} no longer matches the manifest; {fix}")
    return problems
