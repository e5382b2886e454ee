# The full-image part of a firmware update (update.py; docs/DEVICE.md "Full-image
# updates"): loaded by update.py once a checked manifest names an app image (key 5), and
# dropped with it, so a transfer of files, and every transfer's manifest check (its heap
# peak), never holds this code.
#
#   start(rx)   the image takes the rest of the package; board_ota.Writer on the next
#               OTA partition (update.Refused on a board without the esp32 module); the
#               marker draft /ht/update.tmp gets the partition's label
#   done(rx)    after the image's last byte: its SHA-256 as received, then as read back
#               from the partition, must be the manifest's (else update.Refused): only
#               then may COMMIT call set_boot
#   commit(rx)  the marker draft renamed to /ht/update.img (the commit point: from here
#               the chain says what became of the update, fwboot.py), then set_boot();
#               when ESP-IDF's own check of the image refuses it, the marker goes again
import hashlib
import os

from hashtrail import update


def start(rx):
    size = rx.total - rx.mend
    if size != rx.image:
        raise update.Refused("package holds %d image bytes, its manifest says %d" % (
            size, rx.image))
    try:
        from hashtrail import board_ota
    except ImportError:
        raise update.Refused("this board has no OTA partitions (no esp32 module)")
    rx.w = board_ota.Writer(rx.image)
    lbl = rx.w.label.encode()
    f = open(update.ROOT + "/update.tmp", "ab")
    f.write(bytes((len(lbl),)))
    f.write(lbl)
    f.close()
    rx.left = rx.image
    rx.h = hashlib.sha256()


def done(rx):
    rx.w.end()
    if rx.h.digest() != rx.want:
        raise update.Refused("image: SHA-256 differs from the manifest")
    rx.h = None
    if rx.w.sha256() != rx.want:
        raise update.Refused("image: SHA-256 read back from partition %s differs" %
                             rx.w.label)
    rx.done = True


def commit(rx):
    root = update.ROOT
    os.rename(root + "/update.tmp", root + "/update.img")
    try:
        rx.w.boot()
    except OSError as e:  # ESP-IDF's check of the image (esp_image_verify) failed
        os.remove(root + "/update.img")
        raise update.Refused("set_boot refused the image: %s" % e)
