"""What to classify: SRC (a folder, a glob, a text file of paths, or one image) -> image file paths,
through pyarrow filesystems (a URI such as s3:// works where pyarrow has its filesystem). The paths
are one Arrow array: 4 bytes each beside the path's own, where a Python string costs ~50 more.
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

    def remaining(self, done: set[str]) -> pa.Array:
        """The paths whose URI is not in `done` (the `path` column of earlier parts)."""
        ours = [d[len(self.scheme):] for d in done if d.startswith(self.scheme)]
        return self.paths.filter(pc.invert(pc.is_in(self.paths, value_set=pa.array(ours, pa.string()))))


def filesystem_of(uri: str, what: str):
    """(pyarrow filesystem, path on it) of a URI or a local path (made absolute); `what` names it in errors."""
    from pyarrow import fs

    if "://" not in uri:
        return fs.LocalFileSystem(), os.path.abspath(uri)
    try:
        return fs.FileSystem.from_uri(uri)
    except Exception as e:
        raise ZooError(f"{what} {uri!r}: pyarrow has no filesystem for it ({type(e).__name__}: {e})") from None


def _wild(path: str) -> bool:
    return any(c in path for c in _GLOB_CHARS)


def _fixed_part(path: str) -> str:
    """The folder part of a glob before its first wildcard ('shop/photos' of 'shop/photos/**/*.jpg')."""
    head = path[:min((path.index(c) for c in _GLOB_CHARS if c in path), default=len(path))]
    return head.rsplit("/", 1)[0] if _wild(path) else head


def _is_image(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def find(src: str) -> Sources:
    """The image files SRC names; raises ZooError (exit 2) for a SRC that names none."""
    from pyarrow import fs

    if "://" in src:
        scheme, path = src.split("://", 1)
        scheme += "://"  # the filesystem of the part before any wildcard:
        filesystem = filesystem_of(scheme + (_fixed_part(path) or "/"), "SRC")[0]
    else:
        (filesystem, path), scheme = filesystem_of(src, "SRC"), ""
    if _wild(path) and scheme:  # list below the part before the first wildcard, then match the whole pattern
        selector = fs.FileSelector(_fixed_part(path), recursive=True, allow_not_found=True)
        found = [i.path for i in filesystem.get_file_info(selector)
                 if i.type == fs.FileType.File and fnmatch.fnmatchcase(i.path, path)]
    elif _wild(path):
        found = [os.path.abspath(p) for p in glob.glob(src, recursive=True) if os.path.isfile(p)]
    else:
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.NotFound:
            raise ZooError(f"SRC {src!r} does not exist; give a folder of images, a glob ('photos/**/*.jpg'), "
                           f"a text file of paths, or one image")
        if info.type != fs.FileType.Directory:
            if path.lower().endswith(LIST_EXTENSIONS):
                return _checked(_from_list(filesystem, path, scheme, src), src)
            return Sources(pa.array([path], pa.string()), filesystem, scheme)
        # Hidden files and folders (.git, .DS_Store, a part being written) are skipped.
        infos = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
        found = [i.path for i in infos if i.type == fs.FileType.File
                 and not any(p.startswith(".") for p in i.path[len(path):].strip("/").split("/"))]
    images = [p for p in found if _is_image(p)]
    return _checked(Sources(pa.array(sorted(images), pa.string()), filesystem, scheme, len(found) - len(images)), src)


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
    return Sources(pa.array(list(dict.fromkeys(paths)), pa.string()), filesystem, scheme)


def _checked(sources: Sources, src: str) -> Sources:
    if not len(sources.paths):
        other = f" ({sources.skipped} other files)" if sources.skipped else ""
        raise ZooError(f"SRC {src!r} holds no image files{other}; images are taken by extension: "
                       f"{', '.join(IMAGE_EXTENSIONS)}")
    return sources
