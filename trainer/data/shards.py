"""Reading shards: a local or http(s) tar stream -> its members -> samples (dicts of bytes by extension),
with a count of the damaged shards and samples met on the way.

The stream input, the memory input and the downstream ``wds:`` sets all read shards through here.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

from PIL import Image
from webdataset.tariterators import base_plus_ext

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp")
# What reading a damaged shard can raise: tar structure, truncation, network, compression, labels.
SHARD_ERRORS = (tarfile.TarError, OSError, EOFError, http.client.HTTPException, zlib.error, ValueError)
# What decoding one damaged sample can raise.
SAMPLE_ERRORS = (ValueError, OSError, SyntaxError, Image.DecompressionBombError)
TIMEOUT = 60
# A dropped connection is read again up to RETRIES times, after BACKOFF, 2 x BACKOFF, ... seconds: a pass
# that skipped the shard would lose its samples from every later pass too.
RETRIES, BACKOFF = 4, 0.25
# What a dropped or refused connection raises (an HTTP 4xx is an answer, not a drop: it is not retried).
DROPS = (OSError, http.client.HTTPException)


def is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def open_url(url: str, on_retry: Callable[[], None] | None = None) -> IO[bytes]:
    """A binary stream of a local path or an http(s) URL; a URL's stream reads on through dropped connections
    (``ResumingBody``), calling ``on_retry`` at each reconnection."""
    if is_url(url):
        return io.BufferedReader(ResumingBody(url, on_retry), buffer_size=1 << 16)
    return open(url, "rb")  # noqa: SIM115 (the caller closes it)


class ResumingBody(io.RawIOBase):
    """An http(s) body that continues at the byte it reached when the connection drops: with a Range request,
    or, from a server that ignores Range, by reading the body again from its start and discarding the bytes
    already delivered. So the tar stream above it sees every byte once. After ``RETRIES`` reconnections the
    last error is raised (the shard is then counted as damaged)."""

    def __init__(self, url: str, on_retry: Callable[[], None] | None = None):
        self.url, self.on_retry = url, on_retry
        self.offset = self.retries = 0
        self.response = self._connect()

    def _open(self) -> http.client.HTTPResponse:
        headers = {"Range": f"bytes={self.offset}-"} if self.offset else {}
        response = urllib.request.urlopen(urllib.request.Request(self.url, headers=headers),  # noqa: S310
                                          timeout=TIMEOUT)
        if self.offset and response.status != 206:  # Range ignored: skip what was delivered
            skip = self.offset
            while skip:
                chunk = response.read(min(skip, 1 << 20))
                if not chunk:
                    raise http.client.IncompleteRead(b"", skip)
                skip -= len(chunk)
        return response

    def _connect(self) -> http.client.HTTPResponse:
        while True:
            try:
                return self._open()
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    raise
                self._wait(e)
            except DROPS as e:
                self._wait(e)

    def _wait(self, error: BaseException) -> None:
        if self.retries == RETRIES:
            raise error
        time.sleep(BACKOFF * 2**self.retries)
        self.retries += 1
        if self.on_retry is not None:
            self.on_retry()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            try:
                n = self.response.readinto(buffer)
                # http.client returns 0, not an error, when the connection closes before Content-Length.
                if n == 0 and len(buffer) and self.response.length:
                    raise http.client.IncompleteRead(b"", self.response.length)
                self.offset += n
                return n
            except DROPS as e:
                self.response.close()
                self._wait(e)
                self.response = self._connect()

    def close(self) -> None:
        self.response.close()
        super().close()


class DigestMismatch(ValueError):
    """A shard whose bytes do not hash to its manifest record's sha256: a damaged shard."""


class _Counted:
    """A stream's ``read``, counting the bytes it gave and hashing them (sha256) as the tar reader takes them:
    the digest costs no second read of the shard, local or over http(s)."""

    def __init__(self, stream):
        self.stream, self.bytes, self.sha256 = stream, 0, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.bytes += len(data)
        self.sha256.update(data)
        return data

    def drain(self) -> None:
        """Read to the end (the padding after the end-of-archive marker is part of the digest too)."""
        while self.read(1 << 16):
            pass


