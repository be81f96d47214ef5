import gc

from study.cli import main

code = main()
# The interpreter's last garbage collections would walk every object the run created
# (numba's alone take some tenths of a second); frozen objects are left to the exit.
gc.freeze()
raise SystemExit(code)
