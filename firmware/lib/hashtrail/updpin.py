# UPDATE PIN (op 4, `hashtrail enroll --release-key`): pin a first release key. Its own
# module, loaded by update.py for this request alone: it runs once in a device's life,
# and its code would otherwise be resident through every transfer (the manifest check
# is the transfer's heap peak, docs/DEVICE.md).
#
# Trust on first use, at the console only: a device with no release key pinned takes
# one (whoever holds the console holds the REPL anyway); over MQTT a network publisher
# could otherwise choose whose firmware installs. A device with keys pinned only
# confirms one of them; deploy replaces them.
import os

from hashtrail import update


def pin(link, rid, a):
    if not link.console:
        raise update.Refused("release keys are pinned over the USB console only")
    if len(a) != 66 or a[1] != 4:
        raise update.Refused("PIN takes one 65-byte release public key")
    key = bytes(a[1:])
    root = update.ROOT
    try:
        f = open(root + "/release_keys", "rb")
        k = f.read()
        f.close()
    except OSError:
        k = None
    if not k:  # none pinned (no file, or an empty one)
        f = open(root + "/release_keys.tmp", "wb")
        f.write(key)
        f.close()
        os.rename(root + "/release_keys.tmp", root + "/release_keys")
        update._reply(link, rid, 4, 1)
        return
    i = 0
    while i < len(k) and k[i:i + 65] != key:
        i += 65
    if i >= len(k):
        raise update.Refused("another release key is pinned (hashtrail deploy "
                             "--release-key replaces pinned keys)")
    update._reply(link, rid, 4, 0)
