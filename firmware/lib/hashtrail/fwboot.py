# Finishing a firmware update at boot (docs/DEVICE.md "Firmware updates"), and the
# stored security counter. Boot-only: app.py imports it once the log is open, and
# drops it again; update.py uses the counter helpers while a transfer runs.
#
# When /ht/update (the marker update.py commits) is there and boot.py has switched
# /lib/hashtrail.new in, the firmware now running is the update: it appends the update
# entry (kind 7: old version, new version, security counter, manifest SHA-256) signed
# like any entry, then stores the counter (/ht/fw_counter, replaced via a .tmp and a
# rename, so a power cut leaves the old or the new counter), then removes the old
# firmware folder, boot.py's count of tries and, last, the marker. That the new firmware
# got here (its modules imported, its board loaded, its log opened and checked) is the
# proof boot.py waits for: without it, boot.py rolls back at the third boot. A power
# cut between the entry and the counter appends the entry again at the next boot (a
# second, identical claim); after the counter, the entry is never repeated.
#
# When boot.py rolled an update back (the new firmware never proved itself), it left
# the marker as /ht/update.reverted; the old firmware, running again, appends the
# update-reverted entry (kind 8: the version that failed, the version running again,
# the counter and manifest SHA-256 of the release taken back, the reason) and removes
# the file. A power cut between the two appends it again at the next boot.
#
# A full-image update (board_ota.py, docs/DEVICE.md "Full-image updates") leaves
# /ht/update.img instead: the marker plus the label of the partition set to boot. When
# the partition running is that one and the firmware reports the manifest's version, it
# is the new image on its first boot, pending verification by the bootloader: it appends
# the update entry, confirms itself (mark_app_valid_cancel_rollback), stores the counter
# and removes the marker, in that order: a cut before the confirmation lets the
# bootloader take it back (the entry then stands in the chain followed by the
# update-reverted one); a cut after it repeats the entry at the next boot, as above.
# When another partition runs, the new image never confirmed itself (the bootloader
# rolled it back, or the cut came before set_boot): the firmware running appends the
# update-reverted entry and removes the marker; the counter was never stored. A new
# image that reports another version than its manifest does not confirm itself and
# resets at once: the bootloader rolls it back.
import os
import struct

from micropython import const

_KIND_UPDATE = const(7)
_KIND_UPDATE_REVERTED = const(8)


def paths(root):
    """(data folder, firmware /lib) for the log's root: "/ht" -> ("/ht", "/lib"); the
    firmware lives beside the data, so a flash mounted at /fl has /fl/lib."""
    return root, root[:root.rfind("/")] + "/lib"


def read_counter(root):
    """The highest security counter installed (0 when none was). A counter file that
    is not 4 bytes raises: an unreadable floor must not allow a rollback."""
    b = _read(root + "/fw_counter")
    if b is None:
        return 0
    if len(b) != 4:
        raise ValueError("fw_counter is malformed")
    return struct.unpack("<I", b)[0]


def write_counter(root, n):
    f = open(root + "/fw_counter.tmp", "wb")
    f.write(struct.pack("<I", n))
    f.close()
    os.rename(root + "/fw_counter.tmp", root + "/fw_counter")


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _read(p):
    # The whole file, or None when it cannot be opened (a marker that is not there).
    try:
        f = open(p, "rb")
    except OSError:
        return None
    b = f.read()
    f.close()
    return b


def parse_marker(b, image=False):
    """(counter, old version, new version, manifest SHA-256) from the marker's bytes,
    and the partition label after them for a full-image marker (`image`)."""
    counter, n = struct.unpack_from("<IB", b, 0)
    i = 5
    old = str(b[i:i + n], "utf-8")
    i += n
    m = b[i]
    new = str(b[i + 1:i + 1 + m], "utf-8")
    i += 1 + m
    h = bytes(b[i:i + 32])
    i += 32
    if image and i < len(b):
        n = b[i]
        label = str(b[i + 1:i + 1 + n], "utf-8")
        i += 1 + n
        if len(h) == 32 and i == len(b):
            return counter, old, new, h, label
    elif not image and len(h) == 32 and i == len(b):
        return counter, old, new, h
    raise ValueError("update marker is malformed")


def finish(log, root="/ht"):
    """Record a switched-in update in the chain; returns the new version or None. A
    failure of the flash or a malformed marker is printed, not raised: the application
    starts whatever the marker holds."""
    try:
        return _finish(log, *paths(root))
    except (OSError, ValueError, IndexError, TypeError, MemoryError, ImportError) as e:
        # The log is open and the device must keep logging: a failure here is printed
        # and retried at the next boot (the marker stays).
        print("hashtrail: update finish: %s: %s" % (type(e).__name__, e))
        return None


def _reverted(log, root):
    p = root + "/update.reverted"
    b = _read(p)
    if b is None:
        return
    counter, old, new, h = parse_marker(b)
    log.append(_KIND_UPDATE_REVERTED, {1: new, 2: old, 3: counter, 4: h,
                                       5: "not started in 3 boots"})
    os.remove(p)


def _image(log, root):
    p = root + "/update.img"
    b = _read(p)
    if b is None:
        return None
    counter, old, new, h, label = parse_marker(b, True)
    from hashtrail import board_ota, drop

    try:
        if board_ota.running() != label:
            log.append(_KIND_UPDATE_REVERTED, {1: new, 2: old, 3: counter, 4: h,
                                               5: "image not confirmed at its first boot"})
            os.remove(p)
            return None
        if log.fw != new:
            print("hashtrail: the image in %s reports %s, its manifest %s: rolling back" % (
                label, log.fw, new))
            log.close()
            board_ota.reset()
            return None
        due = read_counter(root) < counter
        if due:
            log.append(_KIND_UPDATE, {1: old, 2: new, 3: counter, 4: h})
        board_ota.confirm()
        if due:
            write_counter(root, counter)
        os.remove(p)
        return new
    finally:
        drop("board_ota")


def _finish(log, root, lib):
    _reverted(log, root)
    if _exists(root + "/update.img"):
        return _image(log, root)
    marker = root + "/update"
    b = _read(marker)
    if b is None:
        return None
    if _exists(lib + "/hashtrail.new") or _exists(lib + "/hashtrail.bad"):
        return None  # boot.py has not switched yet, or is rolling back: the old one runs
    counter, old, new, h = parse_marker(b)
    if read_counter(root) < counter:
        log.append(_KIND_UPDATE, {1: old, 2: new, 3: counter, 4: h})
        write_counter(root, counter)
    d = lib + "/hashtrail.old"
    try:
        names = os.listdir(d)
    except OSError:
        names = None
    if names is not None:
        for n in names:
            os.remove(d + "/" + n)
        os.rmdir(d)
    if _exists(root + "/update.try"):  # boot.py's count of tries: this one proved itself
        os.remove(root + "/update.try")
    os.remove(marker)
    return new
