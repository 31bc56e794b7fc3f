from voipalert.cli import main

# Guarded: the speech worker processes (forkserver) import the parent's main module, and
# must not run the command line again.
if __name__ == "__main__":
    raise SystemExit(main())
