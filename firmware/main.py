# main.py: run by MicroPython after boot.py. Kept to two lines because a board compiles
# main.py from source in RAM at every boot; the application is lib/hashtrail/app.py
# (.mpy). Ctrl-C stops it and returns to the REPL (see app.py).
from hashtrail import app

app.main()
