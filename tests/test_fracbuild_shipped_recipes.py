"""Every shipped recipe renders the samples it rendered when its digests were pinned.

Each recipe is rendered with 3 classes, up to 6 instances per class and 4 samples per shard
(``render(..., classes=3, instances=min(instances, 6), shard_size=4)``) at its own size. Two
digests are pinned per recipe: of the samples' contents (key, ``.cls`` and ``.json`` bytes and the
decoded pixels, which hold on any zlib) and of the shards' bytes (file names and sha256s, which
hold with the zlib they were pinned with, ``ZLIB``). The recipes that existed before sources became
one module each were pinned on the code before that change (commit be9b2e1), so the change is
shown to leave every shard byte-identical; a recipe added since was pinned when it was added. The
six RCDB and VisualAtom recipes were drawn again and re-pinned when a category's draws got a seed
stream no sample shares (``fracbuild.sources.common.CATEGORY``).
"""

import hashlib
import zlib
from pathlib import Path

import pytest

from fracbuild.codec import decode_png
from fracbuild.recipe import load_recipe
from fracbuild.rendering import render
from fracbuild.shards import read_shard

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.relative_to(ROOT / "manifests").as_posix() for p in (ROOT / "manifests").rglob("*.json"))
#: The zlib the shard bytes were pinned with (PNG bytes depend on the zlib build; pixels do not).
ZLIB = "1.2.13"
#: recipe -> (digest of the shards' names and sha256s, digest of the samples' contents)
PINNED = {
    "1p-frac.json": (
        "7820c54f1b5c13a91d9cc5544d2b050e53c490b84eb1732a946858b7a42fb64c",
        "2824c84f5390bda4dcf4ad7952cbc5687beca7c9b84f06c9eafaf7887ec1cb69",
    ),
    "fractaldb-1k-original.json": (
        "61cb55a124188da12b9df5581c176762ec2265e66ca7403a6bf39c3d7ea755e1",
        "3b72955e878c9ac20c7fc3bd6d5494aac13cad4af9768a911616c1e202757c1b",
    ),
    "fractaldb-1k.json": (
        "e744c7c204ee942e94d650d60f32a5c806f6448f1a77501facb05a508d9e8edc",
        "d340052f0bbbd18153f380a955f0b205abe4e673a5d4f78b3fd63e7c2693074c",
    ),
    "noise-gaussian.json": (
        "bbd8572951b7e702e6b997200037420cc7b50c5e58416d34bb7bf6826555982e",
        "631409e7874803d9b5d6b3cc49da77b4d0b7a6eb35d0b773d1229ad331aa1538",
    ),
    "noise-uniform.json": (
        "a9a0be706facab25328b7b15d89c29ef043fa383c2cfd6b2d49ff911550be4b9",
        "f7c1959a4586ec9557e0dc820f01dfeb01df7308e5f8dadf781c174203bda8f9",
    ),
    "ofdb-1k-original.json": (
        "62b21e14c9bdca73a97046c97a58aeba96f1e7200f13074288f1319c6b7834ba",
        "1d315854a4b511d18640e6f6544d7cf681dad5c424b058835e5dcdb911487c0b",
    ),
    "ofdb-1k.json": (
        "cd53ff34d059903427e5589e998eb940b45c35915f4d3716711189c8a747148e",
        "b4dae70738c3ab2faf17848499de467bb03e484cc045abf5c81d9b7c1fd55b5e",
    ),
    "paper/classes-1000.json": (
        "dbf70bff211ee6f8a993ac4c7ff849de7e5f2abba29ac10a3915556c8a2981be",
        "2824c84f5390bda4dcf4ad7952cbc5687beca7c9b84f06c9eafaf7887ec1cb69",
    ),
    "paper/classes-16.json": (
        "0fce7f2b296630d42dec2e1582d7f0bff0a28c815668a028a9b1d149db740ed0",
        "2824c84f5390bda4dcf4ad7952cbc5687beca7c9b84f06c9eafaf7887ec1cb69",
    ),
    "paper/classes-512.json": (
        "18b446448b2d34fba10414af9f672c1e9489cfe44a39e2160c9855e9d42b0db0",
        "2824c84f5390bda4dcf4ad7952cbc5687beca7c9b84f06c9eafaf7887ec1cb69",
    ),
    "paper/classes-64.json": (
        "3ab9193acf3bb4172b0630debe0d993f5dbfdd83a5577b7d0480375b5900edcb",
        "2824c84f5390bda4dcf4ad7952cbc5687beca7c9b84f06c9eafaf7887ec1cb69",
    ),
    "paper/delta-0.001.json": (
        "70c9357b6864a00716d08e982cce04b9c54b01123581314d4f9d90e5b58f4faa",
        "02373d7956b65bd0cf654426afa380beb9858da65b12eb6d979f1d284ef89f52",
    ),
    "paper/delta-0.01.json": (
        "b6f769404545f8fa8c24803ef2736c7a555806ad9070b4283e0b362608b5e6c7",
        "bd4740a45f50e4f294a298c41ebf3aeb9017eab5c1c4cf4c65d4570016464c2f",
    ),
    "paper/delta-0.05.json": (
        "8a6df431e9324b3ca582c5399bbd8540eedec50587a78bd2efc9120108f9880a",
        "3f62284dc9501c985b13ffad79957654cbbbf7049972f0b5c1d42dc1f25be1e6",
    ),
    "paper/delta-0.1.json": (
        "6803179522f9f5028014ea3329a45af7387c3f65107c06f2a114d65caf684213",
        "2824c84f5390bda4dcf4ad7952cbc5687beca7c9b84f06c9eafaf7887ec1cb69",
    ),
    "paper/delta-0.2.json": (
        "879534efcedbe74f29cb292b3beea6317e54dd12aa252ade4e8414454563865e",
        "8ebcd6b1f2d4c6e927384b41be999c152af11303071f0c55d741ad65174e41a4",
    ),
    "paper/delta-1.0.json": (
        "7ad8e0a39a884cd19193685aebdf7bb8c474115808fef9a44e985548aeaf87cd",
        "de2484bbaa13525799969ccc919c946d8bb92a490ff787b624e281b0ac1adc89",
    ),
    "paper/sigma-3.5.json": (
        "85fc8ce3ac93244c86fb21d0e8f23c6e848d38f2509039153a46c0c82dadd2ee",
        "2824c84f5390bda4dcf4ad7952cbc5687beca7c9b84f06c9eafaf7887ec1cb69",
    ),
    "paper/sigma-4.0.json": (
        "6cdc8ed02a3d6aa4855cb7429542a40638a34ba409b2d834e7b655deb57604a5",
        "e631d45720ddf35f51dd31744c6b6d4b464dc27c839233b4cb4d1187744d1d4d",
    ),
    "paper/sigma-4.5.json": (
        "ec55c0e9e50dec2fbd178f75be5000e355d9f91800bd8e981d01c6cf3238b2b7",
        "ca3e78db2f9a764a26510151ece1efa7d9ebbf42d51571c4f86d91f72c750abb",
    ),
    "paper/sigma-5.0.json": (
        "3047cc1686ac7acc59d24feaf934335882dd612de372ae5b0510f7041094c2b0",
        "87ec8529ab40b368ae85d947eaefb8124ffcd70872308fec4419ed205e281ab1",
    ),
    "paper/sigma-6.0.json": (
        "65589441129b46b22740a22d858434b849113437f90ffad2940c34117f4aed6f",
        "91131e37e067f13eb72161b0a44d0465505f643293af128a62bb8677da0aa961",
    ),
    "real-canny-affine.json": (
        "1d5fb51dcec8bfb421bce83ef2b5204fb98ec149a4853d82031f8b93c3f26295",
        "63757aa824f232f496eebbf81bd38a20c9a09a5e7a8f377ed5234161e2accc73",
    ),
    "real-canny-elastic.json": (
        "20231e1284dbaddd54bf5dd01c54d3060c2292087add2d01d52c0d45ac51f97b",
        "9539ee97e5d5ce096a16661854ae35480d9a91003b0d448017f83af1ae955724",
    ),
    "real-canny-polynomial.json": (
        "54928683fd545f3d765ef309f99068b527345be67374359c7294792c4b0c0735",
        "698d52bab74d08706b6a9b32f6c846a5483b6c1c1dae0632ca85ea777473d35a",
    ),
    "real-gray-affine.json": (
        "123263febde1f280c65d16085141398c599866a0bcb32347a044da736cd746d9",
        "731722b09c60c50fb21b7a2d2933e1537118492dda829dcf9f4415c55ca00cd0",
    ),
    # Added with the rcdb and visualatom sources, pinned on their first version.
    "paper/rcdb-1k.json": (
        "6eb1f04eb4f75947babc86fc8bd347882a67235e2ec5b340a75172d1cc23526e",
        "44821d9417e68e2301f5a36375ed15e10936842a9da6bd92fe0f79cf5afcefa9",
    ),
    "paper/rcdb-1m.json": (
        "4aad8bc2f1798b97f1d950a3bac301d7b0bb8688e1cda24f3def7a117ceb8410",
        "31ac1467c63b0f815db7fa538be3b3c821122739c75c15e2bc0cc3ac3d8908b7",
    ),
    "paper/rcdb-lpce.json": (
        "4163302305f1df9d0b56ab23a9bf5dfae781009a7c919f786b7008014c48992a",
        "efa8f42d6da7681d3e3e879372171b2bf080139b740eca64529f92f87a525652",
    ),
    "paper/visualatom-1k.json": (
        "8ed17fd2d2a6ffb5558fcc3fb339b3b8a55ea99b48fb59cb589e79275643b0c4",
        "7ce185ebc4dd06f33ed23c585277c5b62a711d1d7c86f55d3ddd7af1eceec21a",
    ),
    "paper/visualatom-1m.json": (
        "882e3d8a0864fec92eeee91ddb38224605d58885fb03424a3d6679453a1a7a4a",
        "625d0d82303810789bcaba0cb8e36e45f6a63a149a898c8dcd8dd78849121b63",
    ),
    "paper/visualatom-lpce.json": (
        "79c45113827d9bfe24beacdc5b00ec09b3de310ad3fee4e68a1cdfd17a275790",
        "523e50703396b6118240f2e0d19ce6491ad79788a1149317235956393488931a",
    ),
}


def digests(path: Path, out_dir: Path) -> tuple[str, str]:
    recipe = load_recipe(path)
    manifest = render(path, out_dir, jobs=1, progress=False, preview=False, classes=3,
                      instances=min(recipe["render"]["instances"], 6), shard_size=4)
    shards, content = hashlib.sha256(), hashlib.sha256()
    for record in manifest["shards"]:
        shards.update((record["file"] + record["sha256"]).encode())
        for sample in read_shard(out_dir / record["file"]):
            content.update(sample["__key__"].encode() + sample["cls"] + sample["json"])
            content.update(decode_png(sample["png"]).tobytes())
    return shards.hexdigest(), content.hexdigest()


def test_every_shipped_recipe_is_pinned():
    assert sorted(PINNED) == RECIPES


@pytest.mark.parametrize("name", RECIPES)
def test_shipped_recipe_renders_its_pinned_samples(name, tmp_path):
    shards, content = digests(ROOT / "manifests" / name, tmp_path)
    assert content == PINNED[name][1]
    if zlib.ZLIB_RUNTIME_VERSION == ZLIB:
        assert shards == PINNED[name][0]
