"""A strict reader for package zips: it accepts a zip only if every unzip tool sees the same files.

Python's zipfile (like many readers) trusts the central directory alone, while `unzip` also reads
the local header in front of each member's data. A zip whose two copies disagree can pass a
central-directory check and still unzip to different bytes, or not at all. So this reader checks
what an unzip will see:

- layout: local entries start at byte 0 and follow each other with no gap, the central directory
  follows the last one, the end records follow it and end the file (nothing hidden, overlapping
  or trailing; no archive or member comments, no extra fields but ZIP64's);
- every local header agrees with its central entry (name, sizes, CRC, method, flags, time,
  version), and both ZIP64 forms are resolved the way the spec says;
- members are plain regular files (mode 0644, as the package builder writes them) with simple,
  unique names, stored or deflated, not encrypted, with sizes no larger than the data can hold;
- reading a member inflates it as a stream with the declared size as a hard cap and checks its
  length, its CRC-32 and that the deflate stream ends exactly where the data does.

Errors are PackageErrors naming the package and, where there is one, the member.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pocketquant.errors import PackageError
from pocketquant.inputs import pread_exact

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"
EOCD_SIG = b"PK\x05\x06"
ZIP64_EOCD_SIG = b"PK\x06\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
CENTRAL = struct.Struct("<4sBBHHHHHIIIHHHHHII")  # 46 bytes
EOCD = struct.Struct("<4sHHHHIIH")  # 22 bytes
ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
ZIP64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes
U16, U32 = 0xFFFF, 0xFFFFFFFF

STORED, DEFLATED = 0, 8
FLAG_UTF8 = 0x800
FLAG_DEFLATE_LEVEL = 0x6  # a hint of the compression level used; no effect on the data
UNIX = 3
REGULAR_0644 = 0o100644
MAX_MEMBERS = 64
MAX_DEFLATE_RATIO = 1032  # deflate cannot expand data more than about 1032:1
MAX_VERSION_NEEDED = 45  # 4.5: ZIP64, what unzip 6 implements
CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    name: str
    method: int
    crc: int
    compressed_size: int
    size: int
    data_offset: int  # absolute offset of the (compressed) data


def _u(v: int) -> str:
    return f"{v:#x}"


def _zip64_fields(extra: bytes, wanted: list[str], where: str, fail) -> dict[str, int]:  # noqa: ANN001
    """Parse an extra field: only a ZIP64 record (id 1) is allowed, holding exactly the 8-byte
    fields whose 32-bit slots were set to 0xFFFFFFFF, in the spec's order."""
    pos, found = 0, None
    while pos < len(extra):
        if pos + 4 > len(extra):
            raise fail(f"{where}: extra field is truncated")
        tag, size = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + size > len(extra):
            raise fail(f"{where}: extra field {tag:#06x} runs past its end")
        if tag != 1:
            raise fail(f"{where}: extra field {tag:#06x} (pocketquant packages carry only ZIP64's)")
        if found is not None:
            raise fail(f"{where}: two ZIP64 extra fields")
        found = extra[pos + 4 : pos + 4 + size]
        pos += 4 + size
    if found is None:
        if wanted:
            raise fail(
                f"{where}: {', '.join(wanted)} say ZIP64 (0xFFFFFFFF) but there is no ZIP64 extra field"
            )
        return {}
    if len(found) != 8 * len(wanted):
        raise fail(f"{where}: ZIP64 extra field has {len(found)} bytes, expected {8 * len(wanted)}")
    return {name: struct.unpack_from("<Q", found, 8 * i)[0] for i, name in enumerate(wanted)}


@dataclass(frozen=True)
class _Fields:
    """What a local header and its central directory entry must agree on."""

    version_needed: int
    flags: int
    method: int
    time: int
    date: int
    crc: int
    compressed_size: int
    size: int


@dataclass(frozen=True)
class _Central:
    name_raw: bytes
    name: str
    fields: _Fields
    local_offset: int