def tar_members(stream, sha256: str | None = None) -> Iterator[dict[str, Any]]:
    """``{"fname", "data"}`` of each file in a tar stream. tarfile takes a damaged header for the end
    of the archive and drops the rest unnoticed; here reading goes past it, and the gap it leaves
    (or a stream with no member at all) is an error, so the shard is counted as damaged. So is a stream
    that ends without the end-of-archive zero blocks: cut at a member's boundary, it reads as a shorter
    archive whose lost samples nothing else would count. With ``sha256`` (the manifest's), the bytes read are
    hashed on the way and a different digest, found at the end, is a ``DigestMismatch``."""
    end = 0
    stream = _Counted(stream)
    with tarfile.open(fileobj=stream, mode="r|", ignore_zeros=True) as tar:
        for info in tar:
            if info.offset != end:
                raise tarfile.ReadError(f"damaged tar header at byte {end}")
            end = info.offset_data + -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            if info.isreg():
                yield {"fname": info.name, "data": tar.extractfile(info).read()}
            tar.members = []  # a stream: keep no index
    if end == 0:
        raise tarfile.ReadError("no tar member: not a tar file")
    if stream.bytes < end + tarfile.BLOCKSIZE:
        raise tarfile.ReadError(f"truncated at byte {stream.bytes}: no end-of-archive marker")
    if sha256 is not None:
        stream.drain()
        if stream.sha256.hexdigest() != sha256:
            raise DigestMismatch("sha256 does not match the manifest")


def group_samples(files: Iterator[dict[str, Any]], url: str) -> Iterator[dict[str, Any]]:
    """Consecutive tar members with the same key (the name up to the first dot) as one sample."""
    sample: dict[str, Any] = {}
    for f in files:
        key, ext = base_plus_ext(f["fname"])
        if key is None:
            continue
        if sample and key != sample["__key__"]:
            yield sample
            sample = {}
        sample.setdefault("__key__", key)
        sample["__url__"] = url
        sample[ext.lower()] = f["data"]
    if sample:
        yield sample


def shard_samples(url: str, problems: Problems | None = None, sha256: str | None = None) -> Iterator[dict[str, Any]]:
    """The samples of one shard (a path or an http(s) URL), as dicts of raw bytes by extension; reconnections
    to a URL are counted in ``problems``. With ``sha256``, a shard whose bytes hash otherwise raises
    ``DigestMismatch`` after its last sample (a consumer that must not keep a damaged shard's samples holds
    them until the shard ends)."""
    with open_url(url, problems.retried if problems is not None else None) as stream:
        yield from group_samples(tar_members(stream, sha256), url)


def image_and_label(sample: dict[str, Any]) -> tuple[bytes, int]:
    """A sample's encoded image and its ``cls`` label; ValueError if it lacks either."""
    ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
    if ext is None:
        raise ValueError(f"sample {sample.get('__key__')} has no image ({', '.join(IMAGE_EXTENSIONS)})")
    if "cls" not in sample:
        raise ValueError(f"sample {sample.get('__key__')} has no .cls label")
    label = int(sample["cls"])
    if "json" in sample:  # fracbuild's metadata repeats the class: a damaged label byte shows as a mismatch
        meta = json.loads(sample["json"])
        recorded = meta.get("class", label) if isinstance(meta, dict) else label
        if recorded != label:
            raise ValueError(f"sample {sample.get('__key__')}: .cls {label} but .json class {recorded}")
    return sample[ext], label


def open_image(encoded: bytes) -> Image.Image:
    """Encoded image bytes as a loaded PIL image (decoding errors are raised here, not later)."""
    image = Image.open(io.BytesIO(encoded))
    image.load()
    return image


class Problems:
    """Damaged shards, samples left out and reconnections met by one reader; warns once per shard.

    ``samples`` counts every sample left out: an undecodable one, and those of a damaged shard that were not
    handed over (``skipped``), each time a pass leaves them out."""

    def __init__(self):
        self.shards: dict[str, str] = {}
        self.samples = 0
        self.retries = 0

    def retried(self) -> None:
        self.retries += 1

    def bad_shard(self, url: str, error: BaseException, skipped: int = 0) -> None:
        self.samples += skipped
        if url not in self.shards:
            self.shards[url] = f"{type(error).__name__}: {error}"
            sys.stderr.write(f"Warning: skipping corrupt shard {url} ({self.shards[url]})\n")

    def skipped(self, count: int) -> None:
        """``count`` samples of a shard already known to be damaged, left out again."""
        self.samples += count

    def bad_sample(self, sample: dict, error: BaseException) -> None:
        self.bad_shard(sample.get("__url__", "?"), ValueError(f"sample {sample.get('__key__')}: {error}"), 1)

    def snapshot(self, worker: int = 0) -> dict[str, Any]:
        return {"worker": worker, "shards": tuple(sorted(self.shards)), "samples": self.samples,
                "retries": self.retries}
