"""What to classify: SRC (a folder, a glob, a text file of paths, or one image) -> image file paths.

Paths go through pyarrow filesystems, so a URI (s3://bucket/photos, gs://..., hdfs://...) works
where pyarrow has that filesystem and the credentials it needs (its usual environment: AWS_* for S3,
GOOGLE_APPLICATION_CREDENTIALS for GCS); a plain path is the local filesystem. Only the paths are
held in memory, never the files, and as one Arrow array (the bytes of the path and 4 more each,
where a list of Python strings costs ~50 more: 5 MiB a million paths).
"""
from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from zoo.errors import ZooError

# Files taken from a folder or a glob, by extension (a text file of paths is taken as it is).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
LIST_EXTENSIONS = (".txt", ".lst", ".list")
_GLOB_CHARS = "*?["


@dataclass
class Sources:
    paths: pa.Array       # strings, as `filesystem` names them (no URI scheme), sorted
    filesystem: object    # pyarrow.fs.FileSystem
    scheme: str           # "" for local files, else e.g. "s3://": the `path` column is scheme + path
    skipped: int = 0      # files in a folder or glob without an image extension

    def __post_init__(self) -> None:
        if not isinstance(self.paths, pa.Array):
            self.paths = pa.array(self.paths, pa.string())

    def remaining(self, done: set[str]) -> pa.Array:
        """The paths whose URI is not in `done` (the `path` column of earlier parts)."""
        if not done:
            return self.paths
        ours = [d[len(self.scheme):] for d in done if d.startswith(self.scheme)]
        return self.paths.filter(pc.invert(pc.is_in(self.paths, value_set=pa.array(ours, pa.string()))))


def _filesystem(src: str):
    """(pyarrow filesystem, src's path on it, the scheme to give back) for a URI or a local path."""
    from pyarrow import fs

    if "://" not in src:
        return fs.LocalFileSystem(), src if _wild(src) else os.path.abspath(src), ""
    scheme, rest = src.split("://", 1)
    try:  # the filesystem of the part before any wildcard
        filesystem, _ = fs.FileSystem.from_uri(f"{scheme}://{_fixed_part(rest) or '/'}")
    except Exception as e:
        raise ZooError(f"SRC {src!r}: pyarrow has no filesystem for it ({type(e).__name__}: {e})") from None
    return filesystem, rest, f"{scheme}://"


def _wild(path: str) -> bool:
    return any(c in path for c in _GLOB_CHARS)


def _fixed_part(path: str) -> str:
    """The folder part of a glob before its first wildcard ('shop/photos' of 'shop/photos/**/*.jpg')."""
    head = path[:min((path.index(c) for c in _GLOB_CHARS if c in path), default=len(path))]
    return head.rsplit("/", 1)[0] if _wild(path) else head


def _is_image(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _hidden(path: str, base: str) -> bool:
    """Whether any part of `path` below `base` starts with a dot (.git, .DS_Store, a part being written)."""
    rest = path[len(base):].strip("/")
    return any(p.startswith(".") for p in rest.split("/"))


def find(src: str) -> Sources:
    """The image files SRC names; raises ZooError (exit 2) for a SRC that names none."""
    from pyarrow import fs

    filesystem, path, scheme = _filesystem(src)
    if _wild(path):
        if scheme:  # list below the part before the first wildcard, then match the whole pattern
            selector = fs.FileSelector(_fixed_part(path), recursive=True, allow_not_found=True)
            found = [i.path for i in filesystem.get_file_info(selector)
                     if i.type == fs.FileType.File and fnmatch.fnmatchcase(i.path, path)]
        else:
            found = [os.path.abspath(p) for p in glob.glob(src, recursive=True) if os.path.isfile(p)]
        images = [p for p in found if _is_image(p)]
        return _checked(Sources(sorted(images), filesystem, scheme, len(found) - len(images)), src)
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.NotFound:
        raise ZooError(f"SRC {src!r} does not exist; give a folder of images, a glob ('photos/**/*.jpg'), "
                       f"a text file of paths, or one image")
    if info.type == fs.FileType.Directory:
        infos = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
        files = [i.path for i in infos if i.type == fs.FileType.File and not _hidden(i.path, path)]
        images = [p for p in files if _is_image(p)]
        return _checked(Sources(sorted(images), filesystem, scheme, len(files) - len(images)), src)
    if path.lower().endswith(LIST_EXTENSIONS):
        return _checked(_from_list(filesystem, path, scheme, src), src)
    return Sources([path], filesystem, scheme)


def _from_list(filesystem, path: str, scheme: str, src: str) -> Sources:
    """A text file of paths, one a line (blank lines and # comments skipped); a relative path is
    relative to the list's folder. Every path must be on the list's own filesystem."""
    with filesystem.open_input_stream(path) as f:
        lines = f.read().decode("utf-8").splitlines()
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    paths = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "://" in line:
            if not line.startswith(scheme) or not scheme:
                raise ZooError(f"{src}, line {n}: {line!r} is on another filesystem than the list; "
                               f"list files of one filesystem, or give a folder or a glob")
            line = line[len(scheme):]
        elif not line.startswith("/"):
            line = f"{folder}/{line}" if folder else line
        paths.append(os.path.normpath(line) if not scheme else line)
    return Sources(list(dict.fromkeys(paths)), filesystem, scheme)


def _checked(sources: Sources, src: str) -> Sources:
    if not len(sources.paths):
        other = f" ({sources.skipped} other files)" if sources.skipped else ""
        raise ZooError(f"SRC {src!r} holds no image files{other}; images are taken by extension: "
                       f"{', '.join(IMAGE_EXTENSIONS)}")
    return sources
