# Tiny assertion helpers for device tests (MicroPython has no unittest/pytest).
# They raise AssertionError explicitly: `assert` statements vanish under mpy-cross -O3.

DATA_DIR = "."


def data(name):
    """Path of a file the host-side harness generated for this run (vectors etc.)."""
    return DATA_DIR + "/" + name


def fail(msg):
    raise AssertionError(msg)


def eq(a, b, msg=""):
    if a != b:
        raise AssertionError("%r != %r %s" % (a, b, msg))


def true(x, msg=""):
    if not x:
        raise AssertionError("expected true: %s" % msg)


def false(x, msg=""):
    if x:
        raise AssertionError("expected false: %s" % msg)


def raises(exc, fn, *args):
    """Call fn(*args) and return the exception, which must be an instance of exc."""
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %r" % (exc.__name__, fn))


def unhex(s):
    import binascii

    return binascii.unhexlify(s)