class ZipReader:
    """A verified zip: `members` in central-directory order; `read(member)` streams its bytes."""

    def __init__(self, fd: int, file_size: int, path: Path):
        self.fd = fd
        self.size = file_size
        self.path = path
        self.members: list[Member] = []
        # per-member faults that do not make the layout doubtful (reported with the manifest checks)
        self.problems: list[str] = []
        self._parse()

    # -- helpers -----------------------------------------------------------------------------
    def fail(self, what: str) -> PackageError:
        return PackageError(f"{self.path}: not a readable zip file: {what}")

    def _read(self, offset: int, n: int, what: str) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise self.fail(f"{what} at byte {offset} runs past the end of the file ({self.size} bytes)")
        buf = bytearray(n)
        try:
            got = pread_exact(self.fd, memoryview(buf), offset)
        except OSError as exc:
            raise PackageError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        if got != n:
            raise PackageError(f"{self.path}: the file shrank while it was being read")
        return bytes(buf)

    # -- structure ---------------------------------------------------------------------------
    def _parse(self) -> None:
        if self.size < EOCD.size:
            raise self.fail(f"only {self.size} bytes, too short for a zip")
        eocd_at = self.size - EOCD.size
        sig, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment_len = EOCD.unpack(
            self._read(eocd_at, EOCD.size, "end of central directory")
        )
        if sig != EOCD_SIG:
            raise self.fail("no end-of-central-directory record at the end (trailing data or a comment?)")
        if comment_len:
            raise self.fail(f"the end record declares a {comment_len}-byte comment (hidden data)")
        if disk or cd_disk:
            raise self.fail("multi-disk zips are not packages")
        if n_disk != n_total:
            raise self.fail(f"the end record counts {n_disk} entries on this disk but {n_total} in all")
        cd_end = eocd_at
        zip64 = (n_total == U16) or (cd_size == U32) or (cd_offset == U32)
        if eocd_at >= ZIP64_LOCATOR.size:
            loc = self._read(eocd_at - ZIP64_LOCATOR.size, ZIP64_LOCATOR.size, "ZIP64 locator")
            zip64 = zip64 or loc[:4] == ZIP64_LOCATOR_SIG
        if zip64:
            n_total, cd_size, cd_offset, cd_end = self._zip64_end(eocd_at, n_total, cd_size, cd_offset)
        if n_total > MAX_MEMBERS:
            raise self.fail(f"{n_total} entries (a package has a handful)")
        if cd_offset + cd_size != cd_end:
            raise self.fail(
                f"the central directory (offset {cd_offset}, {cd_size} bytes) does not end where the end "
                f"record starts (byte {cd_end})"
            )
        central = self._central_directory(cd_offset, cd_size, n_total)
        self._local_entries(central, cd_offset)

    def _zip64_end(
        self, eocd_at: int, n_total: int, cd_size: int, cd_offset: int
    ) -> tuple[int, int, int, int]:
        loc_at = eocd_at - ZIP64_LOCATOR.size
        sig, disk, rec_offset, n_disks = ZIP64_LOCATOR.unpack(
            self._read(loc_at, ZIP64_LOCATOR.size, "ZIP64 locator")
        )
        if sig != ZIP64_LOCATOR_SIG:
            raise self.fail("the end record says ZIP64 but there is no ZIP64 locator before it")
        if disk != 0 or n_disks != 1:
            raise self.fail("the ZIP64 locator names another disk")
        if rec_offset + ZIP64_EOCD.size != loc_at:
            raise self.fail(f"the ZIP64 end record (at {rec_offset}) does not sit right before its locator")
        sig, rec_size, _made, needed, disk, cd_disk, n64_disk, n64, size64, off64 = ZIP64_EOCD.unpack(
            self._read(rec_offset, ZIP64_EOCD.size, "ZIP64 end record")
        )
        if sig != ZIP64_EOCD_SIG or rec_size != ZIP64_EOCD.size - 12:
            raise self.fail("corrupt ZIP64 end record")
        if disk or cd_disk or n64_disk != n64 or needed > MAX_VERSION_NEEDED:
            raise self.fail("corrupt ZIP64 end record (disk numbers, counts or version)")
        for name, short, full, sentinel in (
            ("entry count", n_total, n64, U16),
            ("directory size", cd_size, size64, U32),
            ("directory offset", cd_offset, off64, U32),
        ):
            if short not in (full, sentinel):
                raise self.fail(f"the end record's {name} {short} disagrees with the ZIP64 record's {full}")
        return n64, size64, off64, rec_offset

    def _central_directory(self, cd_offset: int, cd_size: int, n_total: int) -> list[_Central]:
        if cd_size > 1 << 24:
            raise self.fail(f"a {cd_size}-byte central directory (a package's is tiny)")
        cd = self._read(cd_offset, cd_size, "central directory")
        entries: list[_Central] = []
        pos = 0
        seen: set[str] = set()
        for i in range(n_total):
            if pos + CENTRAL.size > len(cd):
                raise self.fail(f"central directory entry {i} runs past the directory's end")
            (sig, made_ver, made_os, needed, flags, method, mtime, mdate, crc, csize, usize, n_len, e_len,
             c_len, disk, int_attr, ext_attr, offset) = CENTRAL.unpack_from(cd, pos)  # fmt: skip
            if sig != CENTRAL_SIG:
                raise self.fail(f"central directory entry {i} has a bad signature")
            var_end = pos + CENTRAL.size + n_len + e_len + c_len
            if var_end > len(cd):
                raise self.fail(f"central directory entry {i} runs past the directory's end")
            name_raw = cd[pos + CENTRAL.size : pos + CENTRAL.size + n_len]
            name = self._member_name(name_raw, flags, f"central directory entry {i}")
            where = f"{name} (central directory)"
            if c_len:
                raise self.fail(f"{where}: has a {c_len}-byte comment (hidden data)")
            if made_os != UNIX or ext_attr >> 16 != REGULAR_0644 or ext_attr & U16 not in (0, 0x20):
                mode = f"mode {ext_attr >> 16:o}" if made_os == UNIX else f"made on system {made_os}"
                self.problems.append(
                    f"{name}: {mode}, but a package member unzips as a regular file with mode 0644 (100644)"
                )
            if int_attr & ~1 or disk != 0:
                raise self.fail(f"{where}: unexpected internal attributes or disk number")
            self._check_common(where, needed, flags, method)
            wanted = [
                k for k, v in (("size", usize), ("compressed size", csize), ("offset", offset)) if v == U32
            ]
            extra = cd[pos + CENTRAL.size + n_len : pos + CENTRAL.size + n_len + e_len]
            z64 = _zip64_fields(extra, wanted, where, self.fail)
            key = name.casefold()
            if key in seen:
                raise self.fail(f"{name}: appears more than once in the zip")
            seen.add(key)
            sizes = (z64.get("compressed size", csize), z64.get("size", usize))
            fields = _Fields(needed, flags, method, mtime, mdate, crc, *sizes)
            entries.append(_Central(name_raw, name, fields, z64.get("offset", offset)))
            pos = var_end
        if pos != len(cd):
            raise self.fail(f"{len(cd) - pos} bytes after the last central directory entry (hidden data)")
        return entries

    def _member_name(self, raw: bytes, flags: int, where: str) -> str:
        try:
            name = raw.decode("utf-8" if flags & FLAG_UTF8 else "ascii")
        except UnicodeDecodeError:
            how = "UTF-8" if flags & FLAG_UTF8 else "ASCII (no UTF-8 flag)"
            raise self.fail(f"{where}: name {raw!r} is not {how}") from None
        if (
            not name
            or name in (".", "..")
            or any(c in name for c in "/\\:")
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)
        ):
            raise PackageError(f"{self.path}: {name!r}: unsafe or nested member path")
        return name

    def _check_common(self, where: str, needed: int, flags: int, method: int) -> None:
        if method not in (STORED, DEFLATED):
            raise self.fail(f"{where}: compression method {method} (a package uses stored or deflate)")
        if flags & 1:
            raise self.fail(f"{where}: encrypted")
        allowed = FLAG_UTF8 | (FLAG_DEFLATE_LEVEL if method == DEFLATED else 0)
        if flags & ~allowed:
            raise self.fail(f"{where}: general-purpose flags {_u(flags)} (data descriptors and the like)")
        if needed > MAX_VERSION_NEEDED:
            raise self.fail(f"{where}: needs zip version {needed / 10:.1f} to extract")

    def _local_entries(self, central: list[_Central], cd_offset: int) -> None:
        expected = 0
        for c in sorted(central, key=lambda c: c.local_offset):
            where = f"{c.name} (local header)"
            if c.local_offset != expected:
                what = "overlaps the previous one" if c.local_offset < expected else "leaves a gap before it"
                raise self.fail(
                    f"{c.name}: local header at byte {c.local_offset} {what} (expected {expected})"
                )
            head = self._read(c.local_offset, LOCAL.size, f"{c.name}: local header")
            sig, needed, flags, method, mtime, mdate, crc, csize, usize, n_len, e_len = LOCAL.unpack(head)
            if sig != LOCAL_SIG:
                raise self.fail(f"{where}: bad signature")
            var = self._read(c.local_offset + LOCAL.size, n_len + e_len, f"{where}: name")
            if var[:n_len] != c.name_raw:
                raise self.fail(f"{where}: name {var[:n_len]!r} differs from the central directory's")
            self._check_common(where, needed, flags, method)
            wanted = [k for k, v in (("size", usize), ("compressed size", csize)) if v == U32]
            z64 = _zip64_fields(var[n_len:], wanted, where, self.fail)
            sizes = (z64.get("compressed size", csize), z64.get("size", usize))
            local = _Fields(needed, flags, method, mtime, mdate, crc, *sizes)
            for f in dataclasses.fields(_Fields):
                lv, cv = getattr(local, f.name), getattr(c.fields, f.name)
                if lv != cv:
                    label = f.name.replace("_", " ")
                    raise self.fail(
                        f"{c.name}: local header {label} {lv} differs from the central directory's {cv}"
                    )
            size, csize = c.fields.size, c.fields.compressed_size
            if c.fields.method == STORED and size != csize:
                raise self.fail(f"{c.name}: stored, but its size {size} is not its compressed size {csize}")
            if c.fields.method == DEFLATED and size > csize * MAX_DEFLATE_RATIO + 64:
                raise self.fail(
                    f"{c.name}: declares {size} bytes from {csize} compressed, more than deflate can give"
                )
            data_offset = c.local_offset + LOCAL.size + n_len + e_len
            expected = data_offset + csize
            if expected > cd_offset:
                raise self.fail(f"{c.name}: its data runs into the central directory")
            self.members.append(Member(c.name, c.fields.method, c.fields.crc, csize, size, data_offset))
        if expected != cd_offset:
            raise self.fail(f"{cd_offset - expected} bytes between the last member and the central directory")
        order = {c.name: i for i, c in enumerate(central)}
        self.members.sort(key=lambda m: order[m.name])

    # -- data --------------------------------------------------------------------------------
    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

    def read(self, m: Member, *, limit: int | None = None) -> Iterator[bytes]:
        """The member's bytes in chunks; PackageError naming it if its data is not what its
        headers say (length, CRC, a deflate stream that ends early, late or is corrupt), or if it
        is larger than `limit`."""
        if limit is not None and m.size > limit:
            raise PackageError(f"{self.path}: {m.name}: {m.size:,} bytes, more than the {limit:,} allowed")
        crc, produced = 0, 0
        pos, end = m.data_offset, m.data_offset + m.compressed_size

        def take(n: int) -> bytes:
            nonlocal pos
            data = self._read(pos, min(n, end - pos), m.name)
            pos += len(data)
            return data

        def account(out: bytes) -> None:
            nonlocal crc, produced
            produced += len(out)
            if produced > m.size:
                raise PackageError(
                    f"{self.path}: {m.name}: inflates to more than its declared {m.size:,} bytes"
                )
            crc = zlib.crc32(out, crc)

        if m.method == STORED:
            while pos < end:
                out = take(CHUNK)
                account(out)
                yield out
        else:
            d = zlib.decompressobj(-15)
            try:
                while not d.eof:
                    data = d.unconsumed_tail or (take(CHUNK) if pos < end else b"")
                    if not data:
                        out = d.flush()
                        account(out)
                        if out:
                            yield out
                        break
                    out = d.decompress(data, CHUNK)
                    account(out)
                    if out:
                        yield out
            except zlib.error as exc:
                raise PackageError(f"{self.path}: {m.name}: corrupt deflate data ({exc})") from None
            if not d.eof:
                raise PackageError(f"{self.path}: {m.name}: its deflate stream is cut short")
            if d.unused_data or pos < end:
                raise PackageError(
                    f"{self.path}: {m.name}: data after the end of its deflate stream (hidden data)"
                )
        if produced != m.size:
            raise PackageError(f"{self.path}: {m.name}: {produced:,} bytes, its headers say {m.size:,}")
        if crc != m.crc:
            raise PackageError(
                f"{self.path}: {m.name}: CRC-32 {crc:08x} does not match its headers' {m.crc:08x}"
            )

    def read_all(self, m: Member, *, limit: int) -> bytes:
        return b"".join(self.read(m, limit=limit))


def open_zip(fd: int, path: str | os.PathLike[str]) -> ZipReader:
    return ZipReader(fd, os.fstat(fd).st_size, Path(path))
